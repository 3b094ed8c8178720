package images

import (
	"context"
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

	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// hostname is the host's name, which a chroot (no UTS namespace) shares.
func hostname(t *testing.T) string {
	t.Helper()
	h, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func requireRoot(t *testing.T) {
	t.Helper()
	netnstest.RequireHostRoot(t, "chroots into the images and runs containerd")
}

// unpack extracts a's layer into a fresh directory, owners and modes as
// the archive says (GNU tar as root, as a runtime unpacks it).
func unpack(t *testing.T, a *archive) string {
	t.Helper()
	dir := t.TempDir()
	layer := filepath.Join(dir, "layer.tar")
	must(t, os.WriteFile(layer, a.layer, 0o600))
	root := filepath.Join(dir, "root")
	must(t, os.Mkdir(root, 0o755))
	if out, err := exec.Command("tar", "-xpf", layer, "--numeric-owner", "-C", root).CombinedOutput(); err != nil {
		t.Fatalf("tar: %v\n%s", err, out)
	}
	// The one device the shell needs (for background jobs' stdin); a
	// runtime provides /dev in a container.
	must(t, os.MkdirAll(filepath.Join(root, "dev"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "proc"), 0o555))
	must(t, syscall.Mknod(filepath.Join(root, "dev", "null"), syscall.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	return root
}

// inRoot runs args in root (chroot) as a container would see it: in
// network, mount and PID namespaces of its own (only a loopback; they go
// with the process) with /proc mounted, with the image's PATH. It returns
// stdout and stderr together.
func inRoot(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--net", "--pid", "--fork",
		"--mount-proc=" + filepath.Join(root, "proc"), "--", "chroot", root}, args...)...)
	cmd.Env = []string{defaultPath, "HOME=/root"}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// The programs the e2e tests shell out to run inside the images, from
// their own libraries: netcat with UDP, curl, dig, nslookup, ip, ss,
// socat, getent reading the image's users and groups, the shell and
// coreutils; and the nginx stand-in serves its page on IPv4 and IPv6.
func TestImagesRunTheirTools(t *testing.T) {
	requireRoot(t)
	archives := buildOnce(t)
	ag := unpack(t, archiveOf(t, archives, AgnhostRef))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"nc", "-h"}, "UDP mode"},
		{[]string{"dig", "-v"}, "DiG 9"},
		{[]string{"nslookup", "-version"}, "nslookup 9"},
		{[]string{"curl", "--version"}, "curl "},
		{[]string{"ip", "-V"}, "iproute2"},
		{[]string{"ss", "-V"}, "iproute2"},
		{[]string{"socat", "-V"}, "socat version"},
		{[]string{"getent", "passwd", "user-defined-in-image"}, "user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh"},
		{[]string{"getent", "group", "group-defined-in-image"}, "group-defined-in-image:x:50000:user-defined-in-image"},
		{[]string{"id", "-G", "user-defined-in-image"}, "1000 50000"},
		{[]string{"/bin/sh", "-c", "seq 3 | tail -n 1 && sleep 0 && test -d /uploads && cat /localhost.crt | head -n 1"}, "3\n-----BEGIN CERTIFICATE-----"},
		// nc -u both ways over the namespace's loopback, IPv4 and IPv6
		// (/tmp here is the unpacked image's, inside the chroot).
		{[]string{"/bin/sh", "-c", `ip link set lo up || exit 1
			for a in 127.0.0.1 ::1; do
				nc -u -l -W 1 $a 9999 > /tmp/got & pid=$!
				sleep 0.3
				echo "udp $a" | nc -u -w 1 $a 9999
				wait $pid; cat /tmp/got
			done`}, "udp 127.0.0.1\nudp ::1"},
		// agnhost netexec, as the e2e framework drives it: HTTP by curl,
		// UDP by nc, both answering the hostname; the agnhost-2 link.
		{[]string{"/bin/sh", "-c", `ip link set lo up || exit 1
			/agnhost netexec --http-port 8080 --udp-port 8081 > /dev/null 2>&1 & pid=$!
			for i in $(seq 1 50); do curl -s http://127.0.0.1:8080/hostname > /dev/null && break; sleep 0.1; done
			echo "http: $(curl -g -q -s --max-time 5 'http://[::1]:8080/hostname')"
			echo "udp: $(echo hostName | nc -w 1 -u 127.0.0.1 8081)"
			kill $pid
			/agnhost-2 --help | grep -c netexec`}, "http: " + hostname(t) + "\nudp: " + hostname(t) + "\n1"},
		// curl and wget (with the -T the service tests give it) against
		// busybox httpd.
		{[]string{"/bin/sh", "-c", `ip link set lo up || exit 1
			echo served > /uploads/f
			httpd -f -p 127.0.0.1:8080 -h /uploads & pid=$!
			sleep 0.3
			curl -s --max-time 5 http://127.0.0.1:8080/f && wget -q -O - -T 1 http://127.0.0.1:8080/f; rc=$?
			kill $pid; exit $rc`}, "served\nserved"},
	} {
		out, err := inRoot(t, ag, c.args...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("agnhost image: %q: %v\n%s\nwant %q in it", c.args, err, out, c.want)
		}
	}

	g := unpack(t, archiveOf(t, archives, GlibcDNSTestingRef))
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"dig", "-v"}, "DiG 9"},
		{[]string{"nslookup", "-version"}, "nslookup 9"},
		{[]string{"getent", "passwd", "root"}, "root:x:0:0:"},
		{[]string{"sh", "-c", "for i in `seq 1 2`; do echo $i; done"}, "1\n2"},
	} {
		out, err := inRoot(t, g, c.args...)
		if err != nil || !strings.Contains(out, c.want) {
			t.Errorf("glibc-dns-testing image: %q: %v\n%s\nwant %q in it", c.args, err, out, c.want)
		}
	}

	na := archiveOf(t, archives, NginxRef)
	n := unpack(t, na)
	script := fmt.Sprintf(`ip link set lo up || exit 1
		%s & pid=$!
		sleep 0.5
		wget -q -O - http://127.0.0.1/ && wget -q -O - 'http://[::1]/'; rc=$?
		kill $pid; exit $rc`, strings.Join(na.config.Config.Cmd, " "))
	if out, err := inRoot(t, n, "sh", "-c", script); err != nil || strings.Count(out, "<h1>Welcome to nginx!</h1>") != 2 {
		t.Errorf("nginx image: its command does not serve the page on IPv4 and IPv6: %v\n%s", err, out)
	}

	d := unpack(t, archiveOf(t, archives, CoreDNSRef))
	if out, err := inRoot(t, d, "/coredns", "-version"); err != nil || !strings.Contains(out, "CoreDNS-1.14.6") {
		t.Errorf("coredns image: /coredns -version: %v\n%s", err, out)
	}

	b := unpack(t, archiveOf(t, archives, BusyBoxRef))
	if out, err := inRoot(t, b, "sh", "-c", "echo ok"); err != nil || out != "ok\n" {
		t.Errorf("busybox image: sh -c 'echo ok': %v %q", err, out)
	}
}

// kube-proxy's nft and iptables (nf_tables, with a module loaded by
// dlopen and a protocol resolved through NSS) work in its image: a rule
// added by iptables is listed by iptables-save and by nft, in a network
// namespace of their own. The control-plane binaries start.
func TestKubeadmImagesRun(t *testing.T) {
	requireRoot(t)
	archives := buildKubeadmOnce(t)
	kp := unpack(t, archiveOf(t, archives, KubeProxyRef))
	// The image has no shell: the host's runs each step in the image.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "unshare", "--net", "--", "sh", "-c", `set -e
		img() { chroot "$R" "$@"; }
		img iptables --version
		img iptables -A INPUT -p tcp --dport 80 -m comment --comment kindnet-images -j ACCEPT
		img iptables-save -t filter
		img ip6tables -S
		img nft list ruleset
		img nft --version`)
	cmd.Env = []string{defaultPath, "R=" + kp}
	out, err := cmd.CombinedOutput()
	for _, want := range []string{"nf_tables", `-A INPUT -p tcp -m tcp --dport 80 -m comment --comment kindnet-images -j ACCEPT`,
		"table ip filter", "tcp dport 80 ", "nftables v"} {
		if err != nil || !strings.Contains(string(out), want) {
			t.Errorf("kube-proxy image: %v\n%s\nwant %q in it", err, out, want)
			break
		}
	}
	for ref, bin := range map[string]string{KubeAPIServerRef: "kube-apiserver", KubeProxyRef: "kube-proxy"} {
		root := kp
		if ref != KubeProxyRef {
			root = unpack(t, archiveOf(t, archives, ref))
		}
		if out, err := inRoot(t, root, "/usr/local/bin/"+bin, "--version"); err != nil || !strings.Contains(out, KubernetesVersion) {
			t.Errorf("%s: %s --version: %v\n%s", ref, bin, err, out)
		}
	}
}

// A real containerd 2.x imports every archive with `ctr images import
// --local` under its name, and runs the agnhost image: its tools start
// from the rootfs containerd unpacked, and a process run as uid 1000 gets
// the image's group 50000 as a supplementary group, as the
// SupplementalGroupsPolicy conformance tests expect.
func TestContainerdImportsAndRuns(t *testing.T) {
	requireRoot(t)
	toolsDir, err := toolPathForTest("containerd2")
	if err != nil {
		t.Skip(err)
	}
	for _, p := range []string{"containerd", "containerd-shim-runc-v2", "ctr"} {
		if _, err := os.Stat(filepath.Join(toolsDir, p)); err != nil {
			t.Skipf("containerd 2.x is not built (%v): `make tools`", err)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is missing: `make deps` installs it")
	}
	archives := buildOnce(t)
	d := startContainerd(t, toolsDir)

	for _, a := range archives {
		if out, err := d.ctr("images", "import", "--local", "--snapshotter", "native", a.Path); err != nil {
			t.Fatalf("import %s: %v\n%s", a.Path, err, out)
		}
	}
	out, err := d.ctr("images", "ls", "-q")
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range archives {
		if !strings.Contains("\n"+out, "\n"+a.Ref+"\n") {
			t.Errorf("containerd does not list %s after the import:\n%s", a.Ref, out)
		}
	}

	script := `nc -h 2>&1 | grep "UDP mode"; dig -v 2>&1; getent passwd user-defined-in-image; ls -d /agnhost-2 /localhost.key /uploads`
	out, err = d.run(AgnhostRef, "", "sh", "-c", script)
	for _, want := range []string{"UDP mode", "DiG 9", "user-defined-in-image:x:1000:", "/agnhost-2\n/localhost.key\n/uploads"} {
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("agnhost under containerd: %v\n%s\nwant %q in it", err, out, want)
		}
	}
	if out, err := d.run(AgnhostRef, "1000", "id", "-G"); err != nil || strings.TrimSpace(out) != "1000 50000" {
		t.Errorf("agnhost as uid 1000: id -G = %q (%v), want \"1000 50000\"", out, err)
	}
}

// toolPathForTest asks scripts/tools.sh where a cached tool lives.
func toolPathForTest(name string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	o := Options{Root: root, Tools: os.Getenv("KINDNET_TOOLS")}
	if o.Tools == "" {
		home, _ := os.UserHomeDir()
		o.Tools = filepath.Join(home, ".cache", "kindnet")
	}
	return toolPath(context.Background(), o, name)
}

// containerd is a containerd 2.x with every file under dir, in a network
// and mount namespace of its own.
type containerd struct {
	t      *testing.T
	bin    string
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	n      int
}

func (d *containerd) sock() string { return filepath.Join(d.dir, "c.sock") }

func startContainerd(t *testing.T, bin string) *containerd {
	t.Helper()
	// Under /run: socket paths are limited to 108 bytes.
	dir, err := os.MkdirTemp("/run", "knimg-")
	if err != nil {
		t.Fatal(err)
	}
	d := &containerd{t: t, bin: bin, dir: dir, exited: make(chan struct{})}
	t.Cleanup(d.stop)
	// No CRI: only the content store, images, the native snapshotter and
	// runc tasks are needed to import and run.
	cfg := fmt.Sprintf(`version = 3
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
  "io.containerd.podsandbox.controller.v1.podsandbox",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
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
    socket_dir = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock(), d.sock()+".ttrpc",
		filepath.Join(dir, "opt"), filepath.Join(dir, "s"))
	cfgPath := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	logf, err := os.Create(filepath.Join(dir, "containerd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	d.cmd = exec.Command("unshare", "--net", "--mount", "--propagation", "slave", "--",
		filepath.Join(bin, "containerd"), "--config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// The shim is found in PATH, next to containerd; runc is Debian's.
	d.cmd.Env = []string{"PATH=" + bin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir}
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.ctr("version"); err == nil {
			return d
		}
		select {
		case <-d.exited:
			t.Fatalf("containerd exited:\n%s", d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not ready after 30s:\n%s", d.log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (d *containerd) log() string {
	b, _ := os.ReadFile(filepath.Join(d.dir, "containerd.log"))
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

func (d *containerd) ctr(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(d.bin, "ctr"), append([]string{"--address", d.sock(), "--namespace", "k8s.io"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// run runs a container of ref (as user, when set) to its end and returns
// its output. Its cgroup is one directory, removed with the container;
// runc's state lives under the test's directory.
func (d *containerd) run(ref, user string, args ...string) (string, error) {
	d.n++
	id := fmt.Sprintf("knimg-%d-%d", os.Getpid(), d.n)
	cgroup := "/" + id
	flags := []string{"run", "--rm", "--snapshotter", "native", "--runc-root", filepath.Join(d.dir, "runc"), "--cgroup", cgroup}
	if user != "" {
		flags = append(flags, "--user", user)
	}
	out, err := d.ctr(append(append(flags, ref, id), args...)...)
	d.removeCgroup(cgroup)
	return out, err
}

// removeCgroup removes what is left of a container's cgroup in every
// hierarchy (runc removes it on delete; a failed run may leave it).
func (d *containerd) removeCgroup(cgroup string) {
	hier, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, h := range append(hier, "/sys/fs/cgroup") {
		p := filepath.Join(h, cgroup)
		if _, err := os.Stat(p); err == nil {
			if err := os.Remove(p); err != nil {
				d.t.Errorf("cgroup %s left behind: %v", p, err)
			}
		}
	}
}

// stop stops containerd and any shim of it (by PID), and removes its
// directory.
func (d *containerd) stop() {
	if d.t.Failed() && d.cmd != nil {
		d.t.Logf("---- containerd log ----\n%s", d.log())
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
	for _, pid := range pidsWithArg(d.sock()) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	var err error
	for range 20 {
		if err = os.RemoveAll(d.dir); err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	d.t.Errorf("remove %s: %v", d.dir, err)
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
