package packaging

import (
	"github.com/kindnet-dev/kindnet/test/sandbox"

	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
)

// checkInstalled checks every entry is in place in the sandbox, owned by
// root, with its mode (and link target).
func checkInstalled(t *testing.T, s *sandbox.Sandbox, es []entry) {
	t.Helper()
	for _, e := range es {
		fi, err := os.Lstat(s.Path(e.path))
		if err != nil {
			t.Errorf("%s: not installed: %v", e.path, err)
			continue
		}
		if got := fi.Mode().String(); got != e.mode {
			t.Errorf("%s: mode %s, want %s", e.path, got, e.mode)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && (st.Uid != 0 || st.Gid != 0) {
			t.Errorf("%s: owned by %d:%d, want root:root", e.path, st.Uid, st.Gid)
		}
		if e.target != "" {
			if got, _ := os.Readlink(s.Path(e.path)); got != e.target {
				t.Errorf("%s: links to %q, want %q", e.path, got, e.target)
			}
		}
	}
}

// expectVersion checks `kindnet version --short` inside the sandbox, and
// that the CNI plugin (its own binary, a regular file) is the same build:
// its about text, printed when run without CNI_COMMAND, names the version.
func expectVersion(t *testing.T, s *sandbox.Sandbox, want string) {
	t.Helper()
	if got := strings.TrimSpace(s.MustRun("kindnet", "version", "--short")); got != want {
		t.Errorf("kindnet version --short = %q, want %q", got, want)
	}
	plugins := []string{"/opt/cni/bin/kindnet"}
	if _, err := os.Lstat(s.Path("/usr/libexec/cni/kindnet")); err == nil {
		plugins = append(plugins, "/usr/libexec/cni/kindnet") // the rpm
	}
	for _, p := range plugins {
		if fi, err := os.Lstat(s.Path(p)); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("%s: want a regular file (the lean plugin), got %v %v", p, fi, err)
			continue
		}
		stdout, stderr, _ := s.Run(p) // skel prints the about text to stderr
		if about := stdout + stderr; !strings.Contains(about, "kindnet CNI plugin "+want+"\n") {
			t.Errorf("%s (no CNI_COMMAND) printed %q, want the about text naming %s", p, stdout+stderr, want)
		}
	}
}

// expectEnabled checks what `systemctl is-enabled` answers, without a
// running systemd: it reads the unit files and links.
func expectEnabled(t *testing.T, s *sandbox.Sandbox, want string) {
	t.Helper()
	o, _, _ := s.Run("systemctl", "is-enabled", "kindnet.service")
	if got := strings.TrimSpace(o); got != want {
		t.Errorf("systemctl is-enabled kindnet = %q, want %q", got, want)
	}
}

// leftovers are the sandbox's changes that are not dpkg's or rpm's own
// bookkeeping, caches of other packages, or the test's own files in /tmp.
func leftovers(changes []string) []string {
	allowed := regexp.MustCompile(`^/(var/lib/dpkg/|var/log/dpkg\.log|var/log/apt/|var/cache/man/|var/cache/debconf/|root/\.rpmdb/|root/\.config/enchant/|tmp/|var/tmp/)`)
	var out []string
	for _, c := range changes {
		if !allowed.MatchString(c) {
			out = append(out, c)
		}
	}
	return out
}

// TestDebInstallUpgradePurgeLeavesNothing installs the .deb with dpkg -i in
// a throwaway root (an overlay of this machine: same dpkg database, same
// systemd, no systemd running as PID 1, like a container or an image
// build), upgrades it to a rebuilt higher version and purges it.
//
// Why not on the machine itself: dpkg -i writes /usr/bin, /etc and the dpkg
// database of the host, and a crash between install and purge would leave
// them behind. In the sandbox the same scripts run against the same
// database, the purge can be checked against the overlay's upper layer
// (every file created, changed or deleted), and nothing outlives the test.
func TestDebInstallUpgradePurgeLeavesNothing(t *testing.T) {
	needRoot(t)
	needTools(t, "dpkg", "systemctl", "unshare", "nsenter")
	v1, v2 := packagesFor(t, "1.0.0"), packagesFor(t, "1.0.1")
	s := sandbox.New(t, sandbox.Options{})
	s.CopyIn(v1.deb, "/tmp/v1.deb", 0o644)
	s.CopyIn(v2.deb, "/tmp/v2.deb", 0o644)

	// Install: files in place, enabled (offline), not started (no systemd;
	// nor would it be started: no nodes file, no kubelet.conf).
	s.MustRun("dpkg", "-i", "/tmp/v1.deb")
	checkInstalled(t, s, debEntries())
	expectVersion(t, s, "1.0.0")
	expectEnabled(t, s, "enabled")
	if got := s.Sh("dpkg-query -W -f '${Status} ${Version}' kindnet"); got != "install ok installed 1.0.0-1" {
		t.Errorf("dpkg-query: %q", got)
	}
	conffiles := s.Sh("dpkg-query -W -f '${Conffiles}' kindnet")
	for _, c := range []string{"/etc/kindnet/config.yaml", "/etc/default/kindnet", "/etc/iproute2/rt_protos.d/kindnet.conf"} {
		if !strings.Contains(conffiles, c+" ") {
			t.Errorf("%s is not a conffile; conffiles:\n%s", c, conffiles)
		}
	}
	if got := s.Sh("cat /etc/iproute2/rt_protos.d/kindnet.conf | grep -v '^#'"); got != "107\tkindnet\n" {
		t.Errorf("rt_protos.d entry = %q, want \"107\\tkindnet\"", got)
	}
	installed := strings.Fields(s.Sh("dpkg -L kindnet"))

	// The unit as installed verifies cleanly: systemd-analyze exits 0 even
	// on unknown keys, so the test is that it says nothing at all.
	if o, e, err := s.Run("systemd-analyze", "verify", "/lib/systemd/system/kindnet.service"); err != nil || e != "" || o != "" {
		t.Errorf("systemd-analyze verify kindnet.service: err=%v\nstdout:\n%s\nstderr:\n%s", err, o, e)
	}

	// An admin's edit of a conffile survives the upgrade.
	s.Sh("echo 'logLevel: debug # admin edit' >> /etc/kindnet/config.yaml")

	// Upgrade to a rebuilt, higher version.
	s.MustRun("dpkg", "-i", "/tmp/v2.deb")
	expectVersion(t, s, "1.0.1")
	expectEnabled(t, s, "enabled")
	if got := s.Sh("dpkg-query -W -f '${Version}' kindnet"); got != "1.0.1-1" {
		t.Errorf("after upgrade dpkg has %q, want 1.0.1-1", got)
	}
	if !strings.Contains(s.Sh("cat /etc/kindnet/config.yaml"), "# admin edit") {
		t.Error("the upgrade replaced the admin's /etc/kindnet/config.yaml")
	}
	checkInstalled(t, s, debEntries())

	// Purge: nothing left, no enable link, no state.
	s.MustRun("dpkg", "--purge", "kindnet")
	if o, _, err := s.Run("dpkg-query", "-W", "-f", "${Status}", "kindnet"); err == nil && strings.Contains(o, "installed") {
		t.Errorf("still known to dpkg after purge: %q", o)
	}
	for _, p := range append(installed, "/var/lib/kindnet", "/etc/kindnet", "/run/kindnet",
		"/etc/systemd/system/multi-user.target.wants/kindnet.service") {
		if _, err := os.Lstat(s.Path(p)); err == nil && !isSharedDir(p) {
			t.Errorf("left after purge: %s", p)
		}
	}
	if links := s.Sh("find /etc/systemd -name '*kindnet*'"); links != "" {
		t.Errorf("enable links or drop-ins left after purge:\n%s", links)
	}
	if left := leftovers(s.UpperChanges()); len(left) > 0 {
		t.Errorf("install, upgrade and purge left these changes to the machine:\n%s", strings.Join(left, "\n"))
	}
}

// isSharedDir: directories other packages or the system own, which a purge
// rightly leaves (dpkg removes a directory only when no package uses it).
func isSharedDir(p string) bool {
	fi, err := os.Stat(p) // on the real machine: did it exist before? (/lib is a link to usr/lib)
	return err == nil && fi.IsDir()
}

// TestDebIsLintianClean runs lintian on the .deb: no error and no warning
// (the package's overrides each say why).
func TestDebIsLintianClean(t *testing.T) {
	needTools(t, "lintian")
	p := packagesFor(t, "1.0.0")
	cmd := exec.Command("lintian", "--fail-on", "error,warning", "--display-level", ">=warning", p.deb)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	var tags []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "E: ") || strings.HasPrefix(l, "W: ") {
			tags = append(tags, l)
		}
	}
	if err != nil || len(tags) > 0 {
		t.Errorf("lintian %s: %v\n%s", filepath.Base(p.deb), err, out)
	}
}
