package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// SchemaVersion is the version of the JSON record's layout.
const SchemaVersion = 1

// Report is everything one run measured; its JSON form is the record, the
// Markdown report and the charts are drawn from it.
type Report struct {
	Schema   int       `json:"schema"`
	Mode     string    `json:"mode"` // "full" or "quick"
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  Machine   `json:"machine"`
	Versions Versions  `json:"versions"`
	Binary   *Binary   `json:"binary,omitempty"`
	// Arches is the binary per architecture (footprint on small machines).
	Arches      []ArchBinary `json:"arches,omitempty"`
	ArchesError string       `json:"archesError,omitempty"`
	Load        []Load       `json:"load"`

	Datapath      *DatapathResult `json:"datapath,omitempty"`
	DatapathError string          `json:"datapathError,omitempty"`
	Control       *ControlResult  `json:"control,omitempty"`
	ControlError  string          `json:"controlError,omitempty"`
	CNI           *GoBenchResult  `json:"cni,omitempty"`
	Kube          *GoBenchResult  `json:"kube,omitempty"`
	// NotMeasured are the measures another piece of kindnet provides,
	// with where they will come from.
	NotMeasured []Missing `json:"notMeasured"`
	Goals       []Goal    `json:"goals"`
	Charts      []string  `json:"charts,omitempty"`
	// Notes is hand-written analysis included verbatim (--notes).
	Notes string `json:"notes,omitempty"`
}

// Missing is a measure this run could not make, and why.
type Missing struct {
	What string `json:"what"`
	Why  string `json:"why"`
}

// Verdicts of a goal.
const (
	Met         = "met"
	Missed      = "MISSED"
	NotMeasured = "not measured"
)

// Goal is one of kindnet's stated goals and how this run did.
type Goal struct {
	Name     string `json:"name"`
	Target   string `json:"target"`
	Measured string `json:"measured"`
	Verdict  string `json:"verdict"`
	Why      string `json:"why,omitempty"` // for "not measured"
}

// missingWhy says why a Go benchmark of another piece gave no figure.
func missingWhy(res *GoBenchResult, bench string) string {
	switch {
	case res == nil:
		return "not run in this run (--only, or the quick run, which leaves out the API server benchmarks: make bench runs them)"
	case res.Error != "" && len(res.Metrics[bench]) == 0:
		return "its benchmark failed: " + firstLine(res.Error)
	case len(res.Metrics[bench]) == 0:
		return fmt.Sprintf("%s is not part of this run's pattern %q (the quick run leaves it out)", bench, res.Bench)
	}
	return ""
}

// missingMeasures lists what this run did not measure, and why.
func (r *Report) missingMeasures() []Missing {
	var out []Missing
	for _, m := range []struct {
		what, bench string
		res         *GoBenchResult
	}{
		{"CNI ADD/DEL latency, sequential, kindnet vs reference ptp + host-local", benchCNISeqDual, r.CNI},
		{"CNI ADD/DEL latency, 20 pods at once", benchCNIParDual, r.CNI},
		{"event → route latency through the Kubernetes API", benchKubeEvent, r.Kube},
		{"5,000-node sync through the Kubernetes API", benchKubeSync, r.Kube},
	} {
		if why := missingWhy(m.res, m.bench); why != "" {
			out = append(out, Missing{m.what, why})
		}
	}
	if r.Control == nil || !r.Control.PluginPeakMiB.Valid() {
		out = append(out, Missing{"CNI plugin ADD peak RSS", "the control-plane section did not measure it"})
	}
	return out
}

// benchGoal judges a goal on the median of a metric of another piece's
// Go benchmark.
func benchGoal(g Goal, res *GoBenchResult, bench, unit, shownUnit string, digits int, ok func(float64) bool) Goal {
	s, found := res.Metric(bench, unit)
	if !found {
		g.Verdict, g.Why = NotMeasured, missingWhy(res, bench)
		if g.Why == "" {
			g.Why = fmt.Sprintf("%s reported no %s", bench, unit)
		}
		return g
	}
	return verdict(g, fmtStat(s, shownUnit, digits), ok(s.Median))
}

// Targets of the goals (docs/benchmarks.md explains them).
const (
	goalTCPRatio     = 0.95
	goalRTTOverUs    = 10.0
	goalBootMs       = 300.0
	goalBootPeers    = 5000
	goalRSSIdleMiB   = 25.0
	goalRSSPeersMiB  = 40.0
	goalRSSPeers     = 5000
	goalChangeEvents = 2 // one route per family of the changed peer
)

// EvaluateGoals fills r.Goals from what was measured.
func (r *Report) EvaluateGoals() {
	var g []Goal
	d := r.Datapath
	if d != nil {
		d.err = r.DatapathError
	}
	for _, fam := range Families {
		for _, m := range []string{MetricTCP1, MetricTCP4} {
			goal := Goal{Name: fmt.Sprintf("cross-node pod TCP throughput, %s, %s", fam, metricName(m)), Target: fmt.Sprintf("≥ %.2f × node ↔ node", goalTCPRatio)}
			g = append(g, judge(goal, d, PathKindnet, PathNode, fam, m, func(v float64) bool { return v >= goalTCPRatio }))
		}
	}
	for _, fam := range Families {
		goal := Goal{Name: fmt.Sprintf("cross-node pod RTT overhead, %s", fam), Target: fmt.Sprintf("≤ +%.0f µs over node ↔ node", goalRTTOverUs)}
		g = append(g, judge(goal, d, PathKindnet, PathNode, fam, MetricRTT, func(v float64) bool { return v <= goalRTTOverUs }))
	}
	for _, fam := range Families {
		for _, m := range []string{MetricTCP1, MetricTCP4, MetricRTT} {
			goal := Goal{Name: fmt.Sprintf("ahead of the VXLAN overlay, %s, %s", fam, metricName(m)), Target: "kindnet / VXLAN > 1"}
			ok := func(v float64) bool { return v > 1 }
			if m == MetricRTT {
				goal.Target = "kindnet − VXLAN < 0 µs"
				ok = func(v float64) bool { return v < 0 }
			}
			gl := judge(goal, d, PathKindnet, PathVXLAN, fam, m, ok)
			if d != nil && !d.VXLAN.Available {
				gl.Why = d.VXLAN.Note
			}
			g = append(g, gl)
		}
	}
	third := func(v float64) bool { return v <= 1.0/3 }
	g = append(g,
		benchGoal(Goal{Name: "CNI ADD+DEL p50, dual-stack", Target: "≤ 1/3 × reference ptp + host-local"}, r.CNI, benchCNISeqDual, metricCNIRatio, "×", 2, third),
		benchGoal(Goal{Name: "CNI ADD+DEL p50, IPv4 only", Target: "≤ 1/3 × reference ptp + host-local"}, r.CNI, benchCNISeqV4, metricCNIRatio, "×", 2, third),
		benchGoal(Goal{Name: "Node created → route on every node, p99 (Kubernetes API)", Target: "≤ 100 ms"}, r.Kube, benchKubeEvent, "p99-ms", "ms", 1,
			func(v float64) bool { return v <= 100 }),
		benchGoal(Goal{Name: "5,000-node sync (Kubernetes API)", Target: "≤ 2 s"}, r.Kube, benchKubeSync, "sync-s", "s", 2,
			func(v float64) bool { return v <= 2 }),
	)
	g = append(g, r.controlGoals()...)
	g = append(g, benchGoal(Goal{Name: "agent RSS after a 5,000-node sync (Kubernetes API)", Target: fmt.Sprintf("≤ %.0f MiB", goalRSSPeersMiB)},
		r.Kube, benchKubeSync, "rss-MiB", "MiB", 1, func(v float64) bool { return v <= goalRSSPeersMiB }))
	r.NotMeasured = r.missingMeasures()
	for i := range g {
		if g[i].Verdict == NotMeasured && g[i].Why == "" {
			g[i].Why = "not measured in this run"
		}
	}
	r.Goals = g
}

func (r *Report) controlGoals() []Goal {
	c := r.Control
	boot := Goal{Name: fmt.Sprintf("boot to READY from the cache, %d peers", goalBootPeers), Target: fmt.Sprintf("≤ %.0f ms", goalBootMs), Verdict: NotMeasured}
	inPlace := Goal{Name: "routes and CNI config in place at READY", Target: "every run", Verdict: NotMeasured}
	idle := Goal{Name: "agent RSS, idle (no peers)", Target: fmt.Sprintf("≤ %.0f MiB", goalRSSIdleMiB), Verdict: NotMeasured}
	big := Goal{Name: fmt.Sprintf("agent RSS, %d peers", goalRSSPeers), Target: fmt.Sprintf("≤ %.0f MiB", goalRSSPeersMiB), Verdict: NotMeasured}
	change := Goal{Name: "one peer changed rewrites only its routes", Target: fmt.Sprintf("≤ %d route events per change", goalChangeEvents), Verdict: NotMeasured}
	why := "the control-plane section did not run"
	if r.ControlError != "" {
		why = "the control-plane section failed: " + r.ControlError
	}
	for _, x := range []*Goal{&boot, &inPlace, &idle, &big, &change} {
		x.Why = why
	}
	if c == nil {
		return []Goal{boot, inPlace, idle, big, change}
	}
	if b, ok := c.BootAt(goalBootPeers); ok && b.ReadyMs.Valid() {
		boot = verdict(boot, fmtStat(b.ReadyMs, "ms", 0), b.ReadyMs.Median <= goalBootMs)
	} else {
		boot.Why = fmt.Sprintf("no successful boot at %d peers in this run", goalBootPeers)
	}
	all, someOK := true, false
	var sizes []string
	boots := 0
	for _, b := range c.Boot {
		if !b.ReadyMs.Valid() {
			continue
		}
		someOK = true
		boots += b.ReadyMs.N
		sizes = append(sizes, fmt.Sprint(b.Peers))
		all = all && b.AllInPlace
	}
	if someOK {
		inPlace = verdict(inPlace, fmt.Sprintf("%s in %d boots at %s peers", yesNo(all, "all in place", "something missing"), boots, strings.Join(sizes, ", ")), all)
	}
	idle = rssGoal(idle, c, 0, goalRSSIdleMiB)
	big = rssGoal(big, c, goalRSSPeers, goalRSSPeersMiB)
	if ch := c.Change; ch != nil && len(ch.Runs) > 0 {
		change = verdict(change, fmt.Sprintf("at most %d route events per change at %d peers (%d changes)", ch.MaxRouteEvents, ch.Peers, len(ch.Runs)), ch.MaxRouteEvents <= goalChangeEvents)
	} else {
		change.Why = "no single-change run succeeded"
	}
	return []Goal{boot, inPlace, idle, big, change}
}

// rssGoal judges the larger of the RSS after sync (median) and the RSS a
// while later, when that was measured.
func rssGoal(g Goal, c *ControlResult, peers int, limit float64) Goal {
	b, ok := c.BootAt(peers)
	if !ok || !b.RSSMiB.Valid() {
		g.Why = fmt.Sprintf("no agent with %d peers was measured", peers)
		return g
	}
	worst := b.RSSMiB.Median
	shown := fmtStat(b.RSSMiB, "MiB", 1) + " after sync"
	if b.RSSLaterMiB != nil {
		worst = math.Max(worst, *b.RSSLaterMiB)
		shown += fmt.Sprintf("; %.1f MiB %s later", *b.RSSLaterMiB, time.Duration(c.Options.RSSAfter))
	}
	return verdict(g, shown, worst <= limit)
}

func judge(g Goal, d *DatapathResult, a, b, fam, metric string, ok func(float64) bool) Goal {
	g.Verdict = NotMeasured
	if d == nil {
		g.Why = "the datapath section did not run"
		return g
	}
	c, found := d.Compare(a, b, fam, metric)
	if !found || !c.Stat.Valid() {
		g.Why = fmt.Sprintf("no round measured both %s and %s", a, b)
		if len(d.Series) == 0 && d.err != "" {
			g.Why = "the datapath section failed: " + d.err
		}
		return g
	}
	shown := fmtStat(c.Stat, "×", 2)
	if c.Kind == "difference" {
		shown = fmtDelta(c.Stat, "µs", 1)
	}
	return verdict(g, shown, ok(c.Stat.Median))
}

func verdict(g Goal, measured string, ok bool) Goal {
	g.Measured, g.Verdict, g.Why = measured, Missed, ""
	if ok {
		g.Verdict = Met
	}
	return g
}

func yesNo(b bool, y, n string) string {
	if b {
		return y
	}
	return n
}

func metricName(m string) string {
	switch m {
	case MetricTCP1:
		return "TCP 1 stream"
	case MetricTCP4:
		return "TCP 4 streams"
	case MetricRTT:
		return "RTT median"
	case MetricRTT99:
		return "RTT p99"
	}
	return m
}

// fmtStat shows "median unit [min – max]".
func fmtStat(s Stat, unit string, digits int) string {
	return formatStat(s, unit, digits, false)
}

// fmtDelta shows a difference the same way, with its sign.
func fmtDelta(s Stat, unit string, digits int) string {
	return formatStat(s, unit, digits, true)
}

func formatStat(s Stat, unit string, digits int, sign bool) string {
	if !s.Valid() {
		return "—"
	}
	f := func(v float64) string {
		if sign && v > 0 {
			return fmt.Sprintf("+%.*f", digits, v)
		}
		return fmt.Sprintf("%.*f", digits, v)
	}
	if s.N == 1 {
		return f(s.Median) + " " + unit + " (1 run)"
	}
	return fmt.Sprintf("%s %s [%s – %s]", f(s.Median), unit, f(s.Min), f(s.Max))
}

// WriteJSON writes the record.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadReport reads a record written by WriteJSON.
func ReadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r := &Report{}
	if err := json.Unmarshal(b, r); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if r.Schema != SchemaVersion {
		return nil, fmt.Errorf("%s: schema %d, this program reads %d", path, r.Schema, SchemaVersion)
	}
	return r, nil
}

// PrintSummary prints the goals and the headline figures as a table.
func (r *Report) PrintSummary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "GOAL\tTARGET\tMEASURED (median [min – max])\tVERDICT\n")
	for _, g := range r.Goals {
		m := g.Measured
		if g.Verdict == NotMeasured {
			m = g.Why
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Name, g.Target, m, g.Verdict)
	}
	tw.Flush()
	if d := r.Datapath; d != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "PATH\tFAMILY\tTCP 1 STREAM\tTCP 4 STREAMS\tRTT MEDIAN\n")
		for _, fam := range Families {
			for _, p := range d.Paths {
				t1, _ := d.Find(p.Key, fam, MetricTCP1)
				t4, _ := d.Find(p.Key, fam, MetricTCP4)
				rt, _ := d.Find(p.Key, fam, MetricRTT)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Key, fam, fmtStat(t1.Stat, "Gbit/s", 2), fmtStat(t4.Stat, "Gbit/s", 2), fmtStat(rt.Stat, "µs", 1))
			}
		}
		tw.Flush()
	}
	if c := r.Control; c != nil {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "PEERS\tBOOT TO READY (cache)\tRSS AFTER SYNC\n")
		for _, b := range c.Boot {
			fmt.Fprintf(tw, "%d\t%s\t%s\n", b.Peers, fmtStat(b.ReadyMs, "ms", 1), fmtStat(b.RSSMiB, "MiB", 1))
		}
		tw.Flush()
		if ch := c.Change; ch != nil {
			fmt.Fprintf(w, "one peer changed at %d peers: routes %s after the file changed, %s after the agent read it; at most %d route events\n",
				ch.Peers, fmtStat(ch.ConvergeMs, "ms", 0), fmtStat(ch.ProcessMs, "ms", 1), ch.MaxRouteEvents)
		}
		if ev := c.Events; ev != nil && ev.Events > 0 {
			fmt.Fprintf(w, "CPU per 1,000 node events (nodes file, %d peers): %.2f s\n", ev.Peers, ev.PerThousand)
		}
	}
	if b := r.Binary; b != nil {
		fmt.Fprintf(w, "kindnet binary: %.1f MiB, static: %t\n", float64(b.Bytes)/(1<<20), b.Static)
	}
}
