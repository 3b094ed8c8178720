package packaging

import (
	"github.com/kindnet-dev/kindnet/test/sandbox"

	"bytes"
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
// package, upgrades it and erases it. (The .rpm file itself is linted by
// TestRpmUnpackAndLintOfTheFileWriteNothingElse.)
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

// rpmPayloadNames lists the names in the rpm's cpio payload without
// unpacking anything (cpio -t only reads).
func rpmPayloadNames(t *testing.T, rpm string) (payload []byte, names []string) {
	t.Helper()
	payload, err := exec.Command("rpm2cpio", rpm).Output()
	if err != nil {
		// nfpm before v2.48 wrote payloads rpm2cpio reads but fails on
		// (a size in the header that is not the payload's): an error, but
		// the names are still worth reporting.
		t.Errorf("rpm2cpio %s: %v", rpm, err)
		if len(payload) == 0 {
			t.FailNow()
		}
	}
	list := exec.Command("cpio", "-t", "--quiet")
	list.Stdin = bytes.NewReader(payload)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -t of %s's payload: %v", filepath.Base(rpm), err)
	}
	return payload, strings.Fields(string(out))
}

// unsafePayloadNames returns the names that would land outside the
// directory cpio unpacks in: absolute ones, and any with a ".." element.
// rpmbuild writes "./usr/bin/…"; nfpm before v2.48 wrote "/usr/bin/…"
// (goreleaser/nfpm#1122), which `cpio -idm` writes onto the real root.
func unsafePayloadNames(names []string) []string {
	var bad []string
	for _, n := range names {
		if n == "." {
			continue
		}
		if !strings.HasPrefix(n, "./") || slices.Contains(strings.Split(n, "/"), "..") {
			bad = append(bad, n)
		}
	}
	return bad
}

// TestRpmPayloadUnpacksOnlyIntoTheScratchDir: `rpm2cpio x.rpm | cpio -idm`,
// the usual way to look inside an rpm, writes only into the directory it
// runs in. The names are checked first and nothing is unpacked when one is
// unsafe, so a broken package fails this test without touching the machine.
func TestRpmPayloadUnpacksOnlyIntoTheScratchDir(t *testing.T) {
	needTools(t, "rpm", "rpm2cpio", "cpio")
	p := packagesFor(t, "1.0.0")
	payload, names := rpmPayloadNames(t, p.rpm)
	if bad := unsafePayloadNames(names); len(bad) > 0 || len(names) == 0 {
		t.Fatalf("the rpm's payload names files outside the unpack directory (not unpacking it):\n%s", strings.Join(bad, "\n"))
	}

	// The payload holds what the header lists, under the same names.
	var got []string
	for _, n := range names {
		got = append(got, strings.TrimPrefix(n, "."))
	}
	slices.Sort(got)
	want := strings.Fields(rpmHost(t, "-qpl", p.rpm))
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("payload names (./ removed):\n%s\nrpm -qpl:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	scratch := t.TempDir()
	unpack := exec.Command("cpio", "-idm", "--quiet")
	unpack.Dir = scratch
	unpack.Stdin = bytes.NewReader(payload)
	if out, err := unpack.CombinedOutput(); err != nil {
		t.Fatalf("cpio -idm in %s: %v\n%s", scratch, err, out)
	}
	for _, en := range rpmEntries() {
		fi, err := os.Lstat(filepath.Join(scratch, en.path))
		if err != nil {
			t.Errorf("not unpacked into the scratch dir: %v", err)
			continue
		}
		if fi.Mode().String() != en.mode && !(en.mode[0] == 'L' && fi.Mode()&os.ModeSymlink != 0) {
			t.Errorf("%s unpacked with mode %s, want %s", en.path, fi.Mode(), en.mode)
		}
	}
}

// TestRpmUnpackAndLintOfTheFileWriteNothingElse unpacks the .rpm and lints
// the file itself (rpmlint runs `rpm2cpio | cpio -id` in a temporary
// directory) inside a throwaway root, then checks the overlay's upper
// layer: the only files written outside /tmp are in the unpack directory.
// With absolute payload names this would show /usr/bin/kindnet and the rest
// written over the sandbox's root, where on a real machine they would have
// landed on the machine's.
func TestRpmUnpackAndLintOfTheFileWriteNothingElse(t *testing.T) {
	needRoot(t)
	needTools(t, "rpm2cpio", "cpio", "rpmlint", "unshare", "nsenter")
	p := packagesFor(t, "1.0.0")
	// Even in a throwaway root, an unsafe payload is never unpacked.
	if _, names := rpmPayloadNames(t, p.rpm); len(unsafePayloadNames(names)) > 0 {
		t.Fatalf("the rpm's payload names files outside the unpack directory (not unpacking it):\n%s", strings.Join(unsafePayloadNames(names), "\n"))
	}
	s := sandbox.New(t, sandbox.Options{})
	// Under its own name: rpmlint warns when the file name is not N-V-R.A.rpm.
	rpm := "/tmp/" + filepath.Base(p.rpm)
	s.CopyIn(p.rpm, rpm, 0o644)
	s.CopyIn(filepath.Join(repoRoot, "packaging", "rpm", "rpmlint.toml"), "/tmp/rpmlint.toml", 0o644)

	// /srv is on the overlay (the sandbox's /tmp is a tmpfs of its own, out
	// of UpperChanges' sight).
	const dir = "/srv/kindnet-unpack"
	s.MustRun("sh", "-c", "mkdir -p "+dir+" && cd "+dir+" && rpm2cpio "+rpm+" | cpio -idm --quiet")
	if _, err := os.Lstat(s.Path(dir + "/usr/bin/kindnet")); err != nil {
		t.Errorf("cpio -idm in %s did not unpack usr/bin/kindnet there: %v", dir, err)
	}

	o, e, err := s.Run("rpmlint", "-c", "/tmp/rpmlint.toml", rpm)
	var errs []string
	for _, l := range strings.Split(o, "\n") {
		if strings.Contains(l, ": E: ") {
			errs = append(errs, l)
		}
	}
	if len(errs) > 0 || !strings.Contains(o, " 0 errors,") {
		t.Errorf("rpmlint of the .rpm file (exit %v) reports errors:\n%s\n%s", err, o, e)
	} else {
		t.Logf("rpmlint:\n%s", o)
	}

	var outside []string
	for _, c := range leftovers(s.UpperChanges()) {
		if c != "/srv/" && c != dir+"/" && !strings.HasPrefix(c, dir+"/") {
			outside = append(outside, c)
		}
	}
	if len(outside) > 0 {
		t.Errorf("unpacking and linting the rpm wrote outside %s:\n%s", dir, strings.Join(outside, "\n"))
	}
}

// TestRpmUpgradeFromLastReleaseReplacesThePluginLinks upgrades the rpm of
// lastRelease, whose /opt/cni/bin/kindnet and /usr/libexec/cni/kindnet
// link to the agent, to this tree's: both become the lean plugin, regular
// files, and every packaged file is where it belongs.
func TestRpmUpgradeFromLastReleaseReplacesThePluginLinks(t *testing.T) {
	needRoot(t)
	needTools(t, "rpm", "unshare", "nsenter")
	v1, v2 := releasedPackages(t, "1.0.0"), packagesFor(t, "1.0.1")
	s := sandbox.New(t, sandbox.Options{})
	s.CopyIn(v1.rpm, "/tmp/v1.rpm", 0o644)
	s.CopyIn(v2.rpm, "/tmp/v2.rpm", 0o644)
	s.MustRun("rpm", "-i", "--nodeps", "/tmp/v1.rpm")
	for _, p := range []string{"/opt/cni/bin/kindnet", "/usr/libexec/cni/kindnet"} {
		if fi, err := os.Lstat(s.Path(p)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
			t.Fatalf("the %s rpm should link %s to the agent: %v %v", lastRelease, p, fi, err)
		}
	}
	s.MustRun("rpm", "-U", "--nodeps", "/tmp/v2.rpm")
	checkInstalled(t, s, rpmEntries())
	expectVersion(t, s, "1.0.1")
}
