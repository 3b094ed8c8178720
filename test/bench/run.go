package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// Env is what every section needs: the binaries under test and a logger.
type Env struct {
	Kindnet string // kindnet binary; also the CNI plugin the conflists name
	LabTool string // kindnet-lab binary (CNI driver of the lab)
	Log     func(format string, args ...any)
}

// cniBinDir holds the plugin the agent-written conflists name: the lean
// plugin `make build` writes next to the agent (bin/cni/kindnet), or, when
// there is none, the agent binary itself, which also answers as the plugin.
func (e Env) cniBinDir() string {
	if dir := filepath.Join(filepath.Dir(e.Kindnet), "cni"); isExecutable(filepath.Join(dir, "kindnet")) {
		return dir
	}
	return filepath.Dir(e.Kindnet)
}

// plugin is the CNI plugin binary in cniBinDir.
func (e Env) plugin() string { return filepath.Join(e.cniBinDir(), "kindnet") }

func isExecutable(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o111 != 0
}

// Options say what a run measures and how long each measure takes.
type Options struct {
	Mode     string // "full" or "quick"
	Command  string // how the run was started, for the report
	Src      string // kindnet's source tree, for the other pieces' Go benchmarks
	Datapath *DatapathOptions
	Control  *ControlOptions
	CNI      *GoBench
	Kube     *GoBench
}

// Full and Quick are the two standard runs: `make bench` and
// `make bench-quick` (under five minutes on a 2-core machine).
func Full() Options {
	return Options{Mode: "full",
		Datapath: &DatapathOptions{Rounds: 5, Seconds: 4, Omit: 1, PingCount: 300, PingInterval: 10 * time.Millisecond},
		Control: &ControlOptions{Sizes: []int{0, 1000, 5000}, Repeats: 5, Settle: Dur(time.Second),
			// A little over the default resync interval (1m), so the
			// reading comes after the first periodic resync.
			RSSAfter:    Dur(70 * time.Second),
			ChangePeers: 5000, ChangeRepeats: 6, EventRewrites: 10, EventsPerRewrite: 100, IdleWindow: Dur(10 * time.Second),
			Budget: Dur(90 * time.Second), PluginRuns: 20},
		CNI: &GoBench{Key: "cni", What: "CNI ADD/DEL, kindnet vs reference ptp + host-local", Pkg: "test/cnibench",
			Bench: "BenchmarkCNI", BenchTime: "10x", Count: 3, Timeout: 30 * time.Minute, KindnetEnv: "KINDNET_BIN",
			Estimate: 6 * time.Minute},
		// Not BenchmarkKubeOutageResync: its 10-minute outage, three
		// times, would triple the whole run; `make bench-kube` runs it.
		Kube: &GoBench{Key: "kube", What: "Kubernetes API source against a real kube-apiserver", Pkg: "test/e2e",
			Bench: "^BenchmarkKube(NodeCreateToRoute|Sync5000)$", BenchTime: "1x", Count: 3, Timeout: 30 * time.Minute, Estimate: 4 * time.Minute},
	}
}

func Quick() Options {
	return Options{Mode: "quick",
		Datapath: &DatapathOptions{Rounds: 3, Seconds: 2, Omit: 0, PingCount: 50, PingInterval: 10 * time.Millisecond},
		Control: &ControlOptions{Sizes: []int{0, 1000, 5000}, Repeats: 3, Settle: Dur(time.Second),
			ChangePeers: 5000, ChangeRepeats: 2, EventRewrites: 4, EventsPerRewrite: 100, IdleWindow: Dur(3 * time.Second),
			Budget: Dur(20 * time.Second), PluginRuns: 5},
		CNI: &GoBench{Key: "cni", What: "CNI ADD/DEL, kindnet vs reference ptp + host-local", Pkg: "test/cnibench",
			Bench: "BenchmarkCNI/.*/sequential", BenchTime: "3x", Count: 1, Timeout: 10 * time.Minute, KindnetEnv: "KINDNET_BIN",
			Estimate: 30 * time.Second},
		// No Kubernetes benchmarks: a real API server and 5,000 Nodes take
		// minutes; the full run has them.
	}
}

// Run measures what o asks for and returns the report; a section that
// fails is recorded in the report and the others still run. It returns an
// error only when ctx ends (Ctrl-C).
func Run(ctx context.Context, env Env, o Options) *Report {
	r := &Report{Schema: SchemaVersion, Mode: o.Mode, Command: o.Command, Started: time.Now().UTC(),
		Machine: readMachine(), Versions: readVersions(ctx, env.Kindnet)}
	r.Load = append(r.Load, readLoad("start"))
	if b, err := inspectBinary(env.Kindnet); err == nil {
		r.Binary = &b
	}
	if o.Src != "" && ctx.Err() == nil {
		env.Log("bench: binary per architecture")
		a, err := MeasureArches(ctx, o.Src)
		r.Arches = a
		if err != nil {
			r.ArchesError = err.Error()
			env.Log("bench: architectures: %v", err)
		}
	}
	if o.Datapath != nil && ctx.Err() == nil {
		env.Log("bench: datapath (%d rounds)", o.Datapath.Rounds)
		d, err := RunDatapath(ctx, env, *o.Datapath)
		r.Datapath = d
		if err != nil {
			r.DatapathError = err.Error()
			env.Log("bench: datapath: %v", err)
		}
	}
	if o.Control != nil && ctx.Err() == nil {
		env.Log("bench: control plane and footprint")
		c, err := RunControlPlane(ctx, env, *o.Control)
		r.Control = c
		if err != nil {
			r.ControlError = err.Error()
			env.Log("bench: control plane: %v", err)
		}
	}
	for _, gb := range []struct {
		b   *GoBench
		dst **GoBenchResult
	}{{o.CNI, &r.CNI}, {o.Kube, &r.Kube}} {
		if gb.b == nil || ctx.Err() != nil {
			continue
		}
		res := RunGoBench(ctx, env, o.Src, *gb.b)
		*gb.dst = res
		if res.Error != "" {
			env.Log("bench: %s: %s", gb.b.What, res.Error)
		}
	}
	r.Load = append(r.Load, readLoad("end"))
	r.Finished = time.Now().UTC()
	r.EvaluateGoals()
	return r
}

// Write saves the JSON record as <date>-<host>[-quick].json, draws the
// charts and writes latest.md, all in dir. It returns the JSON path.
func (r *Report) Write(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	name := r.Started.UTC().Format("2006-01-02-1504") + "-" + sanitize(r.Machine.Host)
	if r.Mode != "full" {
		name += "-" + r.Mode
	}
	jsonPath := filepath.Join(dir, name+".json")
	var errs []error
	if err := r.WriteCharts(dir); err != nil {
		errs = append(errs, err)
	}
	if err := r.WriteJSON(jsonPath); err != nil {
		errs = append(errs, err)
	}
	if err := r.writeMarkdownFile(filepath.Join(dir, "latest.md")); err != nil {
		errs = append(errs, err)
	}
	return jsonPath, errors.Join(errs...)
}

func (r *Report) writeMarkdownFile(path string) error {
	var b strings.Builder
	r.WriteMarkdown(&b)
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// sanitize keeps a host name safe as part of a file name.
func sanitize(s string) string {
	if s == "" {
		return "unknown-host"
	}
	return strings.Map(func(r rune) rune {
		if r == '-' || r == '.' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' {
			return r
		}
		return '_'
	}, s)
}

// CheckTools says which of the programs the benchmark drives are missing.
func CheckTools(env Env) error {
	var missing []string
	for _, p := range []string{env.Kindnet, env.LabTool} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p+" (run make build)")
		}
	}
	if _, err := os.Stat(timeBin); err != nil {
		missing = append(missing, timeBin+" (run make deps)")
	}
	for _, p := range []string{"iperf3", "ping", "ip", "nft"} {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p+" (run make deps)")
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing: %s", strings.Join(missing, ", "))
	}
	return nil
}

// Budget is how long the timed parts of a run take at least: every iperf3
// and ping run, the waits for memory readings and the idle CPU window
// (labs and agents come on top).
func (o Options) Budget() time.Duration {
	var b time.Duration
	if d := o.Datapath; d != nil {
		paths, families := 4, 2
		iperfRun := time.Duration(d.Seconds+d.Omit)*time.Second + 300*time.Millisecond
		pingRun := time.Duration(d.PingCount) * d.PingInterval
		b += time.Duration(d.Rounds*paths*families) * (2*iperfRun + pingRun)
		b += time.Duration(paths*families) * time.Second // warm-up iperf3 runs
	}
	if c := o.Control; c != nil {
		b += time.Duration(c.Repeats*len(c.Sizes)) * time.Duration(c.Settle)
		b += time.Duration(c.RSSAfter)
		// Each change waits for the next poll of the nodes file (up to a
		// second) and watches 1.2 s more.
		b += time.Duration(c.ChangeRepeats) * 2200 * time.Millisecond
		b += time.Duration(c.EventRewrites)*time.Second + time.Duration(c.IdleWindow) + 2500*time.Millisecond
	}
	for _, g := range []*GoBench{o.CNI, o.Kube} {
		if g != nil {
			b += g.Estimate
		}
	}
	return b
}
