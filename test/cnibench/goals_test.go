package cnibench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// goal is one row of issue 16's goal table: kindnet's figure against a
// bound, either a ratio to the reference plugin or an absolute limit.
type goal struct {
	what  string
	value float64
	limit float64
	unit  string // "x ref", "MB", "MiB"
	note  string
}

// ratio is kindnet's percentile of verb over the reference's in one run.
func ratio(key, verb string, pct float64) (float64, string) {
	r := kept[key]
	if r == nil {
		return 0, "not measured"
	}
	k, ref := r.m["kindnet "+verb].pct(pct), r.m["reference "+verb].pct(pct)
	if ref == 0 {
		return 0, "not measured"
	}
	return ms(k) / ms(ref), fmt.Sprintf("%.1f ms vs %.1f ms", ms(k), ms(ref))
}

// goals prints the goal table and, when CNIBENCH_OUT names a file, writes
// it there as Markdown with every run's percentiles (make bench-cni).
func goals(b *testing.B) {
	var rows []goal
	add := func(what, key, verb string, pct, limit float64) {
		v, note := ratio(key, verb, pct)
		rows = append(rows, goal{what, v, limit, "x ref", note})
	}
	add("VERSION p50 (IPv4, sequential)", "ipv4/sequential", "VERSION", 0.5, 1.1)
	add("IPv4 ADD p50", "ipv4/sequential", "ADD", 0.5, 0.5)
	add("IPv4 ADD+DEL p50", "ipv4/sequential", "ADD+DEL", 0.5, 0.7)
	add("IPv4 20 parallel ADD p99", "ipv4/parallel20", "ADD", 0.99, 0.5)
	add("dual-stack 20 parallel ADD p99", "dualstack/parallel20", "ADD", 0.99, 0.5)
	bin := os.Getenv("KINDNET_BIN")
	if st, err := os.Stat(bin); err == nil {
		rows = append(rows, goal{"plugin binary size", float64(st.Size()) / 1e6, 8, "MB", bin})
	}
	peakRSS.Lock()
	kib, refKiB := peakRSS.kib["kindnet"], peakRSS.kib["reference"]
	peakRSS.Unlock()
	rows = append(rows, goal{"plugin peak RSS during ADD (GNU time)", float64(kib) / 1024, 8, "MiB",
		fmt.Sprintf("reference ptp: %.1f MiB", float64(refKiB)/1024)})

	var t strings.Builder
	fmt.Fprintf(&t, "| goal | kindnet | limit | met | detail |\n|---|---|---|---|---|\n")
	for _, g := range rows {
		met := "yes"
		if g.value > g.limit || g.value == 0 {
			met = "**no**"
		}
		fmt.Fprintf(&t, "| %s | %.2f %s | ≤ %.1f %s | %s | %s |\n", g.what, g.value, g.unit, g.limit, g.unit, met, g.note)
	}
	b.Log("\ngoals (issue 16)\n" + t.String() + "\nkindnet DEL, step by step (KINDNET_CNI_TIMING)\n" + stepTable())
	out := os.Getenv("CNIBENCH_OUT")
	if out == "" {
		return
	}
	var md strings.Builder
	fmt.Fprintf(&md, "# CNI plugin latency: kindnet vs reference ptp + host-local\n\n")
	host, _ := os.Hostname()
	fmt.Fprintf(&md, "Run %s on %s (`make bench-cni`, test/cnibench); plugin %s. Both plugins alternate in one run.\n\n",
		time.Now().UTC().Format(time.RFC3339), host, bin)
	md.WriteString("## Goals\n\n" + t.String() + "\n")
	md.WriteString("## Where kindnet's DEL goes\n\nEach step of DEL as the plugin times it (monotonic clock, KINDNET_CNI_TIMING=1, 30 pods per stack, sequential); " +
		"\"total\" is the plugin's work from main, \"process\" the whole exec as the runtime waits for it.\n\n" + stepTable() + "\n")
	for _, key := range []string{"ipv4/sequential", "ipv4/parallel20", "dualstack/sequential", "dualstack/parallel20"} {
		r := kept[key]
		if r == nil {
			continue
		}
		fmt.Fprintf(&md, "## %s (%d runs each)\n\n| plugin | verb | p50 ms | p99 ms |\n|---|---|---|---|\n", key, len(r.m["kindnet ADD"]))
		for _, p := range []string{"kindnet", "reference"} {
			for _, verb := range []string{"VERSION", "ADD", "DEL", "ADD+DEL"} {
				if s := r.m[p+" "+verb]; len(s) > 0 {
					fmt.Fprintf(&md, "| %s | %s | %.1f | %.1f |\n", p, verb, ms(s.pct(0.5)), ms(s.pct(0.99)))
				}
			}
		}
		md.WriteString("\n")
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	b.Logf("report written to %s", out)
}
