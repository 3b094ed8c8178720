package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
)

// nodeBinds are the node's own directories (under its Dir) and where the
// node sees them: the paths a real node keeps its state in, fixed in
// containerd (shim sockets under /run/containerd) and kubelet (/var/log/pods).
var nodeBinds = []struct{ src, dst string }{
	{"run", "/run"},
	{"log", "/var/log"},
	{"kubelet", "/var/lib/kubelet"},
	{"containerd", "/var/lib/containerd"},
	{"kindnet-state", "/var/lib/kindnet"},
	{"cni-conf", "/etc/cni/net.d"},
	{"cni-bin", "/opt/cni/bin"},
	{"kubernetes", "/etc/kubernetes"},
	{"kindnet-etc", "/etc/kindnet"},
}

// nodeOverlays lay an upper directory of the node's over a directory of
// the machine, inside the node's mount namespace only: they give the
// mount points above a place to exist without creating anything on the
// machine, and hold what a package puts there (/usr/bin/kindnet,
// /etc/default/kindnet, containerd's config).
var nodeOverlays = []struct{ name, dst string }{
	{"etc", "/etc"}, {"usr-bin", "/usr/bin"}, {"opt", "/opt"}, {"var-lib", "/var/lib"},
}

func (n *Node) upper(name string) string { return filepath.Join(n.Dir, "upper", name) }
func (n *Node) own(name string) string   { return filepath.Join(n.Dir, name) }

// startNode prepares the node's files, namespaces and cgroup, then starts
// what runs on a node (startServices).
func (u *upper) startNode(ctx context.Context, n *Node) error {
	if err := u.nodeFiles(n); err != nil {
		return err
	}
	if err := makeCgroupRoot(n.CgroupRoot); err != nil {
		return err
	}
	if err := n.makeNamespaces(); err != nil {
		return err
	}
	return u.startServices(ctx, n, true)
}

// startServices starts what runs on a node, in the order systemd would
// (at Up, and again after RestartNode): the agent until READY=1,
// containerd (importing the images when asked: they stay in
// /var/lib/containerd across a restart), kubelet, kube-proxy.
func (u *upper) startServices(ctx context.Context, n *Node, importImages bool) error {
	if err := u.startAgent(ctx, n); err != nil {
		return err
	}
	bins := u.o.Bins
	if _, err := u.spawnNode(n, "containerd", nil, filepath.Join(bins.Containerd, "containerd"), "--config", nodeContainerdConf); err != nil {
		return err
	}
	if err := u.waitContainerd(ctx, n); err != nil {
		return err
	}
	for _, img := range u.o.Images {
		if !importImages {
			break
		}
		if out, err := n.run(ctx, filepath.Join(bins.Containerd, "ctr"), "--address", nodeContainerdSock, "--namespace", "k8s.io",
			"images", "import", "--local", "--snapshotter", "overlayfs", img.Path); err != nil {
			return fmt.Errorf("import %s: %w\n%s", img.Name, err, out)
		}
	}
	if _, err := u.spawnNode(n, "kubelet", nil, bins.Kube("kubelet"),
		"--config", nodeKubeletConfig, "--kubeconfig", nodeKubeconfig,
		"--node-ip", n.IPv4.String()+","+n.IPv6.String(), "--v", "2"); err != nil {
		return err
	}
	if _, err := u.spawnNode(n, "kube-proxy", nil, bins.Kube("kube-proxy"), "--config", nodeProxyConfigYAML, "--v", "2"); err != nil {
		return err
	}
	u.o.Log("cluster %s: %s started (kindnet, containerd, kubelet, kube-proxy)", u.c.ID, n.Name)
	return nil
}

// nodeFiles writes everything a node needs before its namespaces exist:
// the directories, the installed package's files, certificates and
// kubeconfigs, and the configs of containerd, kubelet and kube-proxy.
func (u *upper) nodeFiles(n *Node) error {
	if err := n.prepareDirs(); err != nil {
		return err
	}
	if err := u.installPackage(n); err != nil {
		return err
	}
	if err := u.nodeCredentials(n); err != nil {
		return err
	}
	return writeFiles(map[string]string{
		filepath.Join(n.upper("etc"), "containerd", "config.toml"):   containerdConfig(filepath.Join(u.o.Bins.Containerd, "containerd-shim-runc-v2")),
		filepath.Join(n.own("kubernetes"), "kubelet-config.yaml"):    kubeletConfig(n),
		filepath.Join(n.own("kubernetes"), "kube-proxy-config.yaml"): kubeProxyConfig(n),
		// Nothing outside the cluster resolves: CoreDNS forwards to the
		// control plane's address, where no DNS server listens.
		filepath.Join(n.own("kubernetes"), "resolv.conf"): "nameserver " + u.c.CP.IPv4.String() + "\n",
	})
}

// prepareDirs makes the node's own directories, the upper and work
// directories of its overlays with the mount points inside them, the
// directories systemd would make for kindnet.service, and the sysctl
// files kubelet reads.
func (n *Node) prepareDirs() error {
	for _, b := range nodeBinds {
		if err := os.MkdirAll(n.own(b.src), 0o755); err != nil {
			return err
		}
	}
	for _, o := range nodeOverlays {
		for _, d := range []string{n.upper(o.name), filepath.Join(n.Dir, "work", o.name)} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
	}
	// Mount points inside the overlays, made in their upper directories
	// before the overlays are mounted.
	for _, b := range nodeBinds {
		for _, o := range nodeOverlays {
			if rel, ok := strings.CutPrefix(b.dst, o.dst+"/"); ok {
				if err := os.MkdirAll(filepath.Join(n.upper(o.name), rel), 0o755); err != nil {
					return err
				}
			}
		}
	}
	// systemd's StateDirectory= and RuntimeDirectory= (mode 0700).
	for _, d := range []string{n.own("kindnet-state"), filepath.Join(n.own("run"), "kindnet"), filepath.Join(n.own("run"), "systemd")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o700); err != nil {
			return err
		}
	}
	files := map[string]string{}
	for name, value := range kubeletSysctls {
		files[n.sysctlFile(name)] = value + "\n"
	}
	return writeFiles(files)
}

func (n *Node) sysctlFile(name string) string {
	return filepath.Join(n.Dir, "sysctl", strings.ReplaceAll(name, "/", "."))
}

func writeFiles(files map[string]string) error {
	for p, content := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// installPackage puts on the node what the kindnet .deb installs
// (packaging/deb/nfpm.yaml): /usr/bin/kindnet, the /opt/cni/bin/kindnet
// symlink, /etc/kindnet/config.yaml, /etc/default/kindnet; and the CNI
// loopback plugin the runtime needs next to it.
func (u *upper) installPackage(n *Node) error {
	if err := copyFile(u.o.Bins.Kindnet, filepath.Join(n.upper("usr-bin"), "kindnet"), 0o755); err != nil {
		return err
	}
	cfg, err := agentConfig(u.o.RepoRoot)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.own("kindnet-etc"), "config.yaml"), cfg, 0o644); err != nil {
		return err
	}
	if err := copyFile(filepath.Join(u.o.RepoRoot, "packaging", "environment"), filepath.Join(n.upper("etc"), "default", "kindnet"), 0o644); err != nil {
		return err
	}
	for name, target := range map[string]string{"kindnet": "/usr/bin/kindnet", "loopback": u.o.Bins.Loopback} {
		if err := os.Symlink(target, filepath.Join(n.own("cni-bin"), name)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

// nodeCredentials: kubelet's identity (system:node:<name>), which the
// kindnet agent also uses, and kube-proxy's (system:kube-proxy).
func (u *upper) nodeCredentials(n *Node) error {
	api := u.api
	if err := os.MkdirAll(filepath.Join(n.own("kubernetes"), "pki"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.own("kubernetes"), "pki", "ca.crt"), api.CA.CertPEM, 0o644); err != nil {
		return err
	}
	cert, key, err := api.NodeCert(n.Name, api.CA.Cert.NotAfter)
	if err != nil {
		return err
	}
	if err := api.WriteKubeconfig(filepath.Join(n.own("kubernetes"), "kubelet.conf"), kubetest.Kubeconfig{CertPEM: cert, KeyPEM: key}); err != nil {
		return err
	}
	cert, key, err = api.CA.Issue(kubetest.CertSpec{CommonName: "system:kube-proxy", NotAfter: api.CA.Cert.NotAfter})
	if err != nil {
		return err
	}
	return api.WriteKubeconfig(filepath.Join(n.own("kubernetes"), "kube-proxy.conf"), kubetest.Kubeconfig{CertPEM: cert, KeyPEM: key})
}

func copyFile(src, dst string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// makeNamespaces creates the node's mount and UTS namespaces, pinned by
// files in its directory, and sets them up: hostname, overlays, the
// node's own directories, the sysctl files kubelet reads. The mount
// namespace is a slave of the machine's: nothing mounted in it appears
// outside, and namespaces the machine unmounts are released in it too.
func (n *Node) makeNamespaces() error {
	for _, f := range []string{n.MountNS(), n.UTSNS()} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			return err
		}
	}
	var s strings.Builder
	s.WriteString("set -eu\n")
	fmt.Fprintf(&s, "hostname %s\n", n.Name)
	// Copies of the machine's namespace-pinning mounts (other nodes',
	// other tools' /run/netns) would keep those namespaces alive as long
	// as this node lives.
	s.WriteString("findmnt -rn -t nsfs -o TARGET | while read -r m; do umount -l \"$m\" || true; done\n")
	for _, o := range nodeOverlays {
		fmt.Fprintf(&s, "mount -t overlay kindnet-cluster -o lowerdir=%s,upperdir=%s,workdir=%s %s\n",
			o.dst, n.upper(o.name), filepath.Join(n.Dir, "work", o.name), o.dst)
	}
	for _, b := range nodeBinds {
		fmt.Fprintf(&s, "mount --bind %s %s\n", n.own(b.src), b.dst)
	}
	for name := range kubeletSysctls {
		fmt.Fprintf(&s, "mount --bind %s /proc/sys/%s\n", n.sysctlFile(name), name)
	}
	out, err := exec.Command("unshare", "--mount="+n.MountNS(), "--uts="+n.UTSNS(), "--propagation", "slave",
		"--", "/bin/sh", "-c", s.String()).CombinedOutput()
	if err != nil {
		return fmt.Errorf("set up the mount namespace of %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// enter is the command-line prefix that runs a program on the node: in
// its network, mount and UTS namespaces.
func (n *Node) enter() []string {
	return []string{"nsenter", "--mount=" + n.MountNS(), "--uts=" + n.UTSNS(), "--net=/run/netns/" + n.NS, "--"}
}

// nodeEnv is a service's environment under systemd.
var nodeEnv = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}

// run runs a short command on the node.
func (n *Node) run(ctx context.Context, argv ...string) (string, error) {
	argv = append(n.enter(), argv...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = "/", nodeEnv
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// spawnNode starts a long-running program on the node, detached, its
// output in the node's /var/log/NAME.log, and records it.
func (u *upper) spawnNode(n *Node, name string, env []string, argv ...string) (*kubetest.Process, error) {
	p, err := kubetest.StartProcess(kubetest.ProcessSpec{Name: name, Argv: append(n.enter(), argv...), Dir: "/",
		Log: n.LogPath(name), Env: append(append([]string{}, nodeEnv...), env...), Detach: true})
	if err != nil {
		return nil, err
	}
	return p, u.record(name, n.Name, p.PID, p.Log)
}

// startAgent starts the kindnet agent the way kindnet.service does: its
// ExecStart= command line, the EnvironmentFile=, UMask=0077, only
// CAP_NET_ADMIN in the bounding set, NoNewPrivileges=, and a notify socket
// (a kindnet-cluster notify-sink standing in for systemd) on which it must
// say READY=1 before anything else starts (Type=notify, TimeoutStartSec=90s).
func (u *upper) startAgent(ctx context.Context, n *Node) error {
	repo := u.o.RepoRoot
	execStart, err := unitExecStart(filepath.Join(repo, "packaging", "systemd", "kindnet.service"))
	if err != nil {
		return err
	}
	env, err := environmentFile(filepath.Join(repo, "packaging", "environment"))
	if err != nil {
		return err
	}
	notifyLog := filepath.Join(n.Dir, "notify.log")
	sock := filepath.Join(n.own("run"), strings.TrimPrefix(nodeNotifySocket, "/run/"))
	// The notify log is kept across a restart: count the READY=1 lines
	// said before this start.
	before, _ := os.ReadFile(notifyLog)
	readyBefore := strings.Count(string(before), " READY=1\n")
	sink, err := kubetest.StartProcess(kubetest.ProcessSpec{Name: "notify-sink", Dir: "/", Log: filepath.Join(n.Dir, "notify-sink.log"),
		Argv: []string{u.o.Bins.Tool, "notify-sink", "--socket", sock, "--out", notifyLog}, Detach: true})
	if err != nil {
		return err
	}
	if err := u.record("notify-sink", n.Name, sink.PID, sink.Log); err != nil {
		return err
	}
	if err := waitUntil(ctx, 10*time.Second, "the notify socket of "+n.Name, func() (bool, error) {
		_, err := os.Stat(sock)
		return err == nil, err
	}); err != nil {
		return err
	}
	argv := append([]string{"setpriv", "--no-new-privs", "--bounding-set=-all,+net_admin", "--",
		"/bin/sh", "-c", `umask 0077 && exec "$@"`, "kindnet.service"}, execStart...)
	agent, err := u.spawnNode(n, "kindnet", append(env, "NOTIFY_SOCKET="+nodeNotifySocket), argv...)
	if err != nil {
		return err
	}
	err = waitUntil(ctx, 90*time.Second, "READY=1 from the kindnet agent of "+n.Name, func() (bool, error) {
		if !agent.Alive() {
			return false, fmt.Errorf("%w: the agent exited:\n%s", errGaveUp, kubetest.TailFile(agent.Log, 30))
		}
		b, _ := os.ReadFile(notifyLog)
		return strings.Count(string(b), " READY=1\n") > readyBefore, nil
	})
	if err == nil && u.onAgentReady != nil {
		u.onAgentReady()
	}
	return err
}

func (u *upper) waitContainerd(ctx context.Context, n *Node) error {
	ctr := filepath.Join(u.o.Bins.Containerd, "ctr")
	return waitUntil(ctx, 60*time.Second, "containerd on "+n.Name, func() (bool, error) {
		out, err := n.run(ctx, ctr, "--address", nodeContainerdSock, "version")
		if err != nil {
			return false, fmt.Errorf("%w: %s\n%s", err, strings.TrimSpace(out), kubetest.TailFile(n.LogPath("containerd"), 20))
		}
		return true, nil
	})
}

// errGaveUp, wrapped by a wait condition's error, ends the wait at once:
// what it waits for can no longer happen (the process exited).
var errGaveUp = errors.New("gave up")

// waitUntil polls cond every 200ms until it holds; on timeout the error
// names what was awaited and the last reason. A cond error does not stop
// the wait unless it wraps errGaveUp.
func waitUntil(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if errors.Is(err, errGaveUp) {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		last = err
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s: %v", timeout, what, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
