package bench

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeDatapath is a datapath section where kindnet reaches ratio × the
// node's throughput, adds rttOver µs, and the overlay is slower still.
func fakeDatapath(ratio, rttOver float64) *DatapathResult {
	d := &DatapathResult{Options: DatapathOptions{Rounds: 3, Seconds: 2, PingCount: 100, PingInterval: 10 * time.Millisecond},
		VXLAN: VXLANStatus{Available: true, Note: "test overlay"}}
	for _, k := range []string{PathNode, PathKindnet, PathSameNode, PathVXLAN} {
		d.Paths = append(d.Paths, PathInfo{Key: k, Label: k})
	}
	vals := map[seriesKey][]float64{}
	for _, fam := range Families {
		for _, m := range []string{MetricTCP1, MetricTCP4, MetricRTT, MetricRTT99} {
			base := []float64{10, 11, 9}
			if m == MetricRTT || m == MetricRTT99 {
				base = []float64{50, 52, 48}
			}
			for _, k := range []string{PathNode, PathKindnet, PathSameNode, PathVXLAN} {
				r := make([]float64, len(base))
				for i, b := range base {
					switch {
					case k == PathKindnet && (m == MetricTCP1 || m == MetricTCP4):
						r[i] = b * ratio
					case k == PathKindnet:
						r[i] = b + rttOver
					case k == PathVXLAN && (m == MetricTCP1 || m == MetricTCP4):
						r[i] = b * 0.5
					case k == PathVXLAN:
						r[i] = b + 100
					default:
						r[i] = b
					}
				}
				vals[seriesKey{k, fam, m}] = r
				d.Series = append(d.Series, Series{Path: k, Family: fam, Metric: m, Rounds: r, Stat: Summarize(metricUnit(m), r)})
			}
		}
	}
	d.Comparisons = compare(d, vals)
	return d
}

func fakeControl(bootMs, idleMiB, bigMiB float64, changeEvents int) *ControlResult {
	c := &ControlResult{Options: ControlOptions{Sizes: []int{0, 1000, 5000}, Repeats: 3, Settle: Dur(time.Second), RSSAfter: Dur(time.Minute)},
		WrapperMs: Summarize("ms", []float64{3, 4, 5})}
	for _, size := range []int{0, 1000, 5000} {
		mem, ms := idleMiB, 50.0
		if size == 5000 {
			mem, ms = bigMiB, bootMs
		}
		later := mem + 1
		c.Boot = append(c.Boot, BootResult{Peers: size, ExpectedRoutes: 2 * size, AllInPlace: true,
			ReadyMs: Summarize("ms", []float64{ms, ms * 1.1, ms * 0.9}), RoutesAtReady: []int{2 * size, 2 * size, 2 * size},
			ConflistAtReady: []bool{true, true, true}, RSSMiB: Summarize("MiB", []float64{mem, mem, mem}),
			PeakMiB: Summarize("MiB", []float64{mem + 2}), RSSLaterMiB: &later})
	}
	c.Change = &ChangeResult{Peers: 5000, ConvergeMs: Summarize("ms", []float64{600, 700}), ProcessMs: Summarize("ms", []float64{20, 30}),
		Runs: []ChangeRun{{Kind: "add", ExpectedEvents: 2, RouteEvents: changeEvents}, {Kind: "remove", ExpectedEvents: 2, RouteEvents: 2}}, MaxRouteEvents: changeEvents}
	c.Events = &EventsCPU{Peers: 5000, Rewrites: 4, PerRewrite: 100, Events: 400, CPUSec: 2, ElapsedSec: 8, NetCPUSec: 1.6, PerThousand: 4,
		RewriteMs: Summarize("ms", []float64{900, 1000})}
	return c
}

func goalByName(t *testing.T, r *Report, prefix string) Goal {
	t.Helper()
	for _, g := range r.Goals {
		if strings.HasPrefix(g.Name, prefix) {
			return g
		}
	}
	t.Fatalf("no goal named %q in %+v", prefix, r.Goals)
	return Goal{}
}

func TestGoalsAreJudgedOnTheMedianOfSameRoundComparisons(t *testing.T) {
	for _, c := range []struct {
		name                   string
		ratio, rttOver, bootMs float64
		idle, big              float64
		events                 int
		want                   map[string]string
	}{
		{"everything met", 0.97, 6, 250, 12, 30, 2, map[string]string{
			"cross-node pod TCP throughput, IPv4, TCP 1 stream": Met, "cross-node pod RTT overhead, IPv6": Met,
			"ahead of the VXLAN overlay, IPv4, TCP 1 stream": Met, "ahead of the VXLAN overlay, IPv6, RTT median": Met,
			"boot to READY from the cache": Met, "agent RSS, idle": Met, "agent RSS, 5000 peers": Met,
			"one peer changed": Met, "routes and CNI config in place": Met}},
		{"everything missed", 0.80, 25, 4000, 30, 45, 10000, map[string]string{
			"cross-node pod TCP throughput, IPv6, TCP 4 streams": Missed, "cross-node pod RTT overhead, IPv4": Missed,
			"boot to READY from the cache": Missed, "agent RSS, idle": Missed, "agent RSS, 5000 peers": Missed,
			"one peer changed": Missed}},
		// RSS a minute later (idle + 1) crosses the limit although the
		// RSS after sync does not: the worse of the two is judged.
		{"memory grows past the limit later", 0.97, 6, 250, 24.5, 39.5, 2, map[string]string{
			"agent RSS, idle": Missed, "agent RSS, 5000 peers": Missed}},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &Report{Datapath: fakeDatapath(c.ratio, c.rttOver), Control: fakeControl(c.bootMs, c.idle, c.big, c.events)}
			r.EvaluateGoals()
			for prefix, want := range c.want {
				if g := goalByName(t, r, prefix); g.Verdict != want {
					t.Errorf("%s: verdict %s (%s), want %s", g.Name, g.Verdict, g.Measured, want)
				}
			}
			for _, prefix := range []string{"CNI ADD+DEL", "Node created → route", "5,000-node sync"} {
				if g := goalByName(t, r, prefix); g.Verdict != NotMeasured || !strings.Contains(g.Why, "not run") {
					t.Errorf("%s must be not measured, saying it did not run: %+v", prefix, g)
				}
			}
		})
	}
}

func TestMissingSectionsAreNotMeasuredWithTheReason(t *testing.T) {
	r := &Report{DatapathError: "lab up: no iperf3", Datapath: &DatapathResult{}, ControlError: "boom"}
	r.EvaluateGoals()
	if g := goalByName(t, r, "cross-node pod TCP throughput, IPv4, TCP 1 stream"); g.Verdict != NotMeasured || !strings.Contains(g.Why, "no iperf3") {
		t.Errorf("datapath goal: %+v", g)
	}
	if g := goalByName(t, r, "boot to READY"); g.Verdict != NotMeasured || !strings.Contains(g.Why, "boom") {
		t.Errorf("control goal: %+v", g)
	}
	d := fakeDatapath(1, 1)
	d.VXLAN = VXLANStatus{Note: "this kernel cannot create VXLAN devices"}
	d.Comparisons = nil
	r = &Report{Datapath: d}
	r.EvaluateGoals()
	if g := goalByName(t, r, "ahead of the VXLAN overlay, IPv4, TCP 1 stream"); g.Verdict != NotMeasured || !strings.Contains(g.Why, "cannot create VXLAN") {
		t.Errorf("VXLAN goal without an overlay: %+v", g)
	}
}

func TestReportWritesRecordMarkdownAndChartsThatReadBack(t *testing.T) {
	dir := t.TempDir()
	r := &Report{Schema: SchemaVersion, Mode: "quick", Command: "kindnet-bench --quick", Started: time.Date(2026, 11, 27, 5, 30, 0, 0, time.UTC),
		Finished: time.Date(2026, 11, 27, 5, 34, 0, 0, time.UTC), Machine: Machine{Host: "box/1", CPUModel: "cpu", Cores: 2},
		Datapath: fakeDatapath(0.9, 12), Control: fakeControl(4000, 10, 30, 2), CNI: fakeCNI(), Kube: fakeKube(false),
		Binary: &Binary{Bytes: 10 << 20, Static: true}, Notes: "validation is quadratic"}
	r.EvaluateGoals()
	path, err := r.Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(path) != "2026-11-27-0530-box_1-quick.json" {
		t.Errorf("record written as %s", path)
	}
	back, err := ReadReport(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(back.Goals) != len(r.Goals) || back.Datapath.Series[0].Stat.Median != r.Datapath.Series[0].Stat.Median {
		t.Fatal("the record does not read back as written")
	}
	md, err := os.ReadFile(filepath.Join(dir, "latest.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| cross-node pod TCP throughput, IPv4, TCP 1 stream | ≥ 0.95 × node ↔ node | 0.90 × [0.90 – 0.90] | **MISSED** |",
		"| cross-node pod RTT overhead, IPv4 | ≤ +10 µs over node ↔ node | +12.0 µs [+12.0 – +12.0] | **MISSED** |",
		"| CNI ADD+DEL p50, dual-stack | ≤ 1/3 × reference ptp + host-local | 0.07 × [0.06 – 0.08] | met |",
		"| CNI ADD+DEL p50, IPv4 only | ≤ 1/3 × reference ptp + host-local | 0.98 × (1 run) | **MISSED** |",
		"5,000-node sync through the Kubernetes API: not measured — BenchmarkKubeSync5000 is not part of this run's pattern",
		"| kindnet | 30.9 [29.9 – 31.9] | 45.5 [44.0 – 46.0] | — | — | — | 120.5 [118.0 – 125.0] | — |",
		"| KubeNodeCreateToRoute | p99-ms | 50.92 (1 run) |",
		"![latest-throughput.png](latest-throughput.png)",
		"validation is quadratic",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("latest.md lacks %q", want)
		}
	}
	for _, c := range []string{chartThroughput, chartRTT, chartBoot, chartRSS} {
		b, err := os.ReadFile(filepath.Join(dir, c))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s is not a PNG: %v", c, err)
		}
		if w := img.Bounds().Dx(); w < 400 || w > 1000 || len(b) > 100<<10 {
			t.Errorf("%s is %d px wide and %d bytes: keep charts small and readable", c, w, len(b))
		}
	}
	var sum strings.Builder
	r.PrintSummary(&sum)
	if !strings.Contains(sum.String(), "MISSED") || !strings.Contains(sum.String(), "kindnet binary: 10.0 MiB, static: true") {
		t.Errorf("summary:\n%s", sum.String())
	}
}

func TestQuickRunFitsInFiveMinutes(t *testing.T) {
	// The budget counts only the timed parts (iperf3 and ping runs,
	// waits); building the labs and booting agents comes on top, which is
	// why the bound is four minutes.
	for _, c := range []struct {
		o     Options
		limit time.Duration
	}{{Quick(), 4 * time.Minute}, {Full(), 30 * time.Minute}} {
		if b := c.o.Budget(); b > c.limit || b <= 0 {
			t.Errorf("%s run: timed parts take %s, limit %s", c.o.Mode, b, c.limit)
		}
	}
}

const cniOutput = `goos: linux
BenchmarkCNI/dualstack/sequential-2         	      10	2011002027 ns/op	        45.46 kindnet-add-p50-ms	       120.5 kindnet-adddel-p50-ms	        30.85 kindnet-version-p50-ms	         0.06827 kindnet/reference-cycle	      1765 reference-adddel-p50-ms
--- BENCH: BenchmarkCNI/dualstack/sequential-2
    cnibench_test.go:168: sequential: one pod at a time (10 runs each)
BenchmarkCNI/dualstack/sequential-2         	      10	2011002027 ns/op	        44.00 kindnet-add-p50-ms	       118.0 kindnet-adddel-p50-ms	        29.85 kindnet-version-p50-ms	         0.06 kindnet/reference-cycle	      1700 reference-adddel-p50-ms
BenchmarkCNI/dualstack/sequential-2         	      10	2011002027 ns/op	        46.00 kindnet-add-p50-ms	       125.0 kindnet-adddel-p50-ms	        31.85 kindnet-version-p50-ms	         0.08 kindnet/reference-cycle	      1800 reference-adddel-p50-ms
BenchmarkCNI/ipv4/sequential-2              	      10	 266824060 ns/op	        43.31 kindnet-add-p50-ms	         0.9821 kindnet/reference-cycle
PASS
`

func fakeCNI() *GoBenchResult {
	res := &GoBenchResult{GoBench: GoBench{Bench: "BenchmarkCNI", Count: 3}, Command: "go test ./test/cnibench/", Metrics: map[string]map[string]Stat{}}
	for name, units := range parseBenchOutput(cniOutput) {
		res.Metrics[name] = map[string]Stat{}
		for u, vs := range units {
			res.Metrics[name][u] = Summarize(u, vs)
		}
	}
	return res
}

func fakeKube(withSync bool) *GoBenchResult {
	res := &GoBenchResult{GoBench: GoBench{Bench: "^BenchmarkKubeNodeCreateToRoute$", Count: 1}, Metrics: map[string]map[string]Stat{
		benchKubeEvent: {"p50-ms": Summarize("p50-ms", []float64{35.66}), "p99-ms": Summarize("p99-ms", []float64{50.92})}}}
	if withSync {
		res.Bench = "^BenchmarkKube"
		res.Metrics[benchKubeSync] = map[string]Stat{"sync-s": Summarize("sync-s", []float64{2.4}), "rss-MiB": Summarize("rss-MiB", []float64{36.15})}
	}
	return res
}

// The Kubernetes benchmark prints a line while it runs: the second run's
// figures then come on a line of their own.
const kubeOutput = "created 4999 Nodes in 10.878s\n" +
	"BenchmarkKubeSync5000-2   \t       1\t26744911729 ns/op\t        32.16 peak-rss-MiB\t         2.892 sync-s\n" +
	"--- BENCH: BenchmarkKubeSync5000-2\n    kube_bench_test.go:207: 4999 routes installed\n" +
	"BenchmarkKubeSync5000-2   \tcreated 4999 Nodes in 9.364s\n" +
	"       1\t24735804719 ns/op\t        38.05 peak-rss-MiB\t         2.966 sync-s\n" +
	"--- BENCH: BenchmarkKubeSync5000-2\nPASS\nok  \tgithub.com/kindnet-dev/kindnet/test/e2e\t63.425s\n"

func TestBenchOutputGivesEveryMetricOfEveryRun(t *testing.T) {
	if got := parseBenchOutput(kubeOutput)[benchKubeSync]["sync-s"]; len(got) != 2 || got[1] != 2.966 {
		t.Fatalf("sync-s over the runs: %v, want both runs, 2.892 and 2.966", got)
	}
	m := parseBenchOutput(cniOutput)
	if len(m) != 2 {
		t.Fatalf("benchmarks %v, want the dual-stack and the IPv4 one", sortedKeys(m))
	}
	got := m[benchCNISeqDual][metricCNIRatio]
	if len(got) != 3 || got[0] != 0.06827 || got[2] != 0.08 {
		t.Fatalf("ratio samples %v, want the three runs", got)
	}
	if len(m[benchCNISeqDual]["ns/op"]) != 3 || len(m[benchCNISeqV4]["kindnet-add-p50-ms"]) != 1 {
		t.Fatalf("metrics %v", m)
	}
}

func TestOtherPiecesBenchmarksAreJudgedOrSayWhyNot(t *testing.T) {
	r := &Report{CNI: fakeCNI(), Kube: fakeKube(true)}
	r.EvaluateGoals()
	for prefix, want := range map[string]string{
		"CNI ADD+DEL p50, dual-stack": Met, "CNI ADD+DEL p50, IPv4 only": Missed,
		"Node created → route": Met, "5,000-node sync": Missed, "agent RSS after a 5,000-node sync": Met,
	} {
		if g := goalByName(t, r, prefix); g.Verdict != want {
			t.Errorf("%s: %s (%s), want %s", g.Name, g.Verdict, g.Measured, want)
		}
	}
	r = &Report{CNI: &GoBenchResult{GoBench: GoBench{Bench: "BenchmarkCNI"}, Error: "exit status 1: FAIL"}, Kube: fakeKube(false)}
	r.EvaluateGoals()
	if g := goalByName(t, r, "CNI ADD+DEL p50, dual-stack"); g.Verdict != NotMeasured || !strings.Contains(g.Why, "failed: exit status 1") {
		t.Errorf("a failed CNI benchmark: %+v", g)
	}
	if g := goalByName(t, r, "5,000-node sync"); g.Verdict != NotMeasured || !strings.Contains(g.Why, "quick run leaves it out") {
		t.Errorf("a sync left out of the pattern: %+v", g)
	}
}

// RunGoBench drives a real `go test -bench` (pkg/model's validation
// benchmark, quick and without root) and reads every run back.
func TestRunGoBenchRunsABenchmarkOfTheTreeAndReadsEveryRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a benchmark of pkg/model")
	}
	env := Env{Kindnet: "/nonexistent/kindnet", Log: t.Logf}
	res := RunGoBench(context.Background(), env, "../..", GoBench{What: "validation", Pkg: "pkg/model",
		Bench: "^BenchmarkValidate5000$", BenchTime: "1x", Count: 2, Timeout: 5 * time.Minute})
	if res.Error != "" {
		t.Fatal(res.Error)
	}
	s, ok := res.Metric("BenchmarkValidate5000", "ns/op")
	if !ok || s.N != 2 || !(s.Median > 0) {
		t.Fatalf("metrics %+v", res.Metrics)
	}
	missing := RunGoBench(context.Background(), env, "../..", GoBench{Pkg: "test/nothing-here", Bench: ".", BenchTime: "1x", Count: 1, Timeout: time.Minute})
	if !strings.Contains(missing.Error, "not in this source tree") {
		t.Fatalf("a missing package: %q", missing.Error)
	}
}
