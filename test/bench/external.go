package bench

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// GoBench is a measure another piece of kindnet brings as a Go benchmark
// in its own package (the CNI plugin's test/cnibench, the Kubernetes
// source's test/e2e BenchmarkKube*): the run executes it with `go test
// -bench` from the source tree and reads the metrics it reports
// (b.ReportMetric), `-count` times.
type GoBench struct {
	Key       string        `json:"key"`
	What      string        `json:"what"`
	Pkg       string        `json:"pkg"`   // package directory, relative to the source tree
	Bench     string        `json:"bench"` // -bench pattern
	BenchTime string        `json:"benchtime"`
	Count     int           `json:"count"`
	Timeout   time.Duration `json:"timeout"`
	// KindnetEnv names the environment variable the benchmark reads the
	// kindnet binary from ("" when it builds its own).
	KindnetEnv string `json:"kindnetEnv,omitempty"`
	// Estimate is about how long it runs on the 2-core machine (Budget).
	Estimate time.Duration `json:"estimate"`
}

// GoBenchResult is what one GoBench gave: for each benchmark (name without
// the -GOMAXPROCS suffix), each reported unit summarized over the runs.
type GoBenchResult struct {
	GoBench
	Command string                     `json:"command"`
	Metrics map[string]map[string]Stat `json:"metrics"`
	Error   string                     `json:"error,omitempty"`
	Seconds float64                    `json:"seconds"`
	Load    []Load                     `json:"load"`
}

// Metric returns one metric of one benchmark.
func (r *GoBenchResult) Metric(bench, unit string) (Stat, bool) {
	if r == nil {
		return Stat{}, false
	}
	s, ok := r.Metrics[bench][unit]
	return s, ok && s.Valid()
}

// RunGoBench runs b from the source tree src. A package missing from the
// tree is an error saying so; a failing benchmark keeps the metrics of the
// runs that finished.
func RunGoBench(ctx context.Context, env Env, src string, b GoBench) *GoBenchResult {
	res := &GoBenchResult{GoBench: b, Load: []Load{readLoad(b.Key + " start")}}
	start := time.Now()
	defer func() {
		res.Seconds = time.Since(start).Seconds()
		res.Load = append(res.Load, readLoad(b.Key+" end"))
	}()
	if _, err := os.Stat(filepath.Join(src, b.Pkg)); err != nil {
		res.Error = fmt.Sprintf("%s is not in this source tree (%v)", b.Pkg, err)
		return res
	}
	args := []string{"test", "-count", strconv.Itoa(b.Count), "-run", "^$", "-bench", b.Bench,
		"-benchtime", b.BenchTime, "-timeout", b.Timeout.String(), "./" + filepath.Clean(b.Pkg) + "/"}
	ctx, cancel := context.WithTimeout(ctx, b.Timeout+time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	// go test runs the benchmark binary as its child: on Ctrl-C or the
	// time limit, stop the whole process group this command leads (by its
	// ID), so no benchmark keeps running behind us.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	cmd.Dir = src
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	res.Command = "go " + strings.Join(args, " ")
	if b.KindnetEnv != "" {
		kb, _ := filepath.Abs(env.Kindnet)
		cmd.Env = append(cmd.Env, b.KindnetEnv+"="+kb)
		res.Command = b.KindnetEnv + "=" + kb + " " + res.Command
	}
	env.Log("bench: %s: %s", b.What, res.Command)
	out, err := cmd.CombinedOutput()
	samples := parseBenchOutput(string(out))
	res.Metrics = map[string]map[string]Stat{}
	for name, units := range samples {
		res.Metrics[name] = map[string]Stat{}
		for unit, vs := range units {
			res.Metrics[name][unit] = Summarize(unit, vs)
		}
	}
	if err != nil {
		res.Error = fmt.Sprintf("%v: %s", err, lastLines(string(out), 15))
	}
	return res
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// parseBenchOutput reads the result lines of `go test -bench`:
// "BenchmarkX/sub-2  10  2011002027 ns/op  45.46 kindnet-add-p50-ms ...",
// one value per unit per line, one line per -count run. go test prints the
// name before it runs the benchmark, so what the benchmark itself prints
// can end up between the name and its figures, which then start a line of
// their own ("1  24735804719 ns/op ...").
func parseBenchOutput(out string) map[string]map[string][]float64 {
	res := map[string]map[string][]float64{}
	add := func(name string, f []string) {
		name = procSuffix.ReplaceAllString(name, "")
		if res[name] == nil {
			res[name] = map[string][]float64{}
		}
		for i := 1; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	// isFigures: an iteration count, then value-unit pairs.
	isFigures := func(f []string) bool {
		if len(f) < 3 {
			return false
		}
		_, err1 := strconv.Atoi(f[0])
		_, err2 := strconv.ParseFloat(f[1], 64)
		return err1 == nil && err2 == nil
	}
	pending := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 0:
		case strings.HasPrefix(f[0], "Benchmark") && isFigures(f[1:]):
			add(f[0], f[1:])
			pending = ""
		case strings.HasPrefix(f[0], "Benchmark"):
			pending = f[0] // figures follow after the benchmark's own output
		case pending != "" && isFigures(f):
			add(pending, f)
			pending = ""
		}
	}
	return res
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Names of the other pieces' benchmarks and of the metrics the goals read.
const (
	benchCNISeqDual = "BenchmarkCNI/dualstack/sequential"
	benchCNISeqV4   = "BenchmarkCNI/ipv4/sequential"
	benchCNIParDual = "BenchmarkCNI/dualstack/parallel20"
	benchCNIParV4   = "BenchmarkCNI/ipv4/parallel20"
	metricCNIRatio  = "kindnet/reference-cycle"
	benchKubeEvent  = "BenchmarkKubeNodeCreateToRoute"
	benchKubeSync   = "BenchmarkKubeSync5000"
)

// sortedKeys lists a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
