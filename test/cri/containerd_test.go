package cri

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// flavour is one containerd to test: where its binaries are, how its
// config is written and which cniVersion the agent writes for it.
type flavour struct {
	name       string
	containerd string // the daemon
	ctr        string
	shim       string // runtime_path of the runc shim; "" = found in PATH
	cniVersion string
	// status: the runtime asks the plugin for STATUS (CNI 1.1.0).
	status bool
	config func(d *daemon) string
	// importArgs are extra `ctr images import` flags.
	importArgs []string
	// sharedShimSockets: the shim puts its sockets under
	// /run/containerd/s, whatever the config says (containerd 1.6).
	sharedShimSockets bool
}

// daemon is one running containerd, inside a lab node's network
// namespace, with all its files under dir.
type daemon struct {
	t       *testing.T
	f       flavour
	node    *lab.Node
	dir     string
	confDir string // the agent-written conflist's directory
	binDir  string // CNI plugins: kindnet and loopback
	cmd     *exec.Cmd
	exited  chan struct{}
	pods    []string // sandbox IDs ever started, for cleanup
}

func (d *daemon) sock() string    { return filepath.Join(d.dir, "c.sock") }
func (d *daemon) logPath() string { return filepath.Join(d.dir, "containerd.log") }

// containerd16 is Debian's containerd 1.6 with Debian's runc: config
// version 2, and a 1.0.0 conflist (its libcni rejects 1.1.0).
func containerd16() flavour {
	return flavour{name: "containerd-1.6", containerd: "/usr/bin/containerd", ctr: "/usr/bin/ctr",
		cniVersion: "1.0.0", sharedShimSockets: true, config: func(d *daemon) string {
			return fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins."io.containerd.internal.v1.opt"]
  path = %[5]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[6]q
  # root here lacks CAP_SYS_RESOURCE: never lower a process's oom_score_adj
  restrict_oom_score_adj = true
  # pod network namespaces under the temp dir, not /run/netns
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[7]q
    conf_dir = %[8]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = %[9]q
`, filepath.Join(d.dir, "root"), filepath.Join(d.dir, "state"), d.sock(), d.sock()+".ttrpc",
				filepath.Join(d.dir, "opt"), pauseImage, d.binDir, d.confDir, filepath.Join(d.dir, "runc"))
		}}
}

// containerd2 is containerd v2.4.2 built by scripts/tools.sh, with its own
// shim: config version 3, and a 1.1.0 conflist, so it asks STATUS.
func containerd2(dir string) flavour {
	shim := filepath.Join(dir, "containerd-shim-runc-v2")
	return flavour{name: "containerd-2.4.2", containerd: filepath.Join(dir, "containerd"), ctr: filepath.Join(dir, "ctr"),
		shim: shim, cniVersion: "1.1.0", status: true,
		// Not through the transfer service, which unpacks only for the
		// snapshotters of its own config.
		importArgs: []string{"--local"},
		config: func(d *daemon) string {
			return fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
imports = []
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.erofs",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.nri.v1.nri"]
[grpc]
  address = %[3]q
[ttrpc]
  address = %[4]q
[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = %[5]q
  [plugins."io.containerd.shim.v1.manager"]
    socket_dir = %[10]q
  [plugins."io.containerd.cri.v1.images"]
    snapshotter = "native"
    [plugins."io.containerd.cri.v1.images".pinned_images]
      sandbox = %[6]q
  [plugins."io.containerd.cri.v1.runtime"]
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    disable_apparmor = true
    [plugins."io.containerd.cri.v1.runtime".cni]
      bin_dirs = [%[7]q]
      conf_dir = %[8]q
    [plugins."io.containerd.cri.v1.runtime".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        runtime_path = %[9]q
        snapshotter = "native"
        [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
          Root = %[11]q
  [plugins."io.containerd.grpc.v1.cri"]
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
`, filepath.Join(d.dir, "root"), filepath.Join(d.dir, "state"), d.sock(), d.sock()+".ttrpc",
				filepath.Join(d.dir, "opt"), pauseImage, d.binDir, d.confDir, shim, filepath.Join(d.dir, "s"), filepath.Join(d.dir, "runc"))
		}}
}

// startContainerd runs containerd inside node's network namespace,
// reading the CNI config the node's agent writes (see daemon.start).
func startContainerd(t *testing.T, f flavour, node *lab.Node, kindnet string) *daemon {
	t.Helper()
	d := newDaemon(t, f)
	d.start(node, filepath.Dir(node.CNIConfPath()), kindnet)
	return d
}

// newDaemon makes a containerd's directory, a fresh one in /run (short:
// socket paths are limited to 108 bytes), so its socket's path is known
// before it runs. It is removed at test end if containerd never started
// (start takes over the cleanup).
func newDaemon(t *testing.T, f flavour) *daemon {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "kncri-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{t: t, f: f, dir: dir, binDir: filepath.Join(dir, "cni-bin"), exited: make(chan struct{})}
	t.Cleanup(func() {
		if d.cmd == nil {
			_ = os.RemoveAll(dir)
		}
	})
	return d
}

// start runs containerd inside node's network namespace and in a mount
// namespace of its own (its mounts vanish with it), with every file under
// its directory, reading CNI configs from confDir. It is stopped and
// everything it left is removed at test end.
func (d *daemon) start(node *lab.Node, confDir, kindnet string) {
	t, f := d.t, d.f
	t.Helper()
	d.node, d.confDir = node, confDir
	t.Cleanup(d.cleanup)
	if err := os.MkdirAll(d.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	// CNI bin dir: kindnet's plugin, and the loopback plugin containerd
	// runs for every sandbox's lo.
	for name, target := range map[string]string{"kindnet": kindnet, "loopback": "/usr/lib/cni/loopback"} {
		if err := os.Symlink(target, filepath.Join(d.binDir, name)); err != nil {
			t.Fatal(err)
		}
	}
	cfg := filepath.Join(d.dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(f.config(d)), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(d.logPath())
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command("nsenter", "--net=/run/netns/"+node.NS, "--",
		"unshare", "--mount", "--propagation", "slave", "--",
		f.containerd, "--config", cfg, "--log-level", "debug")
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + d.dir}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", f.name, err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.crictl("info"); err == nil {
			break
		}
		select {
		case <-d.exited:
			t.Fatalf("%s exited:\n%s", f.name, d.tailLog(40))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after 60s:\n%s", f.name, d.tailLog(40))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s runs in %s (pid %d), files in %s", f.name, node.NS, d.cmd.Process.Pid, d.dir)
}

func (d *daemon) tailLog(n int) string {
	b, _ := os.ReadFile(d.logPath())
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// crictl runs crictl against this containerd.
func (d *daemon) crictl(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--runtime-endpoint", "unix://" + d.sock(), "--image-endpoint", "unix://" + d.sock(), "--timeout", "60s"}
	cmd := exec.CommandContext(ctx, crictlBin, append(base, args...)...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + d.dir}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return string(out), fmt.Errorf("crictl %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(ee.Stderr)))
		}
		return string(out), fmt.Errorf("crictl %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// importImage imports the pause image for CRI (namespace k8s.io).
func (d *daemon) importImage(tarball string) {
	d.t.Helper()
	args := append([]string{"--address", d.sock(), "--namespace", "k8s.io", "images", "import", "--snapshotter", "native"}, d.f.importArgs...)
	out, err := exec.Command(d.f.ctr, append(args, tarball)...).CombinedOutput()
	if err != nil {
		d.t.Fatalf("ctr images import: %v\n%s", err, out)
	}
}

// networkReady reads the NetworkReady condition of `crictl info`.
func (d *daemon) networkReady() (bool, string, error) {
	out, err := d.crictl("info", "-o", "json")
	if err != nil {
		return false, "", err
	}
	var info struct {
		Status struct {
			Conditions []struct {
				Type    string `json:"type"`
				Status  bool   `json:"status"`
				Reason  string `json:"reason"`
				Message string `json:"message"`
			} `json:"conditions"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		return false, "", fmt.Errorf("crictl info: %w\n%s", err, out)
	}
	for _, c := range info.Status.Conditions {
		if c.Type == "NetworkReady" {
			return c.Status, c.Reason + ": " + c.Message, nil
		}
	}
	return false, "", fmt.Errorf("crictl info has no NetworkReady condition:\n%s", out)
}

// sandbox is what `crictl inspectp` tells about a pod sandbox.
type sandbox struct {
	ID    string
	State string
	IPs   []string
	PID   int
}

func (d *daemon) inspect(id string) (sandbox, error) {
	out, err := d.crictl("inspectp", "-o", "json", id)
	if err != nil {
		return sandbox{}, err
	}
	var v struct {
		Status struct {
			ID      string `json:"id"`
			State   string `json:"state"`
			Network struct {
				IP            string `json:"ip"`
				AdditionalIPs []struct {
					IP string `json:"ip"`
				} `json:"additionalIps"`
			} `json:"network"`
		} `json:"status"`
		Info struct {
			PID int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		return sandbox{}, fmt.Errorf("crictl inspectp: %w\n%s", err, out)
	}
	s := sandbox{ID: v.Status.ID, State: v.Status.State, PID: v.Info.PID}
	if v.Status.Network.IP != "" {
		s.IPs = append(s.IPs, v.Status.Network.IP)
	}
	for _, a := range v.Status.Network.AdditionalIPs {
		s.IPs = append(s.IPs, a.IP)
	}
	return s, nil
}

// runPod starts a pod sandbox with a hostPort, as kubelet would.
func (d *daemon) runPod(name string, hostPort, containerPort int) (string, error) {
	cfg := map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": "uid-" + name, "attempt": 0},
		"hostname":      name,
		"log_directory": filepath.Join(d.dir, "logs", name),
		"port_mappings": []map[string]any{{"protocol": 0, "container_port": containerPort, "host_port": hostPort}},
		"linux":         map[string]any{},
	}
	b, _ := json.Marshal(cfg)
	p := filepath.Join(d.dir, name+".json")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		return "", err
	}
	out, err := d.crictl("runp", p)
	if err != nil {
		return "", err
	}
	id := strings.TrimSpace(out)
	d.pods = append(d.pods, id)
	return id, nil
}

// cleanup removes every pod, stops containerd and its shims (by PID), and
// removes its directory and the shim sockets it left in /run/containerd/s.
func (d *daemon) cleanup() {
	if d.t.Failed() {
		d.t.Logf("---- %s log ----\n%s", d.f.name, d.tailLog(80))
	}
	for _, id := range d.pods {
		if _, err := d.crictl("rmp", "--force", id); err != nil && !strings.Contains(err.Error(), "not found") {
			d.t.Logf("cleanup: %v", err)
		}
	}
	if d.cmd != nil && d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.exited
		}
	}
	// Shims outlive containerd; each is found by its command line naming
	// this containerd's unique socket, and stopped by PID.
	for _, pid := range pidsWithArg(d.sock()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if d.f.sharedShimSockets {
		for _, id := range d.pods {
			sum := sha256.Sum256([]byte(filepath.Join(d.sock(), "k8s.io", id)))
			p := filepath.Join("/run/containerd/s", hex.EncodeToString(sum[:]))
			if err := os.Remove(p); err == nil {
				d.t.Logf("cleanup: removed shim socket %s", p)
			}
		}
		// Only if empty: another containerd may live there.
		_ = os.Remove("/run/containerd/s")
		_ = os.Remove("/run/containerd")
	}
	// Mounts die with containerd's mount namespace; give the kernel a
	// moment if a shim was just killed.
	var err error
	for range 20 {
		if err = os.RemoveAll(d.dir); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.t.Errorf("cleanup: remove %s: %v", d.dir, err)
}

// pidsWithArg lists the processes whose command line contains arg.
func pidsWithArg(arg string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err == nil && strings.Contains(string(b), arg) {
			out = append(out, pid)
		}
	}
	return out
}
