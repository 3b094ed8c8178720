package kubeadm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/test/cluster/images"
	"github.com/kindnet-dev/kindnet/test/sandbox"
)

// repoRoot is the repository, two levels up from this package.
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// kubeletSysctls are the values kubelet's protectKernelDefaults requires
// (pkg/kubelet/cm setupKernelTunables). Each machine shows them to kubelet
// through files laid over /proc/sys in its own mount namespace, so kubelet
// neither fails nor rewrites the host's (machine-wide) settings.
var kubeletSysctls = map[string]string{
	"vm/overcommit_memory":      "1",
	"vm/panic_on_oom":           "0",
	"kernel/panic":              "10",
	"kernel/panic_on_oops":      "1",
	"kernel/keys/root_maxkeys":  "1000000",
	"kernel/keys/root_maxbytes": "25000000",
}

// Units of a node as the Kubernetes and containerd packages would install
// them. kubelet's drop-in is kubeadm's usual 10-kubeadm.conf.
const (
	kubeletUnit = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Wants=network-online.target
After=network-online.target
[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=2
[Install]
WantedBy=multi-user.target
`
	kubeadmDropIn = `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`
	// containerd's own unit, without OOMScoreAdjust=-999: root here lacks
	// CAP_SYS_RESOURCE, and systemd would refuse to start it.
	containerdUnit = `[Unit]
Description=containerd container runtime
After=network.target local-fs.target
[Service]
ExecStart=/usr/local/bin/containerd --config /etc/containerd/config.toml
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=2
LimitNOFILE=infinity
TasksMax=infinity
[Install]
WantedBy=multi-user.target
`
	// containerd 2: cgroupfs (kubelet's driver here), the images imported,
	// never pulled (the pause image pinned), no oom_score_adj below its
	// own, CNI from the usual directories.
	containerdConfig = `version = 3
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.nri.v1.nri"]
[plugins]
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "overlayfs"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = "` + images.PauseRef + `"
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    disable_apparmor = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = ["/opt/cni/bin"]
      conf_dir = "/etc/cni/net.d"
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`
)

// kubeadmExtraConfig is what this host needs of kubelet and kube-proxy,
// handed to kubeadm-init.sh --kubeadm-config; kubeadm stores both in the
// cluster, so the worker's join uses them too.
func kubeadmExtraConfig(cgroupV1 bool) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# The sandbox's systemd does not manage the pods' cgroups: kubelet and
# runc write them (SystemdCgroup = false in containerd's config).
cgroupDriver: cgroupfs
# This host is cgroup v1 (hybrid): kubelet 1.37 refuses it unless told.
failCgroupV1: %t
# The host has swap.
failSwapOn: false
# Never write the host's vm.* and kernel.* sysctls: the machine shows
# kubelet the values it wants (files over /proc/sys in its namespace).
protectKernelDefaults: true
# Images are imported, not pulled: never collect them; the machines share
# the host's disk, so evict only when it is really full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: "1%%"
  nodefs.inodesFree: "1%%"
  imagefs.available: "1%%"
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
# Every setting that writes a host-global sysctl is off: the conntrack
# table's size (nf_conntrack_max, and its hashsize) and timeouts stay as
# the host has them.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
`, !cgroupV1)
}

// Preflight checks of kubeadm that are about this test host, not about
// kindnet or the scripts. Each is ignored by name, for this reason:
//   - SystemVerification: the host is cgroup v1 (hybrid), which kubeadm
//     1.37 reports as an error: "cgroups v1 support is deprecated and will
//     be removed in a future release. Please migrate to cgroups v2."
//     (kubelet runs on it with failCgroupV1: false).
//
// No other check fails here: Swap passes (kubelet's failSwapOn is false),
// IP forwarding is on (kindnet starts first), NumCPU and Mem are met.
var ignoredPreflight = []string{"SystemVerification"}

// tools are the binaries the machines get, from the tools cache.
type tools struct {
	kube       string // kubelet, kubeadm, kubectl
	containerd string // containerd, containerd-shim-runc-v2, ctr
}

func toolDir(t *testing.T, name string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "scripts", "tools.sh"), "path", name).Output()
	if err != nil {
		t.Fatalf("scripts/tools.sh path %s: %v", name, err)
	}
	dir := strings.TrimSpace(string(out))
	if _, err := os.Stat(dir); err != nil {
		skipOrFail(t, fmt.Sprintf("%s is not built (%s): run `make tools`", name, dir))
	}
	return dir
}

// skipOrFail skips when something the test needs is missing, except in CI
// (CI=true), where `make deps` and `make tools` must have provided it.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// buildDeb builds the kindnet .deb with `make packages`, as a release does.
func buildDeb(t *testing.T) string {
	t.Helper()
	dist := t.TempDir()
	cmd := exec.Command("make", "-s", "packages", "VERSION=1.0.0", "DIST="+dist)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make packages: %v\n%s", err, out)
	}
	deb := filepath.Join(dist, fmt.Sprintf("kindnet_1.0.0-1_%s.deb", runtime.GOARCH))
	if _, err := os.Stat(deb); err != nil {
		t.Fatalf("make packages wrote no %s: %v", deb, err)
	}
	return deb
}

// machine is one node: a systemd sandbox on the test's bridge.
type machine struct {
	*sandbox.Sandbox
	name string
	ip   string
}

// newMachine boots a node: its own namespaces, eth0 on the bridge with a
// default route via the bridge (kubeadm and kubelet pick the address of
// the default route's interface), containerd, kubelet, kubeadm and kubectl
// installed as their packages would, the images imported.
func newMachine(t *testing.T, name, ip, bridgeNS string, layout sandbox.Cgroups, tl tools, imgDir string, archives []images.Archive, hosts string) *machine {
	t.Helper()
	s := sandbox.New(t, sandbox.Options{Mode: sandbox.Systemd, Cgroups: layout, Hostname: name,
		Sysctls: kubeletSysctls, Tmpfs: []string{"/var/lib/containerd"}, SystemUnits: true})
	m := &machine{Sandbox: s, name: name, ip: ip}

	// The link: a veth from the bridge's namespace into the machine's.
	peer := "to-" + ip[strings.LastIndex(ip, ".")+1:] // names are at most 15 bytes
	for _, argv := range [][]string{
		{"ip", "-n", bridgeNS, "link", "add", peer, "type", "veth", "peer", "name", "eth0", "netns", fmt.Sprint(s.PID())},
		{"ip", "-n", bridgeNS, "link", "set", peer, "master", "br0", "up"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	s.Sh("ip link set lo up && ip addr add " + ip + "/24 dev eth0 && ip link set eth0 up && ip route add default via 192.168.77.254")
	s.WriteFile("/etc/hosts", hosts, 0o644)

	for _, b := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
		s.CopyIn(filepath.Join(tl.containerd, b), "/usr/local/bin/"+b, 0o755)
	}
	for _, b := range []string{"kubelet", "kubeadm", "kubectl"} {
		s.CopyIn(filepath.Join(tl.kube, b), "/usr/bin/"+b, 0o755)
	}
	// The runtime's loopback plugin, from Debian's containernetworking-plugins.
	s.CopyIn("/usr/lib/cni/loopback", "/opt/cni/bin/loopback", 0o755)
	s.WriteFile("/etc/containerd/config.toml", containerdConfig, 0o644)
	// Where their packages put them, enabled as the packages do.
	s.WriteFile("/lib/systemd/system/containerd.service", containerdUnit, 0o644)
	s.WriteFile("/lib/systemd/system/kubelet.service", kubeletUnit, 0o644)
	s.WriteFile("/lib/systemd/system/kubelet.service.d/10-kubeadm.conf", kubeadmDropIn, 0o644)
	s.BootWithUnits(nil)
	s.MustRun("systemctl", "enable", "containerd.service", "kubelet.service")
	s.MustRun("systemctl", "start", "containerd.service")
	sandbox.WaitFor(t, "containerd on "+name, time.Minute, func() (bool, string) {
		o, e, err := s.Run("ctr", "version")
		return err == nil, o + e
	})
	s.BindIn(imgDir, "/kindnet-test/images")
	for _, a := range archives {
		s.MustRun("ctr", "-n", "k8s.io", "images", "import", "--local", "--snapshotter", "overlayfs",
			"/kindnet-test/images/"+filepath.Base(a.Path))
	}
	return m
}

// script runs one of the repository's scripts on the machine, from a copy
// of scripts/ there, and returns its output; the test fails if it fails.
func (m *machine) script(t *testing.T, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	for _, f := range []string{"kubeadm-init.sh", "kubeadm-join.sh", "kubeadm-lib.sh"} {
		m.CopyIn(filepath.Join(repoRoot, "scripts", f), "/root/kindnet-scripts/"+f, 0o755)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := m.Command(append([]string{"/root/kindnet-scripts/" + name}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		err = fmt.Errorf("no answer after %s", timeout)
		<-done
	}
	if err != nil {
		j, _, _ := m.Run("journalctl", "--no-pager", "-n", "80", "-u", "kubelet", "-u", "kindnet", "-u", "containerd")
		t.Fatalf("%s on %s: %v\n%s\n--- journal:\n%s", name, m.name, err, out.String(), j)
	}
	t.Logf("%s on %s:\n%s", name, m.name, out.String())
	return out.String()
}

// kubectl runs kubectl with the cluster's admin credentials on the machine.
func (m *machine) kubectl(args ...string) (string, error) {
	o, e, err := m.Run(append([]string{"kubectl", "--kubeconfig=/etc/kubernetes/admin.conf"}, args...)...)
	if err != nil {
		return o, fmt.Errorf("kubectl %s: %v: %s", strings.Join(args, " "), err, e)
	}
	return o, nil
}

// dump logs what a failed step needs to be understood: the machine's
// addresses, routes, nftables rules, containers and recent journal.
func (m *machine) dump(t *testing.T) {
	t.Helper()
	o, e, _ := m.Run("sh", "-c", `ip -br addr; ip route; ss -ltn | head -30; ss -tn | head -20;
cat /proc/loadavg; ps -eo pid,stat,wchan:24,comm | head -60;
echo conntrack $(cat /proc/sys/net/netfilter/nf_conntrack_count /proc/sys/net/netfilter/nf_conntrack_max);
timeout 10 curl -sk -o /dev/null -w "readyz %{http_code}\\n" https://127.0.0.1:6443/readyz;
systemctl --no-pager list-units --state=failed; systemctl --no-pager status systemd-journald | head -5;
ctr -n k8s.io tasks ls; nft list ruleset | grep -v '^\s*$' | grep -B3 -A3 -i 'drop\|reject' | head -80;
journalctl --no-pager -n 30 -u kindnet -u kubelet -u containerd | cut -c1-300`)
	t.Logf("--- %s:\n%s%s", m.name, o, e)
}
