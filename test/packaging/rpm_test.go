package packaging

import (
	"github.com/kindnet-dev/kindnet/test/sandbox"

	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// rpmHost runs rpm on the host for queries, with a throwaway HOME: Debian's
// rpm keeps its database in ~/.rpmdb and would create one in /root.
func rpmHost(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("rpm", args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("rpm %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

func TestRpmListsTheExpectedFiles(t *testing.T) {
	needTools(t, "rpm")
	p := packagesFor(t, "1.0.0")
	got := strings.Fields(rpmHost(t, "-qpl", p.rpm))
	slices.Sort(got)
	if want := paths(rpmEntries()); !slices.Equal(got, want) {
		t.Errorf("rpm -qpl %s:\n%s\nwant:\n%s", filepath.Base(p.rpm), strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	configs := strings.Fields(rpmHost(t, "-qpc", p.rpm))
	for _, c := range []string{"/etc/kindnet/config.yaml", "/etc/sysconfig/kindnet", "/etc/iproute2/rt_protos.d/kindnet.conf"} {
		if !slices.Contains(configs, c) {
			t.Errorf("%s is not %%config; rpm -qpc: %v", c, configs)
		}
	}
	if info := rpmHost(t, "-qp", "--qf", "%{VERSION}-%{RELEASE} %{LICENSE} %{URL}\n", p.rpm); info != "1.0.0-1 Apache-2.0 https://github.com/kindnet-dev/kindnet\n" {
		t.Errorf("rpm metadata: %q", info)
	}
	if req := rpmHost(t, "-qpR", p.rpm); strings.Contains(req, "nftables") || strings.Contains(req, "iptables") || strings.Contains(req, "iproute") {
		t.Errorf("the rpm requires network tools the static binary does not need:\n%s", req)
	}
}

// TestRpmInstallUpgradeEraseAndLint installs the rpm in a throwaway root of
// this machine (rpm -i runs the scriptlets there), lints the installed
// package, upgrades it and erases it. rpmlint must see the package
// installed: see packaging/rpm/rpmlint.toml for why it never reads the .rpm
// file itself outside a sandbox.
func TestRpmInstallUpgradeEraseAndLint(t *testing.T) {
	needRoot(t)
	needTools(t, "rpm", "rpmlint", "systemctl", "unshare", "nsenter")
	v1, v2 := packagesFor(t, "1.0.0"), packagesFor(t, "1.0.1")
	s := sandbox.New(t, sandbox.Options{})
	s.CopyIn(v1.rpm, "/tmp/v1.rpm", 0o644)
	s.CopyIn(v2.rpm, "/tmp/v2.rpm", 0o644)
	s.CopyIn(filepath.Join(repoRoot, "packaging", "rpm", "rpmlint.toml"), "/tmp/rpmlint.toml", 0o644)

	// Debian's rpm database knows none of the rpm's automatic requirements
	// (/bin/sh for the scriptlets).
	s.MustRun("rpm", "-i", "--nodeps", "/tmp/v1.rpm")
	checkInstalled(t, s, rpmEntries())
	expectVersion(t, s, "1.0.0")
	expectEnabled(t, s, "enabled")

	// The rpm's unit is the packaged one with only its environment file
	// changed.
	deb, err := os.ReadFile(filepath.Join(repoRoot, "packaging", "systemd", "kindnet.service"))
	if err != nil {
		t.Fatal(err)
	}
	rpm, err := os.ReadFile(s.Path("/usr/lib/systemd/system/kindnet.service"))
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(string(deb), "EnvironmentFile=-/etc/default/kindnet\n", "EnvironmentFile=-/etc/sysconfig/kindnet\n", 1)
	if string(rpm) != want || want == string(deb) {
		t.Errorf("the rpm's kindnet.service is not the packaged unit with EnvironmentFile=-/etc/sysconfig/kindnet:\n%s", rpm)
	}

	o, e, err := s.Run("rpmlint", "-c", "/tmp/rpmlint.toml", "-i", "kindnet")
	var errs []string
	for _, l := range strings.Split(o, "\n") {
		if strings.Contains(l, ": E: ") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 || !strings.Contains(o, " 0 errors,") {
		t.Errorf("rpmlint (exit %v) reports errors:\n%s\n%s", err, o, e)
	} else {
		t.Logf("rpmlint:\n%s", o)
	}

	s.MustRun("rpm", "-U", "--nodeps", "/tmp/v2.rpm")
	expectVersion(t, s, "1.0.1")
	expectEnabled(t, s, "enabled")
	if got := s.Sh("rpm -q --qf '%{VERSION}-%{RELEASE}' kindnet"); got != "1.0.1-1" {
		t.Errorf("after upgrade rpm has %q", got)
	}

	s.MustRun("rpm", "-e", "kindnet")
	for _, en := range rpmEntries() {
		if _, err := os.Lstat(s.Path(en.path)); err == nil && !isSharedDir(en.path) {
			t.Errorf("left after erase: %s", en.path)
		}
	}
	if links := s.Sh("find /etc/systemd -name '*kindnet*'"); links != "" {
		t.Errorf("enable links left after erase:\n%s", links)
	}
	if left := leftovers(s.UpperChanges()); len(left) > 0 {
		t.Errorf("install, upgrade and erase left these changes:\n%s", strings.Join(left, "\n"))
	}
}
