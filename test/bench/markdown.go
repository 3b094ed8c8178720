package bench

import (
	"fmt"
	"io"
	"math"
	"strings"
	"time"
)

// WriteMarkdown writes the human report. Chart file names are relative to
// the report's directory.
func (r *Report) WriteMarkdown(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# kindnet benchmark report\n\n")
	p("%s run of %s on `%s`, %s.\n\n", r.Mode, r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Machine.Host, r.Finished.Sub(r.Started).Round(time.Second))
	p("| machine | |\n| --- | --- |\n")
	p("| CPU | %s, %d cores |\n| memory | %.1f GiB |\n| kernel | %s |\n", r.Machine.CPUModel, r.Machine.Cores, r.Machine.MemGiB, r.Machine.Kernel)
	p("| kindnet | %s (built with %s) |\n| iperf3 | %s |\n| ping | %s |\n| iproute2 | %s |\n| benchmark | built with %s |\n",
		r.Versions.Kindnet, r.Versions.KindnetGo, r.Versions.Iperf3, r.Versions.Ping, r.Versions.IPRoute2, r.Versions.BenchGo)
	p("| load average (1, 5, 15 min) | %s |\n\n", loads(r.Load))
	p("Command: `%s`\n\n", r.Command)
	p("Every figure is the **median** of repeated runs, shown as `median [min – max]`. Every comparison is computed ")
	p("round by round from two things measured back to back in the same round (a ratio for throughput, a difference ")
	p("for latency), then summarized the same way. The machine is shared: the load average above was read at the start ")
	p("and the end of each section. How to read this report: docs/benchmarks.md.\n\n")

	p("## Goals\n\n| goal | target | measured | verdict |\n| --- | --- | --- | --- |\n")
	for _, g := range r.Goals {
		m, v := g.Measured, g.Verdict
		if v == NotMeasured {
			m = g.Why
		}
		if v == Missed {
			v = "**MISSED**"
		}
		p("| %s | %s | %s | %s |\n", g.Name, g.Target, m, v)
	}
	p("\n")
	r.markdownDatapath(w)
	r.markdownControl(w)
	r.markdownFootprint(w)
	r.markdownCNI(w)
	r.markdownKube(w)
	if len(r.NotMeasured) > 0 {
		p("## Not measured in this run\n\n")
		for _, m := range r.NotMeasured {
			p("- %s: not measured — %s.\n", m.What, m.Why)
		}
		p("\n")
	}
	if r.Notes != "" {
		p("## Analysis\n\nWritten by hand after looking at runs like this one (profiles, code reading); not produced by the run itself.\n\n%s\n", strings.TrimSpace(r.Notes))
	}
}

func loads(ls []Load) string {
	var out []string
	for _, l := range ls {
		out = append(out, fmt.Sprintf("%.2f %.2f %.2f (%s)", l.Average[0], l.Average[1], l.Average[2], l.What))
	}
	return strings.Join(out, "; ")
}

func (r *Report) markdownDatapath(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Datapath\n\n")
	d := r.Datapath
	if d == nil {
		p("Not measured: %s\n\n", orDefault(r.DatapathError, "the section was skipped"))
		return
	}
	if r.DatapathError != "" {
		p("The section ended early: %s\n\n", r.DatapathError)
	}
	p("A lab of two node namespaces on one bridge, two pods per node wired by the CNI config each node's kindnet agent wrote; ")
	p("%d rounds; in each round every path is measured in turn, the order rotating from round to round. ", d.Options.Rounds)
	p("Throughput: `iperf3 -t %d -O %d` with 1 and with 4 parallel streams (`-P 4`). ", d.Options.Seconds, d.Options.Omit)
	p("Latency: %d ICMP echo requests %s apart (`ping -i %.2f`); a run's RTT is the median (and p99) of its replies. ",
		d.Options.PingCount, time.Duration(d.Options.PingInterval), time.Duration(d.Options.PingInterval).Seconds())
	p("Load average: %s.\n\n", loads(d.Load))
	if d.VXLAN.Available {
		p("VXLAN overlay, built by the benchmark in the same lab as flannel's default backend would: %s.\n\n", d.VXLAN.Note)
	} else {
		p("**No VXLAN overlay:** %s\n\n", d.VXLAN.Note)
	}
	p("| path | from | to |\n| --- | --- | --- |\n")
	for _, pt := range d.Paths {
		p("| %s (`%s`) | %s | %s (%s, %s) |\n", pt.Label, pt.Key, pt.From, pt.To, pt.Addr4, pt.Addr6)
	}
	p("\n")
	for _, fam := range Families {
		p("### %s\n\n| path | TCP 1 stream (Gbit/s) | TCP 4 streams (Gbit/s) | RTT median (µs) | RTT p99 (µs) |\n| --- | --- | --- | --- | --- |\n", fam)
		for _, pt := range d.Paths {
			cells := []string{pt.Label}
			for _, m := range []string{MetricTCP1, MetricTCP4, MetricRTT, MetricRTT99} {
				s, _ := d.Find(pt.Key, fam, m)
				digits := 2
				if m == MetricRTT || m == MetricRTT99 {
					digits = 1
				}
				cells = append(cells, statCell(s.Stat, digits))
			}
			p("| %s |\n", strings.Join(cells, " | "))
		}
		p("\n")
	}
	p("### Comparisons (same round, A against B)\n\n| A against B | metric | IPv4 | IPv6 |\n| --- | --- | --- | --- |\n")
	seen := map[string]bool{}
	for _, c := range d.Comparisons {
		key := c.A + c.B + c.Metric
		if seen[key] {
			continue
		}
		seen[key] = true
		row := fmt.Sprintf("| %s against %s | %s |", c.A, c.B, compName(c))
		for _, fam := range Families {
			cc, ok := d.Compare(c.A, c.B, fam, c.Metric)
			if !ok {
				row += " — |"
				continue
			}
			if cc.Kind == "difference" {
				row += " " + fmtDelta(cc.Stat, "µs", 1) + " |"
			} else {
				row += " " + fmtStat(cc.Stat, "×", 3) + " |"
			}
		}
		p("%s\n", row)
	}
	p("\n")
	for _, ch := range r.Charts {
		if strings.Contains(ch, "throughput") || strings.Contains(ch, "rtt") {
			p("![%s](%s)\n\n", ch, ch)
		}
	}
	if len(d.Errors) > 0 {
		p("Runs that failed (left out of the figures):\n\n")
		for _, e := range d.Errors {
			p("- %s\n", e)
		}
		p("\n")
	}
}

func compName(c Comparison) string {
	if c.Kind == "difference" {
		return metricName(c.Metric) + ", A − B"
	}
	return metricName(c.Metric) + ", A / B"
}

func statCell(s Stat, digits int) string {
	if !s.Valid() {
		return "—"
	}
	if s.N == 1 {
		return fmt.Sprintf("%.*f (1 run)", digits, s.Median)
	}
	return fmt.Sprintf("%.*f [%.*f – %.*f]", digits, s.Median, digits, s.Min, digits, s.Max)
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func (r *Report) markdownControl(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Control plane without an API server\n\n")
	c := r.Control
	if c == nil {
		p("Not measured: %s\n\n", orDefault(r.ControlError, "the section was skipped"))
		return
	}
	if r.ControlError != "" {
		p("The section ended early: %s\n\n", r.ControlError)
	}
	p("Each agent runs in a namespace of its own whose one link is on a /12 (and a /64) holding every synthetic peer, ")
	p("so every peer is on-link; peers are dual-stack, so a cluster of N peers means 2N routes. Load average: %s.\n\n", loads(c.Load))
	p("### Boot to READY from the cache\n\n")
	p("The agent's config points at a nodes file that does not exist and its state directory holds a cache of N peers, ")
	p("written by kindnet's own cache code. The clock starts when the benchmark starts `ip netns exec <ns> kindnet agent` ")
	p("and stops when READY=1 arrives on the NOTIFY_SOCKET the benchmark listens on; at that moment it counts the kindnet ")
	p("routes and checks the CNI config. Starting through `ip netns exec` alone takes %s, included in every time below. ", fmtStat(c.WrapperMs, "ms", 1))
	p("%d boots per size, sizes alternating; RSS (VmRSS) read %s after READY. ", c.Options.Repeats, time.Duration(c.Options.Settle))
	p("After each boot, iproute2 installs the same routes in a fresh namespace in one process (`ip -batch`): the time the kernel ")
	p("alone needs, a floor under any boot time on this machine; `boot / floor` pairs each boot with the floor measured right after it.\n\n")
	later := time.Duration(c.Options.RSSAfter)
	p("| peers | routes expected | boot to READY (ms) | kernel floor: ip -batch (ms) | boot / floor | routes at READY | CNI config at READY | RSS after sync (MiB) | peak RSS (MiB) |")
	if later > 0 {
		p(" RSS %s later (MiB) | CPU while idle, resync included (s per minute) |", later)
	}
	p("\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
	if later > 0 {
		p(" --- | --- |")
	}
	p("\n")
	for _, b := range c.Boot {
		p("| %d | %d | %s | %s | %s | %s | %s | %s | %s |", b.Peers, b.ExpectedRoutes, statCell(b.ReadyMs, 1), statCell(b.FloorMs, 1), statCell(b.OverFloor, 2),
			ints(b.RoutesAtReady), bools(b.ConflistAtReady), statCell(b.RSSMiB, 1), statCell(b.PeakMiB, 1))
		if later > 0 {
			p(" %s | %s |", optF(b.RSSLaterMiB, 1), optF(b.IdleCPUSecPM, 3))
		}
		p("\n")
	}
	p("\n")
	for _, ch := range r.Charts {
		if strings.Contains(ch, "boot") || strings.Contains(ch, "rss") {
			p("![%s](%s)\n\n", ch, ch)
		}
	}
	if ch := c.Change; ch != nil {
		p("### One peer changed at %d peers (nodes file)\n\n", ch.Peers)
		p("An agent boots from a nodes file of %d peers (READY after %.0f ms, one run; the file is parsed as Kubernetes YAML), ", ch.Peers, ch.BootFromFileMs)
		p("then the file is replaced (write + rename) with one extra peer added, then removed again, alternately. ")
		p("The benchmark follows the namespace's route notifications (netlink) and, with inotify, when the agent opens the file. ")
		p("The nodes-file source polls once a second, so the time from the file change includes up to a second of waiting for the next poll; ")
		p("the time from the agent opening the file is kindnet's own work (parse, validate, reconcile).\n\n")
		p("| | median [min – max] |\n| --- | --- |\n")
		p("| file replaced → routes changed | %s |\n| agent opened the file → routes changed | %s |\n", fmtStat(ch.ConvergeMs, "ms", 0), fmtStat(ch.ProcessMs, "ms", 1))
		p("| RSS after the changes | %.1f MiB (peak %.1f MiB) |\n\n", ch.RSSMiB, ch.PeakMiB)
		p("| change | file → routes (ms) | agent read → routes (ms) | expected route events | route events seen | route changes logged | reconciles (why, from the agent's log) |\n| --- | --- | --- | --- | --- | --- | --- |\n")
		for _, run := range ch.Runs {
			p("| %s | %.0f | %.1f | %d | %d | %d | %d: %s |\n", run.Kind, run.ConvergeMs, run.ProcessMs, run.ExpectedEvents, run.RouteEvents, run.LoggedChanges,
				run.Reconciles, strings.Join(run.ReconcileWhy, "; "))
		}
		p("\nRoute events are every kindnet route notification in the namespace from the file change until the agent is idle ")
		p("again (and at least one more poll later); reconciles are those the agent logged in the same time. A change that ")
		p("rewrote all %d routes would show %d route events.\n\n", 2*ch.Peers, 2*ch.Peers)
	}
	if len(c.Skipped) > 0 {
		p("Runs left out to stay within the time budget (the agent was slow):\n\n")
		for _, sk := range c.Skipped {
			p("- %s\n", sk)
		}
		p("\n")
	}
	if len(c.Errors) > 0 {
		p("Runs that failed:\n\n")
		for _, e := range c.Errors {
			p("- %s\n", strings.ReplaceAll(e, "\n", " "))
		}
		p("\n")
	}
}

func ints(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func bools(v []bool) string {
	n := 0
	for _, b := range v {
		if b {
			n++
		}
	}
	return fmt.Sprintf("%d of %d runs", n, len(v))
}

func optF(p *float64, digits int) string {
	if p == nil || math.IsNaN(*p) {
		return "—"
	}
	return fmt.Sprintf("%.*f", digits, *p)
}

func (r *Report) markdownFootprint(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Footprint\n\n| what | measured |\n| --- | --- |\n")
	if b := r.Binary; b != nil {
		st := "static"
		if !b.Static {
			st = "NOT static: " + b.Why
		}
		p("| kindnet binary | %.1f MiB (%d bytes), %s |\n", float64(b.Bytes)/(1<<20), b.Bytes, st)
	}
	if c := r.Control; c != nil {
		for _, b := range c.Boot {
			p("| agent RSS, %d peers, %s after READY | %s |\n", b.Peers, time.Duration(c.Options.Settle), fmtStat(b.RSSMiB, "MiB", 1))
			if b.RSSLaterMiB != nil {
				p("| agent RSS, %d peers, %s after READY | %.1f MiB (1 run) |\n", b.Peers, time.Duration(c.Options.RSSAfter), *b.RSSLaterMiB)
			}
		}
		if ev := c.Events; ev != nil && ev.Events > 0 {
			p("| agent CPU per 1,000 node events | %.2f s (%d events: %d nodes-file rewrites × %d changed peers at %d peers; %.2f s used in %.1f s, minus %.4f s/s idle) |\n",
				ev.PerThousand, ev.Events, ev.Rewrites, ev.PerRewrite, ev.Peers, ev.CPUSec, ev.ElapsedSec, ev.IdleCPUSecPerSec)
			p("| file replaced → routes changed, per rewrite of %d peers | %s |\n", ev.PerRewrite, fmtStat(ev.RewriteMs, "ms", 0))
		}
	}
	if c := r.Control; c != nil && c.PluginPeakMiB.Valid() {
		p("| CNI plugin ADD peak RSS (ru_maxrss, %d ADDs) | %s |\n", c.PluginPeakMiB.N, fmtStat(c.PluginPeakMiB, "MiB", 1))
	} else {
		p("| CNI plugin ADD peak RSS | not measured |\n")
	}
	if s, ok := r.Kube.Metric(benchKubeSync, "rss-MiB"); ok {
		p("| agent RSS right after a 5,000-node sync through the Kubernetes API | %s |\n", fmtStat(s, "MiB", 1))
	}
	p("\n")
	r.markdownArches(w)
	p("CPU per node event uses the nodes file as the event source: every rewrite makes the agent parse the whole file ")
	p("(all peers) once, so the figure is an upper bound for the file source; the Kubernetes API source receives one Node at a time.\n\n")
}

// goBenchHeader says how another piece's benchmark was run.
func goBenchHeader(w io.Writer, res *GoBenchResult) {
	fmt.Fprintf(w, "`%s` (%.0f s). Each figure is the median over the %d runs (`-count`), with min and max.", res.Command, res.Seconds, res.Count)
	if len(res.Load) > 0 {
		fmt.Fprintf(w, " Load average: %s.", loads(res.Load))
	}
	fmt.Fprintf(w, "\n\n")
	if res.Error != "" {
		fmt.Fprintf(w, "The benchmark reported an error:\n\n```\n%s\n```\n\n", strings.TrimSpace(res.Error))
	}
}

func (r *Report) markdownCNI(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## CNI plugin: ADD and DEL against the reference\n\n")
	res := r.CNI
	if res == nil {
		p("Not measured: %s.\n\n", missingWhy(res, benchCNISeqDual))
		return
	}
	p("kindnet's own plugin and Debian's reference `ptp` + `host-local`, set up alike and alternating run by run (test/cnibench). ")
	goBenchHeader(w, res)
	for _, bench := range sortedKeys(res.Metrics) {
		p("### %s (ms)\n\n| plugin | VERSION p50 | ADD p50 | ADD p99 | DEL p50 | DEL p99 | ADD+DEL p50 | ADD+DEL p99 |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n", strings.TrimPrefix(bench, "BenchmarkCNI/"))
		for _, plugin := range []string{"kindnet", "reference"} {
			row := "| " + plugin + " |"
			for _, unit := range []string{"version-p50", "add-p50", "add-p99", "del-p50", "del-p99", "adddel-p50", "adddel-p99"} {
				s, ok := res.Metric(bench, plugin+"-"+unit+"-ms")
				if ok {
					row += " " + statCell(s, 1) + " |"
				} else {
					row += " — |"
				}
			}
			p("%s\n", row)
		}
		if s, ok := res.Metric(bench, metricCNIRatio); ok {
			p("\nkindnet ADD+DEL p50 / reference ADD+DEL p50: %s\n", fmtStat(s, "×", 3))
		}
		p("\n")
	}
}

func (r *Report) markdownKube(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## Kubernetes API source against a real kube-apiserver\n\n")
	res := r.Kube
	if res == nil {
		p("Not measured: %s.\n\n", missingWhy(res, benchKubeEvent))
		return
	}
	p("Agents in the lab follow Nodes through a real kube-apiserver 1.37 and etcd (test/e2e, `make bench-kube`): ")
	p("the time from a Node created in the API server to its route on every other lab node, over 100 Nodes per run; ")
	p("and one agent starting against 5,000 Nodes until its 4,999 routes are installed, with its RSS. ")
	goBenchHeader(w, res)
	p("| benchmark | metric | median [min – max] |\n| --- | --- | --- |\n")
	for _, bench := range sortedKeys(res.Metrics) {
		for _, unit := range sortedKeys(res.Metrics[bench]) {
			if unit == "ns/op" {
				continue
			}
			p("| %s | %s | %s |\n", strings.TrimPrefix(bench, "Benchmark"), unit, statCell(res.Metrics[bench][unit], 2))
		}
	}
	p("\n")
}
