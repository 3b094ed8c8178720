package packaging

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A sandbox is a throwaway copy of this machine to install packages in and,
// optionally, to boot systemd in: new mount, PID, network, UTS, IPC (and,
// with systemd, cgroup) namespaces whose root is an overlay of the real /
// with its upper layer on a tmpfs. Whatever dpkg, rpm, maintainer scripts,
// systemd or the agent write lands in that tmpfs; the machine's own files,
// network and cgroups are untouched, and killing the sandbox's PID 1
// discards all of it (the kernel tears the namespaces down), also when a
// test fails half-way.
//
// Inside, the real machine's dpkg database, systemd and tools are there
// (copy-on-write), so packages install exactly as they would on this host.
type sandbox struct {
	t      *testing.T
	dir    string // host dir: the mount points and the files PID 1 reads
	pid    int    // host PID of the sandbox's PID 1
	cmd    *exec.Cmd
	cgroup string // host path of the sandbox's cgroup (systemd mode only)
}

// sandboxInit is PID 1 of a sandbox until it becomes systemd (or sleeps).
// It runs in the new namespaces with the real / still visible, builds the
// overlay root and chroots into it.
const sandboxInit = `#!/bin/sh
set -eu
d=$1 mode=$2
r=$d/root
mount -t tmpfs -o mode=0755 kindnet-sandbox "$d/layers"
mkdir "$d/layers/upper" "$d/layers/work"
mount -t overlay kindnet-sandbox -o "lowerdir=/,upperdir=$d/layers/upper,workdir=$d/layers/work" "$r"
mount -t proc proc "$r/proc"
mount -t sysfs sysfs "$r/sys"
mount --rbind /dev "$r/dev"
mount -t tmpfs -o mode=0755 tmpfs "$r/run"
# A /tmp of its own: the machine's /tmp (the overlay's lower layer) may hold
# anything, such as a file where a test puts a directory.
mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
if [ "$mode" = systemd ]; then
	# The cgroup namespace's root is the sandbox's own cgroup.
	mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
	# systemd and services writing to the console write to a file.
	: >"$d/console"
	mount --bind "$d/console" "$r/dev/console"
fi
: >"$d/ready"
if [ "$mode" = systemd ]; then
	# Into the overlay at once: everything done before boot (dpkg -i,
	# config) must land there too. boot() creates the trigger file.
	exec chroot "$r" /bin/sh -c 'while [ ! -e /kindnet-test/boot ]; do sleep 0.05; done
		exec /usr/bin/env -i container=kindnet-test \
		SYSTEMD_UNIT_PATH=/kindnet-test/units \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/lib/systemd/systemd --unit=kindnet-test.target --log-target=journal'
fi
exec chroot "$r" sleep infinity
`

type sandboxMode string

const (
	holdMode    sandboxMode = "hold"    // PID 1 sleeps: install and inspect packages
	systemdMode sandboxMode = "systemd" // PID 1 becomes systemd on boot()
)

func newSandbox(t *testing.T, mode sandboxMode) *sandbox {
	t.Helper()
	needRoot(t)
	s := &sandbox{t: t, dir: t.TempDir()}
	for _, d := range []string{"layers", "root"} {
		if err := os.Mkdir(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	initPath := filepath.Join(s.dir, "init.sh")
	if err := os.WriteFile(initPath, []byte(sandboxInit), 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{"unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--propagation", "private"}
	if mode == systemdMode {
		s.cgroup = newCgroup(t)
		args = append(args, "--cgroup")
	}
	args = append(args, initPath, s.dir, string(mode))
	if s.cgroup != "" {
		// Enter the sandbox's cgroup before unsharing, so that it becomes
		// the root of the new cgroup namespace.
		args = append([]string{"sh", "-c", `echo $$ >"$0/cgroup.procs" && exec "$@"`, s.cgroup}, args...)
	}
	s.cmd = exec.Command(args[0], args[1:]...)
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start sandbox: %v", err)
	}
	t.Cleanup(s.destroy)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(s.dir, "ready")); err == nil {
			break
		}
		if time.Now().After(deadline) || s.cmd.ProcessState != nil {
			t.Fatalf("sandbox did not come up:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.pid = childOf(t, s.cmd.Process.Pid)
	s.mustBeSandboxed()
	return s
}

// mustBeSandboxed stops the test unless the sandbox's PID 1 has the overlay
// as its root: every command and file the test puts "inside" goes through
// that root, and must never reach the real one.
func (s *sandbox) mustBeSandboxed() {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		inner, err1 := os.Stat(fmt.Sprintf("/proc/%d/root/", s.pid))
		host, err2 := os.Stat("/")
		if err1 == nil && err2 == nil && !os.SameFile(inner, host) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("sandbox PID 1 (%d) is not chrooted into its overlay (%v, %v): refusing to touch the real root", s.pid, err1, err2)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// childOf finds unshare's child: PID 1 of the new PID namespace.
func childOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		t.Fatal(err)
	}
	var child int
	if _, err := fmt.Sscan(string(b), &child); err != nil {
		t.Fatalf("unshare %d has no child: %q", pid, b)
	}
	return child
}

// destroy kills the sandbox's PID 1 (by PID: the kernel then kills every
// process of its PID namespace and drops its mounts and network), then
// removes its cgroup.
func (s *sandbox) destroy() {
	if s.pid > 0 {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Wait()
	}
	if s.cgroup != "" {
		if err := removeCgroup(s.cgroup); err != nil {
			s.t.Errorf("remove the sandbox's cgroup: %v", err)
		}
	}
}

// path is where a file inside the sandbox is, seen from the host: through
// PID 1's root directory, which is the overlay.
func (s *sandbox) path(p string) string {
	s.mustBeSandboxed()
	return fmt.Sprintf("/proc/%d/root%s", s.pid, p)
}

// run runs a command inside the sandbox (its namespaces and root) and
// returns stdout and stderr separately.
func (s *sandbox) run(args ...string) (stdout, stderr string, err error) {
	s.t.Helper()
	s.mustBeSandboxed()
	ns := []string{"-t", fmt.Sprint(s.pid), "-m", "-p", "-u", "-n", "-i", "-r", "-w"}
	if s.cgroup != "" {
		ns = append(ns, "-C")
	}
	cmd := exec.Command("nsenter", append(append(ns, "--"), args...)...)
	// A clean, predictable environment, like a maintainer script's.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// mustRun runs a command inside and fails the test on a non-zero exit.
func (s *sandbox) mustRun(args ...string) string {
	s.t.Helper()
	o, e, err := s.run(args...)
	if err != nil {
		s.t.Fatalf("in sandbox: %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o, e)
	}
	return o
}

// sh runs a shell command line inside.
func (s *sandbox) sh(script string) string {
	s.t.Helper()
	return s.mustRun("/bin/sh", "-c", script)
}

// writeFile writes a file inside the sandbox.
func (s *sandbox) writeFile(p, content string, mode os.FileMode) {
	s.t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.path(p)), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.path(p), []byte(content), mode); err != nil {
		s.t.Fatal(err)
	}
}

// copyIn copies a host file into the sandbox.
func (s *sandbox) copyIn(hostPath, p string) {
	s.t.Helper()
	b, err := os.ReadFile(hostPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.writeFile(p, string(b), 0o644)
}

// upperChanges lists what the sandbox changed compared with the real
// machine: files, symlinks and whiteouts (deletions) in the overlay's upper
// layer, and directories there that the machine does not have. Paths are
// absolute, as inside the sandbox.
func (s *sandbox) upperChanges() []string {
	s.t.Helper()
	upper := filepath.Join(s.dir, "layers", "upper")
	// The upper layer is a tmpfs mounted in the sandbox's mount namespace
	// only: list it from there (without the chroot).
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(s.pid), "-m", "--", "find", upper, "-mindepth", "1", "-printf", "%y %P\n")
	out, err := cmd.Output()
	if err != nil {
		s.t.Fatalf("list the sandbox's changes: %v", err)
	}
	var changes []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		kind, rel, _ := strings.Cut(sc.Text(), " ")
		p := "/" + rel
		switch kind {
		case "d":
			// Directories are copied up whenever something below them
			// changes; only new ones are changes themselves.
			if _, err := os.Lstat(p); err == nil {
				continue
			}
			changes = append(changes, p+"/")
		case "c":
			changes = append(changes, p+" (deleted)")
		default:
			changes = append(changes, p)
		}
	}
	return changes
}

// boot turns the sandbox's PID 1 into systemd and waits until it answers.
func (s *sandbox) boot() {
	s.t.Helper()
	s.writeFile("/kindnet-test/boot", "", 0o644)
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, _, err := s.run("systemctl", "is-system-running")
		st := strings.TrimSpace(o)
		if err == nil || st == "degraded" {
			return
		}
		if time.Now().After(deadline) {
			console, _ := os.ReadFile(filepath.Join(s.dir, "console"))
			s.t.Fatalf("systemd did not finish starting (state %q):\n%s", st, console)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newCgroup makes an empty cgroup v2 for a sandbox below the test's own.
func newCgroup(t *testing.T) string {
	t.Helper()
	mnt, err := cgroup2Mount()
	if err != nil {
		t.Skipf("no cgroup v2 hierarchy to give the throwaway systemd: %v", err)
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	own := ""
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "0::"); ok {
			own = rest
		}
	}
	dir, err := os.MkdirTemp(filepath.Join(mnt, own), "kindnet-sandbox-")
	if err != nil {
		t.Fatalf("create a cgroup for the sandbox: %v", err)
	}
	return dir
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup
// on a unified host, /sys/fs/cgroup/unified on a hybrid one.
func cgroup2Mount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, "cgroup2 ") {
			continue
		}
		if f := strings.Fields(pre); len(f) > 4 {
			return f[4], nil
		}
	}
	return "", errors.New("no cgroup2 mount in /proc/self/mountinfo")
}

// removeCgroup removes a cgroup and everything systemd made below it, once
// the processes in it are gone.
func removeCgroup(dir string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		var last error
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil && !os.IsNotExist(err) {
				last = err
			}
		}
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return nil
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSandboxHasATmpOfItsOwn: the fixed paths tests use under the
// sandbox's /tmp never meet what the machine's /tmp holds.
func TestSandboxHasATmpOfItsOwn(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "seen-from-the-sandbox")
	if !strings.HasPrefix(hostFile, "/tmp/") {
		t.Skipf("the test's temp dir %s is not under /tmp (TMPDIR is set)", hostFile)
	}
	if err := os.WriteFile(hostFile, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := newSandbox(t, holdMode)
	if out, _, err := s.run("cat", hostFile); err == nil {
		t.Fatalf("the sandbox sees the machine's %s (%q)", hostFile, out)
	}
	if out, _, err := s.run("find", "/tmp", "-mindepth", "1"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("sandbox /tmp not empty: %q %v", out, err)
	}
}
