// Package sandbox boots throwaway copies of this machine for tests: new
// mount, PID, network, UTS, IPC (and, with systemd, cgroup) namespaces
// whose root is an overlay of the real / with its upper layer on a tmpfs.
// Whatever dpkg, rpm, maintainer scripts, systemd, kubeadm or the agent
// write lands in that tmpfs; the machine's own files, network, sysctls and
// cgroups are untouched, and killing the sandbox's PID 1 discards all of
// it (the kernel tears the namespaces down), also when a test fails
// half-way. The cgroups a sandbox gets are empty ones below the test's
// own, removed when the test ends.
//
// Inside, the real machine's dpkg database, systemd and tools are there
// (copy-on-write), so packages install exactly as they would on this host.
//
// It never touches the machine's network namespace, its /tmp, or any
// cgroup it did not create. test/packaging and test/kubeadm use it.
package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// Mode says what PID 1 of a sandbox does.
type Mode string

const (
	Hold    Mode = "hold"    // PID 1 sleeps: install and inspect packages
	Systemd Mode = "systemd" // PID 1 becomes systemd on Boot()
)

// Cgroups says which cgroup layout a systemd sandbox sees.
type Cgroups string

const (
	// Unified: the cgroup v2 tree at /sys/fs/cgroup, with whatever
	// controllers the machine gives it (none on a hybrid host).
	Unified Cgroups = "unified"
	// Hybrid: the machine's cgroup v1 controllers and named hierarchies
	// (name=systemd), and cgroup v2 at /sys/fs/cgroup/unified, as on a
	// hybrid host: what kubelet and runc need when the controllers are
	// bound to v1. Each hierarchy's root is the sandbox's own cgroup.
	Hybrid Cgroups = "hybrid"
)

// Options of a sandbox. The zero value is a Hold sandbox.
type Options struct {
	Mode    Mode
	Cgroups Cgroups // Systemd mode only; default Unified
	// Hostname is set in the sandbox's UTS namespace and written to its
	// /etc/hostname (which systemd reads at boot).
	Hostname string
	// Sysctls are files laid over /proc/sys entries inside the sandbox's
	// mount namespace (key vm/overcommit_memory, value "1"): programs
	// there read those values and their writes land in the files, never
	// in the machine's settings.
	Sysctls map[string]string
	// Tmpfs are directories that get a tmpfs of their own, for programs
	// that cannot put their files on the overlay (containerd's overlayfs
	// snapshotter cannot have an overlay as its upper layer).
	Tmpfs []string
	// SystemUnits also gives systemd the units installed in
	// /lib/systemd/system (after UnitDir, whose stub targets win): a
	// package installed while systemd runs then brings its units, as on
	// a real machine. They are loaded when something pulls them in,
	// never through the machine's /etc/systemd/system links.
	SystemUnits bool
}

// Sandbox is one throwaway machine.
type Sandbox struct {
	t      testing.TB
	o      Options
	dir    string // host dir: the mount points and the files PID 1 reads
	pid    int    // host PID of the sandbox's PID 1
	cmd    *exec.Cmd
	cgroup *cgroupSet // Systemd mode only
}

// initScript is PID 1 of a sandbox until it becomes systemd (or sleeps).
// It runs in the new namespaces with the real / still visible, builds the
// overlay root and chroots into it.
const initScript = `#!/bin/sh
set -eu
d=$1 mode=$2 cgroups=$3
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
while read -r dir; do
	mkdir -p "$r$dir"
	mount -t tmpfs -o mode=0711 kindnet-sandbox "$r$dir"
done <"$d/tmpfs"
# Sysctl files over /proc/sys: kubelet and friends read (and write) these,
# not the machine's.
while read -r key file; do
	mount --bind "$file" "$r/proc/sys/$key"
done <"$d/sysctls"
if [ -s "$d/hostname" ]; then
	hostname "$(cat "$d/hostname")"
fi
if [ "$mode" = systemd ]; then
	# The cgroup namespace's roots are the sandbox's own cgroups.
	if [ "$cgroups" = hybrid ]; then
		mount -t tmpfs -o mode=0755 cgroup "$r/sys/fs/cgroup"
		while read -r name opts; do
			mkdir "$r/sys/fs/cgroup/$name"
			mount -t cgroup -o "$opts" cgroup "$r/sys/fs/cgroup/$name"
		done <"$d/cgroup-v1"
		mkdir "$r/sys/fs/cgroup/unified"
		mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup/unified"
	else
		mount -t cgroup2 cgroup2 "$r/sys/fs/cgroup"
	fi
	# systemd and services writing to the console write to a file.
	: >"$d/console"
	mount --bind "$d/console" "$r/dev/console"
fi
: >"$d/ready"
if [ "$mode" = systemd ]; then
	# Into the overlay at once: everything done before boot (dpkg -i,
	# config) must land there too. Boot() creates the trigger file.
	unitpath=/kindnet-test/units
	if [ "$(cat "$d/system-units")" = yes ]; then
		unitpath=$unitpath:/lib/systemd/system
	fi
	export unitpath
	exec chroot "$r" /bin/sh -c 'while [ ! -e /kindnet-test/boot ]; do sleep 0.05; done
		exec /usr/bin/env -i container=kindnet-test \
		SYSTEMD_UNIT_PATH="$unitpath" \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/lib/systemd/systemd --unit=kindnet-test.target --log-target=journal'
fi
exec chroot "$r" sleep infinity
`

// NeedRoot skips the test unless it runs as root.
func NeedRoot(t testing.TB) {
	t.Helper()
	netnstest.RequireHostRoot(t, "boots throwaway machines with mounts, cgroups and systemd")
}

// New starts a sandbox; it is destroyed when the test ends.
func New(t testing.TB, o Options) *Sandbox {
	t.Helper()
	NeedRoot(t)
	if o.Mode == "" {
		o.Mode = Hold
	}
	if o.Cgroups == "" {
		o.Cgroups = Unified
	}
	s := &Sandbox{t: t, o: o, dir: t.TempDir()}
	for _, d := range []string{"layers", "root", "sysctl"} {
		if err := os.Mkdir(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{"init.sh": initScript, "hostname": o.Hostname,
		"tmpfs": lines(o.Tmpfs), "sysctls": s.sysctlFiles(), "cgroup-v1": "", "system-units": "no"}
	if o.SystemUnits {
		files["system-units"] = "yes"
	}
	args := []string{"unshare", "--fork", "--pid", "--mount", "--uts", "--ipc", "--net", "--propagation", "private"}
	if o.Mode == Systemd {
		cg, err := newCgroupSet(o.Cgroups)
		if err != nil {
			t.Skipf("no cgroup hierarchy to give the throwaway systemd: %v", err)
		}
		s.cgroup = cg
		files["cgroup-v1"] = cg.v1Mounts()
		args = append(args, "--cgroup")
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(s.dir, name), []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args = append(args, filepath.Join(s.dir, "init.sh"), s.dir, string(o.Mode), string(o.Cgroups))
	if s.cgroup != nil {
		// Enter the sandbox's cgroups before unsharing, so that they
		// become the roots of the new cgroup namespace.
		args = append([]string{"sh", "-c", s.cgroup.joinScript() + ` exec "$@"`, "sh"}, args...)
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
	if o.Hostname != "" {
		s.WriteFile("/etc/hostname", o.Hostname+"\n", 0o644)
	}
	return s
}

func lines(items []string) string {
	var b strings.Builder
	for _, i := range items {
		b.WriteString(i + "\n")
	}
	return b.String()
}

// sysctlFiles writes the files laid over /proc/sys and lists them for the
// init script, "key file" per line.
func (s *Sandbox) sysctlFiles() string {
	keys := make([]string, 0, len(s.o.Sysctls))
	for k := range s.o.Sysctls {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if strings.Contains(k, "..") || strings.ContainsAny(k, " \n") {
			s.t.Fatalf("sysctl %q: not a /proc/sys path", k)
		}
		f := filepath.Join(s.dir, "sysctl", strings.ReplaceAll(k, "/", "."))
		if err := os.WriteFile(f, []byte(s.o.Sysctls[k]+"\n"), 0o644); err != nil {
			s.t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s %s\n", k, f)
	}
	return b.String()
}

// PID is the host PID of the sandbox's PID 1: its namespaces are
// /proc/PID/ns/*.
func (s *Sandbox) PID() int { return s.pid }

// mustBeSandboxed stops the test unless the sandbox's PID 1 has the overlay
// as its root: every command and file the test puts "inside" goes through
// that root, and must never reach the real one.
func (s *Sandbox) mustBeSandboxed() {
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
func childOf(t testing.TB, pid int) int {
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
// removes its cgroups.
func (s *Sandbox) destroy() {
	if s.pid > 0 {
		_ = syscall.Kill(s.pid, syscall.SIGKILL)
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Wait()
	}
	if s.cgroup != nil {
		if err := s.cgroup.remove(); err != nil {
			s.t.Errorf("remove the sandbox's cgroups: %v", err)
		}
	}
}

// Path is where a file inside the sandbox is, seen from the host: through
// PID 1's root directory, which is the overlay.
func (s *Sandbox) Path(p string) string {
	s.mustBeSandboxed()
	return fmt.Sprintf("/proc/%d/root%s", s.pid, p)
}

// Env is the environment commands run with inside: clean and predictable,
// like a maintainer script's.
var Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive"}

// Command is a command that runs inside the sandbox (its namespaces and
// root), not started yet.
func (s *Sandbox) Command(args ...string) *exec.Cmd {
	s.mustBeSandboxed()
	ns := []string{"-t", fmt.Sprint(s.pid), "-m", "-p", "-u", "-n", "-i", "-r", "-w"}
	if s.cgroup != nil {
		ns = append(ns, "-C")
	}
	cmd := exec.Command("nsenter", append(append(ns, "--"), args...)...)
	cmd.Env = append([]string{}, Env...)
	return cmd
}

// Run runs a command inside and returns stdout and stderr separately.
func (s *Sandbox) Run(args ...string) (stdout, stderr string, err error) {
	s.t.Helper()
	cmd := s.Command(args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// MustRun runs a command inside and fails the test on a non-zero exit.
func (s *Sandbox) MustRun(args ...string) string {
	s.t.Helper()
	o, e, err := s.Run(args...)
	if err != nil {
		s.t.Fatalf("in sandbox: %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, o, e)
	}
	return o
}

// Sh runs a shell command line inside.
func (s *Sandbox) Sh(script string) string {
	s.t.Helper()
	return s.MustRun("/bin/sh", "-c", script)
}

// WriteFile writes a file inside the sandbox.
func (s *Sandbox) WriteFile(p, content string, mode os.FileMode) {
	s.t.Helper()
	if err := os.MkdirAll(filepath.Dir(s.Path(p)), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(s.Path(p), []byte(content), mode); err != nil {
		s.t.Fatal(err)
	}
}

// CopyIn copies a host file into the sandbox.
func (s *Sandbox) CopyIn(hostPath, p string, mode os.FileMode) {
	s.t.Helper()
	b, err := os.ReadFile(hostPath)
	if err != nil {
		s.t.Fatal(err)
	}
	s.WriteFile(p, string(b), mode)
}

// BindIn shows a host directory, read-only, at p inside the sandbox
// (mounted in the sandbox's mount namespace only).
func (s *Sandbox) BindIn(hostDir, p string) {
	s.t.Helper()
	if err := os.MkdirAll(s.Path(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	target := filepath.Join(s.dir, "root", p)
	cmd := exec.Command("nsenter", "-t", fmt.Sprint(s.pid), "-m", "--", "sh", "-c",
		`mount --bind "$1" "$2" && mount -o remount,bind,ro "$2"`, "sh", hostDir, target)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("bind %s at %s in the sandbox: %v\n%s", hostDir, p, err, out)
	}
}

// UpperChanges lists what the sandbox changed compared with the real
// machine: files, symlinks and whiteouts (deletions) in the overlay's upper
// layer, and directories there that the machine does not have. Paths are
// absolute, as inside the sandbox.
func (s *Sandbox) UpperChanges() []string {
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

// Console is what systemd and the services wrote to the console.
func (s *Sandbox) Console() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "console"))
	return string(b)
}

// Boot turns the sandbox's PID 1 into systemd and waits until it answers.
func (s *Sandbox) Boot() {
	s.t.Helper()
	s.WriteFile("/kindnet-test/boot", "", 0o644)
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, _, err := s.Run("systemctl", "is-system-running")
		st := strings.TrimSpace(o)
		if err == nil || st == "degraded" {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("systemd did not finish starting (state %q):\n%s", st, s.Console())
		}
		time.Sleep(100 * time.Millisecond)
	}
}
