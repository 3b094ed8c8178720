package cluster

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Paths on a node, as a package-installed, kubeadm-joined node has them.
const (
	nodeKubeconfig      = "/etc/kubernetes/kubelet.conf"
	nodeProxyConfig     = "/etc/kubernetes/kube-proxy.conf"
	nodeCA              = "/etc/kubernetes/pki/ca.crt"
	nodeKubeletConfig   = "/etc/kubernetes/kubelet-config.yaml"
	nodeProxyConfigYAML = "/etc/kubernetes/kube-proxy-config.yaml"
	nodeResolvConf      = "/etc/kubernetes/resolv.conf"
	nodeContainerdSock  = "/run/containerd/containerd.sock"
	nodeContainerdConf  = "/etc/containerd/config.toml"
	nodeNotifySocket    = "/run/systemd/notify"
)

// kubeletSysctls are the values kubelet's protectKernelDefaults requires
// (pkg/kubelet/cm setupKernelTunables); a node shows them to kubelet
// through files mounted over /proc/sys inside its mount namespace, so
// kubelet neither fails nor rewrites the machine's settings.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

func kubeletConfig(n *Node) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %[1]s}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://%[2]s
# This machine: cgroup v1 (hybrid), no systemd as PID 1, swap allowed.
cgroupDriver: cgroupfs
cgroupRoot: %[3]s
failCgroupV1: false
failSwapOn: false
# Never write the machine's sysctls: the node's mount namespace shows
# kubelet the values it wants.
protectKernelDefaults: true
clusterDNS: [%[4]s]
clusterDomain: cluster.local
resolvConf: %[5]s
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
rotateCertificates: false
serverTLSBootstrap: false
# Images are imported, not pulled: never collect them; and all nodes share
# one disk, so only evict when it is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%%
  nodefs.inodesFree: 1%%
  imagefs.available: 1%%
`, nodeCA, nodeContainerdSock, n.CgroupRoot, DNSIP, nodeResolvConf) + controlPlaneTaints(n)
}

// controlPlaneTaints: kubelet registers the control-plane node tainted,
// as kubeadm does, so only pods that tolerate it run there.
func controlPlaneTaints(n *Node) string {
	if !n.ControlPlane {
		return ""
	}
	return "registerWithTaints:\n- {key: " + ControlPlaneTaint + ", effect: NoSchedule}\n"
}

func kubeProxyConfig(n *Node) string {
	return fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: %[1]s
clientConnection:
  kubeconfig: %[2]s
clusterCIDR: %[3]s
# Every setting that writes a machine-wide sysctl is off: conntrack table
# size and timeouts stay as they are.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
`, n.Name, nodeProxyConfig, prefixList(ClusterCIDRs))
}

// containerdConfig is containerd 2's config on a node: the standard
// paths (the node's own, by its mounts), cgroupfs, the overlayfs
// snapshotter on the node's own /var/lib/containerd, CNI from
// /etc/cni/net.d and /opt/cni/bin.
func containerdConfig(shim string) string {
	return fmt.Sprintf(`version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.nri.v1.nri"]
[grpc]
  address = %[1]q
[plugins]
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = %[2]q
  [plugins."io.containerd.cri.v1.runtime"]
    # root here lacks CAP_SYS_RESOURCE: never lower a process's oom_score_adj
    restrict_oom_score_adj = true
    disable_apparmor = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["/opt/cni/bin"]
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        runtime_path = %[3]q
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`, nodeContainerdSock, PauseImage, shim)
}

// unitExecStart reads the ExecStart= command line of the packaged unit.
func unitExecStart(unit string) ([]string, error) {
	f, err := os.Open(unit)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ExecStart="); ok {
			// Prefixes like "-" or "+" change how systemd runs it; the
			// unit uses none, and a plain command line is all this reads.
			argv := strings.Fields(strings.TrimLeft(v, "-@:+!"))
			if len(argv) == 0 {
				break
			}
			return argv, nil
		}
	}
	return nil, fmt.Errorf("%s has no ExecStart= command line", unit)
}

// environmentFile reads an EnvironmentFile= (VAR=value lines, comments).
func environmentFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var env []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if !strings.Contains(line, "=") {
			return nil, fmt.Errorf("%s: not VAR=value: %q", path, line)
		}
		env = append(env, line)
	}
	return env, nil
}

// agentConfig is packaging/config.yaml with the cluster's pod ranges
// appended, as scripts/kubeadm-init.sh and kubeadm-join.sh set them.
func agentConfig(repo string) ([]byte, error) {
	b, err := os.ReadFile(filepath.Join(repo, "packaging", "config.yaml"))
	if err != nil {
		return nil, err
	}
	return append(b, fmt.Sprintf("\n# Set by kindnet-cluster, as scripts/kubeadm-init.sh sets it:\nclusterCIDRs: [%s]\n",
		strings.ReplaceAll(prefixList(ClusterCIDRs), ",", ", "))...), nil
}
