// Package packaging tests what `make packages` ships: the .deb and the .rpm
// (contents, modes, lint, maintainer scripts through install, upgrade and
// purge), the systemd unit under a real systemd, and the kubeadm bootstrap
// scripts.
//
// Installing packages and booting systemd happen only in throwaway
// sandboxes (package test/sandbox): overlays of the real root in new namespaces,
// discarded with their PID 1. Nothing here changes the machine's files,
// network or cgroups beyond a temporary empty cgroup it removes again.
package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// repoRoot is the repository, two levels up from this package.
var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// buildDir holds the packages this test run builds; removed by TestMain.
var buildDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kindnet-packages-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	netnstest.RequireHostRoot(t, "installs packages and boots systemd in throwaway namespaces")
}

// needTools skips when a tool is missing, except in CI (CI=true), where
// `make deps` and `make tools` must have installed it: there it fails.
func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			msg := fmt.Sprintf("%s not found: `make deps` installs it", tool)
			if os.Getenv("CI") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
}

// pkgs are the two files of one `make packages` run.
type pkgs struct {
	version    string // VERSION given to make
	pkgVersion string // as dpkg and rpm see it, without release
	deb, rpm   string
}

var (
	builds   = map[string]*pkgs{}
	buildErr = map[string]error{}
	buildMu  sync.Mutex
)

// packagesFor builds the .deb and .rpm for a version once per test run,
// with `make packages`, exactly as a release would.
func packagesFor(t *testing.T, version string) *pkgs {
	t.Helper()
	return packagesFrom(t, repoRoot, version)
}

// lastRelease is the commit the previous package was released from: the
// last main before the CNI plugin became its own binary (issue 16), whose
// packages link /opt/cni/bin/kindnet to the agent.
const lastRelease = "eedddad"

// releasedPackages builds the .deb and .rpm of lastRelease, as version:
// its tree (git archive) in a scratch directory, `make packages` there.
func releasedPackages(t *testing.T, version string) *pkgs {
	t.Helper()
	if err := exec.Command("git", "-C", repoRoot, "cat-file", "-e", lastRelease+"^{commit}").Run(); err != nil {
		t.Fatalf("commit %s (the last released main, whose package the upgrade test installs first) is not in this clone: fetch the full history (git fetch --unshallow)", lastRelease)
	}
	src := filepath.Join(buildDir, "src-"+lastRelease)
	buildMu.Lock()
	if _, err := os.Stat(src); err != nil {
		if err := os.MkdirAll(src, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", repoRoot, lastRelease, src)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildMu.Unlock()
			t.Fatalf("git archive %s: %v\n%s", lastRelease, err, out)
		}
	}
	buildMu.Unlock()
	return packagesFrom(t, src, version)
}

// packagesFrom builds the packages of the tree at dir (the repo or an
// archived release) once per test run.
func packagesFrom(t *testing.T, dir, version string) *pkgs {
	t.Helper()
	nfpmOrSkip(t)
	buildMu.Lock()
	defer buildMu.Unlock()
	key := dir + "@" + version
	if p, ok := builds[key]; ok {
		return p
	}
	if err, ok := buildErr[key]; ok {
		t.Fatal(err)
	}
	dist := filepath.Join(buildDir, filepath.Base(dir)+"-"+version)
	// Only the machine's own architecture: these tests install and run it
	// (an archived release before ARCHES builds only that anyway).
	cmd := exec.Command("make", "-s", "packages", "VERSION="+version, "DIST="+dist, "ARCHES="+runtime.GOARCH)
	cmd.Dir = dir
	if dir != repoRoot { // an archive: no .git to describe
		cmd.Args = append(cmd.Args, "COMMIT="+lastRelease)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		buildErr[key] = fmt.Errorf("make packages VERSION=%s in %s: %v\n%s", version, dir, err, out)
		t.Fatal(buildErr[key])
	}
	pv := pkgVersion(t, version)
	p := &pkgs{
		version:    version,
		pkgVersion: pv,
		deb:        filepath.Join(dist, fmt.Sprintf("kindnet_%s-1_%s.deb", pv, runtime.GOARCH)),
		rpm:        filepath.Join(dist, fmt.Sprintf("kindnet-%s-1.%s.rpm", pv, rpmArch())),
	}
	for _, f := range []string{p.deb, p.rpm} {
		if _, err := os.Stat(f); err != nil {
			entries, _ := os.ReadDir(dist)
			t.Fatalf("make packages did not write %s (dist has %v)", f, entries)
		}
	}
	builds[key] = p
	return p
}

// nfpmOrSkip skips when nfpm is not built, except in CI, where it fails.
func nfpmOrSkip(t *testing.T) {
	t.Helper()
	nfpm, err := exec.Command(filepath.Join(repoRoot, "scripts", "tools.sh"), "path", "nfpm").Output()
	if err != nil {
		t.Fatalf("scripts/tools.sh path nfpm: %v", err)
	}
	if _, err := os.Stat(strings.TrimSpace(string(nfpm))); err != nil {
		msg := "nfpm is not built: run `make tools` (scripts/tools.sh ensure nfpm)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

func pkgVersion(t *testing.T, version string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "packaging", "build.sh"), "pkg-version", version).CombinedOutput()
	if err != nil {
		t.Fatalf("packaging/build.sh pkg-version %s: %v\n%s", version, err, out)
	}
	return strings.TrimSpace(string(out))
}

func rpmArch() string {
	switch runtime.GOARCH {
	case "amd64":
		return "x86_64"
	case "arm64":
		return "aarch64"
	}
	return runtime.GOARCH
}
