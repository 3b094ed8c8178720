package netnstest_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// nobody is the unprivileged uid and gid the kernel tests run as.
const nobody = "65534"

// sentinels are kernel tests that must be seen passing in the unprivileged
// run, one per package named in issue 15: they guard against a run that
// silently tests nothing (a wrong -run, a package left out). Every other
// kernel test is covered by the rule that nothing may skip but for the
// host's root.
var sentinels = map[string]string{
	"pkg/routes":   "TestReconcileInstallsOnLinkPeersAndIsIdempotent",
	"pkg/masq":     "TestMasqueradeTableIsWrittenOnceAndLeavesOtherTablesAlone",
	"pkg/hostport": "TestRulesOfOneFamilyMappingAndTheirText",
	"pkg/sysctl":   "TestSettingsAppliedInsideNamespaceOnly",
	"pkg/cni":      "TestTwoHundredParallelAddsNeverShareAnAddress",
	"pkg/hostnet":  "TestDefaultRoutesAreFoundAmongThousandsOfKindnetRoutesInBothFamilies",
	"pkg/firewall": "TestNftForwardPolicyDropIsReportedForBothFamilies",
}

// The netlink and nftables tests of every package whose tests use this
// helper run as uid 65534 inside scripts/in-userns.sh, as `make test-unit`
// runs them for any user, and none of them skips: a kernel test may only
// skip there when it needs the host's root (RequireHostRoot). This is what
// keeps `make test-unit` honest when run by root in CI, where a skip for
// want of privilege would otherwise go unnoticed.
//
// The test binaries are built here, as root, with root's module and build
// caches (the network namespace has no route to the module proxy, and a
// cold cache would rebuild the world as nobody); what must be unprivileged
// is running them, and that is done by nobody, with HOME, GOCACHE and
// GOPATH in a directory of its own, on a copy of the sources it can read.
func TestKernelTestsRunUnprivilegedInAUserNamespace(t *testing.T) {
	netnstest.RequireHostRoot(t, "runs the kernel tests as uid 65534 through setpriv")
	if testing.Short() {
		t.Skip("builds and runs every kernel test package again: skipped with -short")
	}
	for _, tool := range []string{"setpriv", "unshare", "ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing: `make deps` installs util-linux, iproute2 and nftables", tool)
		}
	}
	if out, err := exec.Command("setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups",
		"unshare", "-Urn", "true").CombinedOutput(); err != nil {
		t.Fatalf("uid %s cannot make a user namespace (%v: %s): enable unprivileged user namespaces "+
			"(sysctl user.max_user_namespaces > 0, kernel.unprivileged_userns_clone=1 where it exists)",
			nobody, err, bytes.TrimSpace(out))
	}

	repo := repoRoot(t)
	pkgs := kernelTestPackages(t, repo)
	for p := range sentinels {
		if !slices.Contains(pkgs, p) {
			t.Errorf("%s no longer uses netnstest: update the sentinels", p)
		}
	}

	// A world-readable work area: t.TempDir makes 0700 directories.
	work := t.TempDir()
	chmodUp(t, work)
	src := filepath.Join(work, "src")
	bin := filepath.Join(work, "bin")
	home := filepath.Join(work, "home")
	for _, d := range []string{src, bin, home} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(home, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	// What the tests read: their packages' testdata, the shipped config
	// and docs some compare with, the helpers, the script.
	for _, d := range []string{"pkg", "internal", "scripts", "packaging", "docs", "go.mod"} {
		if out, err := exec.Command("cp", "-a", filepath.Join(repo, d), src+"/").CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v\n%s", d, err, out)
		}
	}
	if out, err := exec.Command("chmod", "-R", "a+rX", src).CombinedOutput(); err != nil {
		t.Fatalf("chmod: %v\n%s", err, out)
	}

	for _, p := range pkgs {
		t.Run(p, func(t *testing.T) {
			exe := filepath.Join(bin, strings.ReplaceAll(p, "/", "_")+".test")
			build := exec.Command("go", "test", "-c", "-o", exe, "./"+p)
			build.Dir = repo
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go test -c ./%s: %v\n%s", p, err, out)
			}
			res := runAsNobody(t, filepath.Join(src, "scripts", "in-userns.sh"), exe, filepath.Join(src, p), home)
			t.Logf("%s as uid %s in a user namespace: %d passed, %d skipped for the host's root, %d failed",
				p, nobody, len(res.passed), len(res.hostRoot), len(res.failed))
			for _, name := range res.failed {
				t.Errorf("%s failed as uid %s in a user namespace:\n%s", name, nobody, res.output[name])
			}
			for _, name := range res.badSkips {
				t.Errorf("%s skipped as uid %s in a user namespace, but only tests that need the host's root may:\n%s",
					name, nobody, res.output[name])
			}
			if s, ok := sentinels[p]; ok && !slices.Contains(res.passed, s) {
				t.Errorf("%s did not pass in the unprivileged run (passed: %v)", s, res.passed)
			}
			if len(res.passed) == 0 {
				t.Errorf("no test of %s passed in the unprivileged run", p)
			}
		})
	}
}

// result sorts the top-level tests of one package run by outcome.
type result struct {
	passed, failed, hostRoot, badSkips []string
	output                             map[string]string
}

// runAsNobody runs one test binary as uid 65534 inside in-userns.sh, in the
// package's directory, and reads its events through `go tool test2json`.
func runAsNobody(t *testing.T, inUserNS, exe, dir, home string) result {
	t.Helper()
	cmd := exec.Command("setpriv", "--reuid="+nobody, "--regid="+nobody, "--clear-groups",
		inUserNS, exe, "-test.v=test2json", "-test.count=1", "-test.timeout=10m")
	cmd.Dir = dir
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"GOCACHE=" + filepath.Join(home, "gocache"),
		"GOPATH=" + filepath.Join(home, "go"),
		// TMPDIR stays /tmp: unix socket paths must fit in 108 bytes.
	}
	raw, runErr := cmd.CombinedOutput()
	conv := exec.Command("go", "tool", "test2json", "-t")
	conv.Stdin = bytes.NewReader(raw)
	events, err := conv.Output()
	if err != nil {
		t.Fatalf("go tool test2json: %v", err)
	}
	res := parseEvents(t, bytes.NewReader(events))
	if runErr != nil && len(res.failed) == 0 {
		t.Fatalf("%s as uid %s: %v with no failed test:\n%s", filepath.Base(exe), nobody, runErr, lastLines(raw, 40))
	}
	return res
}

// parseEvents reads test2json events. A skip counts as one for the host's
// root only when its output says so in RequireHostRoot's words.
func parseEvents(t *testing.T, r io.Reader) result {
	t.Helper()
	res := result{output: map[string]string{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev struct{ Action, Test, Output string }
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("test2json event %q: %v", sc.Text(), err)
		}
		if ev.Test == "" || strings.Contains(ev.Test, "/") {
			continue // package lines and subtests: their parent decides
		}
		switch ev.Action {
		case "output":
			res.output[ev.Test] += ev.Output
		case "pass":
			res.passed = append(res.passed, ev.Test)
		case "fail":
			res.failed = append(res.failed, ev.Test)
		case "skip":
			if strings.Contains(res.output[ev.Test], "needs the host's root") {
				res.hostRoot = append(res.hostRoot, ev.Test)
			} else {
				res.badSkips = append(res.badSkips, ev.Test)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return res
}

// kernelTestPackages lists the packages under pkg/ whose tests import this
// helper: a package that gains a kernel test is checked without a list to
// update.
func kernelTestPackages(t *testing.T, repo string) []string {
	t.Helper()
	cmd := exec.Command("go", "list", "-f", `{{.Dir}} {{join .TestImports " "}} {{join .XTestImports " "}}`, "./pkg/...")
	cmd.Dir = repo
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && slices.Contains(f[1:], "github.com/kindnet-dev/kindnet/internal/netnstest") {
			rel, err := filepath.Rel(repo, f[0])
			if err != nil {
				t.Fatal(err)
			}
			pkgs = append(pkgs, filepath.ToSlash(rel))
		}
	}
	sort.Strings(pkgs)
	if len(pkgs) == 0 {
		t.Fatal("no package under pkg/ uses netnstest")
	}
	return pkgs
}

func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// chmodUp opens dir and the directories t.TempDir made above it to others.
func chmodUp(t *testing.T, dir string) {
	t.Helper()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// The unprivileged run's verdict rests on parseEvents: only a skip in
// RequireHostRoot's words is allowed, subtests are judged by their parent.
func TestParseEventsTellsHostRootSkipsFromOtherSkips(t *testing.T) {
	events := strings.Join([]string{
		`{"Action":"run","Test":"TestRoutes"}`,
		`{"Action":"pass","Test":"TestRoutes"}`,
		`{"Action":"output","Test":"TestMounts","Output":"    x_test.go:9: needs the host's root (mounts), not root of a user namespace\n"}`,
		`{"Action":"skip","Test":"TestMounts"}`,
		`{"Action":"output","Test":"TestNft","Output":"    x_test.go:9: needs CAP_NET_ADMIN in network namespaces it creates\n"}`,
		`{"Action":"skip","Test":"TestNft"}`,
		`{"Action":"skip","Test":"TestNft/sub"}`,
		`{"Action":"fail","Test":"TestBroken"}`,
		`{"Action":"fail"}`,
	}, "\n")
	res := parseEvents(t, strings.NewReader(events))
	for _, c := range []struct {
		what      string
		got, want []string
	}{
		{"passed", res.passed, []string{"TestRoutes"}},
		{"skipped for the host's root", res.hostRoot, []string{"TestMounts"}},
		{"skipped otherwise", res.badSkips, []string{"TestNft"}},
		{"failed", res.failed, []string{"TestBroken"}},
	} {
		if !slices.Equal(c.got, c.want) {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
}
