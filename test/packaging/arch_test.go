package packaging

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// shipped are the architectures `make packages` builds by default: Debian's
// name, rpm's name and the ELF machine and class of the binary inside.
var shipped = []struct {
	deb, rpm string
	machine  elf.Machine
	class    elf.Class
}{
	{"amd64", "x86_64", elf.EM_X86_64, elf.ELFCLASS64},
	{"arm64", "aarch64", elf.EM_AARCH64, elf.ELFCLASS64},
	{"armhf", "armv7hl", elf.EM_ARM, elf.ELFCLASS32},
	{"riscv64", "riscv64", elf.EM_RISCV, elf.ELFCLASS64},
}

// TestEveryArchitecture runs `make packages` with no ARCHES, as a release
// does, and checks each architecture's pair: the file names, the
// architecture fields dpkg and rpm read, a static binary for that machine,
// and lint as clean as the amd64 packages' (lintian: nothing at all;
// rpmlint: the same findings as amd64, the architecture aside).
func TestEveryArchitecture(t *testing.T) {
	needTools(t, "dpkg-deb", "rpm", "lintian", "rpmlint")
	nfpmOrSkip(t)
	dist := t.TempDir()
	const version = "1.0.0"
	cmd := exec.Command("make", "-s", "packages", "VERSION="+version, "DIST="+dist)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make packages: %v\n%s", err, out)
	}
	entries, _ := os.ReadDir(dist)
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	var want []string
	for _, a := range shipped {
		want = append(want, fmt.Sprintf("kindnet_%s-1_%s.deb", version, a.deb), fmt.Sprintf("kindnet-%s-1.%s.rpm", version, a.rpm))
	}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("make packages wrote %v, want %v", names, want)
	}

	var nativeLint string
	for _, a := range shipped {
		deb := filepath.Join(dist, fmt.Sprintf("kindnet_%s-1_%s.deb", version, a.deb))
		rpm := filepath.Join(dist, fmt.Sprintf("kindnet-%s-1.%s.rpm", version, a.rpm))
		t.Run(a.deb, func(t *testing.T) {
			if got := run(t, "dpkg-deb", "-f", deb, "Architecture"); got != a.deb {
				t.Errorf("%s: Architecture %q, want %q", filepath.Base(deb), got, a.deb)
			}
			if got := run(t, "rpm", "-qp", "--qf", "%{ARCH}", rpm); got != a.rpm {
				t.Errorf("%s: ARCH %q, want %q", filepath.Base(rpm), got, a.rpm)
			}
			// The agent CLI and the lean CNI plugin: both built for a.
			for _, path := range []string{"./usr/bin/kindnet", "./opt/cni/bin/kindnet"} {
				checkStaticELF(t, debFile(t, deb, path), a.machine, a.class)
			}

			lintian := exec.Command("lintian", "--fail-on", "error,warning", "--display-level", ">=warning", deb)
			lintian.Env = append(os.Environ(), "HOME="+t.TempDir())
			if out, err := lintian.CombinedOutput(); err != nil || regexp.MustCompile(`(?m)^[EW]: `).Match(out) {
				t.Errorf("lintian %s: %v\n%s", filepath.Base(deb), err, out)
			}
			// rpmlint on the file is safe: nfpm 2.48 names the payload's files
			// relative to where it is unpacked (packaging/rpm/rpmlint.toml).
			out, _ := exec.Command("rpmlint", "-c", filepath.Join(repoRoot, "packaging", "rpm", "rpmlint.toml"), rpm).CombinedOutput()
			lint := rpmlintFindings(string(out), a.rpm)
			if a.deb == "amd64" {
				nativeLint = lint
			} else if lint != nativeLint {
				t.Errorf("rpmlint %s differs from amd64's:\n%s\namd64:\n%s", filepath.Base(rpm), lint, nativeLint)
			}
		})
	}
}

// rpmlintFindings keeps rpmlint's E:/W: lines with the architecture taken
// out, sorted, so two architectures' reports compare.
func rpmlintFindings(out, arch string) string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, ": E: ") || strings.Contains(l, ": W: ") {
			lines = append(lines, strings.Replace(l, "kindnet."+arch+":", "kindnet.ARCH:", 1))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// debFile extracts the file at path (as the payload names it) from the
// .deb into a temporary file and returns that file's name.
func debFile(t *testing.T, deb, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	debData := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	untar := exec.Command("tar", "-xO", path)
	untar.Stdin, _ = debData.StdoutPipe()
	var b bytes.Buffer
	untar.Stdout = &b
	if err := debData.Start(); err != nil {
		t.Fatal(err)
	}
	if err := untar.Run(); err != nil {
		t.Fatalf("tar %s from %s: %v", path, filepath.Base(deb), err)
	}
	if err := debData.Wait(); err != nil {
		t.Fatalf("dpkg-deb: %v", err)
	}
	if err := os.WriteFile(out, b.Bytes(), 0o755); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkStaticELF: the binary is for that machine and word size, and has no
// program interpreter (a dynamically linked one would need the host's libc).
func checkStaticELF(t *testing.T, path string, m elf.Machine, c elf.Class) {
	t.Helper()
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	defer f.Close()
	if f.Machine != m || f.Class != c {
		t.Errorf("binary is %v %v, want %v %v", f.Machine, f.Class, m, c)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("binary has a program interpreter: not static")
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return strings.TrimSpace(string(out))
}
