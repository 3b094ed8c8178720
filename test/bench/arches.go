package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// ArchBinary is the kindnet binary as built for one architecture, with the
// release's flags (static, -s -w): what a small machine downloads and
// keeps on disk.
type ArchBinary struct {
	Arch string `json:"arch"` // Debian's name (armhf), or 386
	Binary
	// Plugin is the lean CNI plugin (cmd/kindnet-cni) for the same
	// architecture: what the runtime starts for every pod.
	Plugin Binary `json:"plugin"`
	// BaselineKiB is the peak RSS (ru_maxrss) of `kindnet version`: the Go
	// runtime and package initialisation, the floor under the agent and
	// the plugin. Measured only where this machine runs the architecture
	// natively (an emulator's RSS would count the emulator).
	BaselineKiB int64 `json:"baselineKiB,omitempty"`
	// NotRun says why BaselineKiB is missing: the error of the attempt.
	NotRun string `json:"notRun,omitempty"`
}

// archBuilds are the architectures kindnet ships (packaging/build.sh) and
// 386, the other 32-bit word size, for the footprint section.
var archBuilds = []struct{ arch, goarch, goarm string }{
	{"amd64", "amd64", ""}, {"arm64", "arm64", ""}, {"armhf", "arm", "7"}, {"riscv64", "riscv64", ""}, {"386", "386", ""},
}

// nativeArches can run on an x86-64 host without an emulator when its
// kernel allows 32-bit processes.
var nativeArches = map[string]bool{"amd64": true, "386": true}

// MeasureArches builds kindnet from src for every architecture into a
// temporary directory and measures each binary.
func MeasureArches(ctx context.Context, src string) ([]ArchBinary, error) {
	dir, err := os.MkdirTemp("", "kindnet-bench-arch-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	var out []ArchBinary
	for _, a := range archBuilds {
		path := filepath.Join(dir, "kindnet-"+a.arch)
		b, err := buildFor(ctx, src, a.goarch, a.goarm, path, "./cmd/kindnet")
		if err != nil {
			return out, fmt.Errorf("build for %s: %w", a.arch, err)
		}
		plugin, err := buildFor(ctx, src, a.goarch, a.goarm, filepath.Join(dir, "kindnet-cni-"+a.arch), "./cmd/kindnet-cni")
		if err != nil {
			return out, fmt.Errorf("build the plugin for %s: %w", a.arch, err)
		}
		ab := ArchBinary{Arch: a.arch, Binary: b, Plugin: plugin}
		if nativeArches[a.arch] {
			ab.BaselineKiB, err = baselineRSS(ctx, path)
			if err != nil {
				ab.NotRun = err.Error()
			}
		} else {
			ab.NotRun = "not native here (emulated RSS would count the emulator)"
		}
		out = append(out, ab)
	}
	return out, nil
}

// buildFor builds the main package pkg of src for goarch (and goarm) with
// the release flags into path, and measures the binary.
func buildFor(ctx context.Context, src, goarch, goarm, path, pkg string) (Binary, error) {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", path, pkg)
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+goarch, "GOARM="+goarm)
	if out, err := cmd.CombinedOutput(); err != nil {
		return Binary{}, fmt.Errorf("%w\n%s", err, out)
	}
	b, err := inspectBinary(path)
	if err != nil {
		return Binary{}, err
	}
	b.Path = "" // a temporary file: meaningless in the report
	return b, nil
}

// baselineRSS runs `kindnet version` and returns its peak RSS in KiB.
func baselineRSS(ctx context.Context, path string) (int64, error) {
	cmd := exec.CommandContext(ctx, path, "version")
	cmd.Stdout = io.Discard
	if err := cmd.Run(); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return 0, fmt.Errorf("exec: %v", pe.Err) // ENOEXEC: the kernel runs no 32-bit x86 process
		}
		return 0, err
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return 0, fmt.Errorf("no rusage")
	}
	return int64(ru.Maxrss), nil // KiB on Linux
}

func (r *Report) markdownArches(w io.Writer) {
	if len(r.Arches) == 0 && r.ArchesError == "" {
		return
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("### Per architecture\n\n")
	p("The kindnet binary built for each architecture with the release flags (`-trimpath -ldflags '-s -w'`, static), ")
	p("and the peak RSS of `kindnet version` (runtime and initialisation: the floor under agent and plugin) where this ")
	p("machine runs the architecture natively.\n\n")
	p("| architecture | agent binary | plugin binary | static | `kindnet version` peak RSS |\n| --- | --- | --- | --- | --- |\n")
	for _, a := range r.Arches {
		st := "yes"
		if !a.Static {
			st = "NO (agent): " + a.Why
		} else if !a.Plugin.Static && a.Plugin.Bytes > 0 {
			st = "NO (plugin): " + a.Plugin.Why
		}
		rss := fmt.Sprintf("%.1f MiB", float64(a.BaselineKiB)/1024)
		if a.BaselineKiB == 0 {
			rss = "not measured: " + strings.TrimSpace(a.NotRun)
		}
		p("| %s | %.1f MiB (%d bytes) | %.1f MiB (%d bytes) | %s | %s |\n", a.Arch, float64(a.Bytes)/(1<<20), a.Bytes,
			float64(a.Plugin.Bytes)/(1<<20), a.Plugin.Bytes, st, rss)
	}
	if r.ArchesError != "" {
		p("\nBuilding the other architectures failed: %s\n", r.ArchesError)
	}
	p("\n")
}
