package e2e

import (
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// violations collects what the soak found wrong, by kind: every one is
// counted, the first few of each kind are kept with their details.
type violations struct {
	mu      sync.Mutex
	start   time.Time
	counts  map[string]int
	details map[string][]string
}

const keepDetails = 5

func newViolations(start time.Time) *violations {
	return &violations{start: start, counts: map[string]int{}, details: map[string][]string{}}
}

func (v *violations) add(kind, format string, args ...any) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.counts[kind]++
	if len(v.details[kind]) < keepDetails {
		v.details[kind] = append(v.details[kind], fmt.Sprintf("t=%s ", time.Since(v.start).Round(time.Millisecond))+fmt.Sprintf(format, args...))
	}
}

func (v *violations) total() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	n := 0
	for _, c := range v.counts {
		n += c
	}
	return n
}

func (v *violations) report(b *strings.Builder) {
	v.mu.Lock()
	defer v.mu.Unlock()
	kinds := slices.Sorted(maps.Keys(v.counts))
	for _, k := range kinds {
		fmt.Fprintf(b, "  %-34s %d\n", k, v.counts[k])
		for _, d := range v.details[k] {
			fmt.Fprintf(b, "      %s\n", d)
		}
	}
}

// timeline records the soak's faults and unusual events with their time.
type timeline struct {
	mu    sync.Mutex
	start time.Time
	lines []string
}

func (tl *timeline) add(format string, args ...any) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.lines = append(tl.lines, fmt.Sprintf("t=%-9s ", time.Since(tl.start).Round(10*time.Millisecond))+fmt.Sprintf(format, args...))
}

func (tl *timeline) report(b *strings.Builder) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	for _, l := range tl.lines {
		fmt.Fprintf(b, "  %s\n", l)
	}
}

// durations is a distribution of measured times.
type durations struct {
	mu sync.Mutex
	d  []time.Duration
}

func (ds *durations) add(d time.Duration) {
	ds.mu.Lock()
	ds.d = append(ds.d, d)
	ds.mu.Unlock()
}

// summary renders count, min, percentiles and max, and how many exceed
// limit (when limit > 0).
func (ds *durations) summary(limit time.Duration) string {
	ds.mu.Lock()
	d := slices.Clone(ds.d)
	ds.mu.Unlock()
	if len(d) == 0 {
		return "none"
	}
	slices.Sort(d)
	pct := func(p float64) time.Duration {
		return d[int(math.Ceil(p*float64(len(d))))-1]
	}
	r := func(x time.Duration) string { return x.Round(time.Millisecond).String() }
	s := fmt.Sprintf("n=%d min=%s p50=%s p90=%s p99=%s max=%s", len(d), r(d[0]), r(pct(0.5)), r(pct(0.9)), r(pct(0.99)), r(d[len(d)-1]))
	if limit > 0 {
		over := 0
		for _, x := range d {
			if x > limit {
				over++
			}
		}
		s += fmt.Sprintf(" over %s: %d", limit, over)
	}
	return s
}

// histogram renders how many durations fall into each bucket.
func (ds *durations) histogram(bounds ...time.Duration) string {
	ds.mu.Lock()
	defer ds.mu.Unlock()
	counts := make([]int, len(bounds)+1)
	for _, x := range ds.d {
		i, _ := slices.BinarySearch(bounds, x)
		counts[i]++
	}
	var parts []string
	lo := "0"
	for i, b := range bounds {
		parts = append(parts, fmt.Sprintf("%s-%s: %d", lo, b, counts[i]))
		lo = b.String()
	}
	parts = append(parts, fmt.Sprintf(">%s: %d", lo, counts[len(bounds)]))
	return strings.Join(parts, ", ")
}

// resourceSample is one reading of an agent process.
type resourceSample struct {
	at         time.Duration // since the soak started
	rssKiB     int64
	fds        int64
	goroutines int64 // -1 when /metrics could not be read
}

// series is every sample of one agent process (node + PID).
type series struct {
	node    string
	pid     int
	samples []resourceSample
}

// readProc reads VmRSS and the number of open fds of pid.
func readProc(pid int) (rssKiB, fds int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				rssKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	entries, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return 0, 0, err
	}
	return rssKiB, int64(len(entries)), nil
}

// goroutines reads go_goroutines from the node agent's /metrics.
func goroutines(n *lab.Node) int64 {
	fams, err := scrape(n)
	if err != nil {
		return -1
	}
	v, err := sample(fams, "go_goroutines", "", "")
	if err != nil {
		return -1
	}
	return int64(v)
}

// Leak criterion. A process is judged only on samples taken after a
// warm-up (caches filled, connections made) and only if those span at
// least leakMinSpan. The median of the last quarter of those samples is
// compared with the median of the first quarter: it is a leak when it grew
// by more than both the absolute and the relative bound. Medians of
// quarters, not first/last points, so one sample taken during an API
// outage (reconnect goroutines, buffers) does not decide. The least-squares
// slope per minute is reported with it.
const (
	leakWarmup  = 60 * time.Second
	leakMinSpan = 90 * time.Second
)

type leakBound struct {
	name string
	abs  float64 // absolute growth allowed
	rel  float64 // relative growth allowed
	get  func(resourceSample) int64
	unit string
}

var leakBounds = []leakBound{
	{"RSS", 8 * 1024, 0.25, func(s resourceSample) int64 { return s.rssKiB }, "KiB"},
	{"goroutines", 10, 0.10, func(s resourceSample) int64 { return s.goroutines }, ""},
	{"fds", 5, 0.10, func(s resourceSample) int64 { return s.fds }, ""},
}

// judge reports one line per resource, and the leaks found.
func (s *series) judge(b *strings.Builder) (leaks []string) {
	first := s.samples[0].at
	var judged []resourceSample
	for _, x := range s.samples {
		if x.at-first >= leakWarmup {
			judged = append(judged, x)
		}
	}
	span := time.Duration(0)
	if len(judged) > 1 {
		span = judged[len(judged)-1].at - judged[0].at
	}
	fmt.Fprintf(b, "  %s pid %d: %d samples over %s\n", s.node, s.pid, len(s.samples), (s.samples[len(s.samples)-1].at - first).Round(time.Second))
	for _, lb := range leakBounds {
		vals := values(s.samples, lb.get)
		if len(vals) == 0 {
			fmt.Fprintf(b, "    %-10s no readings\n", lb.name)
			continue
		}
		line := fmt.Sprintf("    %-10s first=%d%s last=%d%s max=%d%s", lb.name, vals[0].v, lb.unit, vals[len(vals)-1].v, lb.unit, maxOf(vals), lb.unit)
		jv := values(judged, lb.get)
		if span < leakMinSpan || len(jv) < 8 {
			fmt.Fprintf(b, "%s  (lived too short to judge a leak)\n", line)
			continue
		}
		q := len(jv) / 4
		early, late := median(jv[:q]), median(jv[len(jv)-q:])
		growth := late - early
		slope := slopePerMinute(jv)
		verdict := "flat"
		if growth > lb.abs && growth > lb.rel*early {
			verdict = "LEAK"
			leaks = append(leaks, fmt.Sprintf("%s pid %d %s grew from %.0f to %.0f%s (slope %.2f%s/min)", s.node, s.pid, lb.name, early, late, lb.unit, slope, lb.unit))
		}
		fmt.Fprintf(b, "%s  after warm-up: first-quarter median %.0f, last-quarter median %.0f, slope %+.2f%s/min: %s\n", line, early, late, slope, lb.unit, verdict)
	}
	return leaks
}

type point struct {
	at time.Duration
	v  int64
}

func values(ss []resourceSample, get func(resourceSample) int64) []point {
	var out []point
	for _, s := range ss {
		if v := get(s); v >= 0 {
			out = append(out, point{s.at, v})
		}
	}
	return out
}

func maxOf(ps []point) int64 {
	m := ps[0].v
	for _, p := range ps {
		m = max(m, p.v)
	}
	return m
}

func median(ps []point) float64 {
	v := make([]int64, len(ps))
	for i, p := range ps {
		v[i] = p.v
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return float64(v[len(v)/2])
	}
	return float64(v[len(v)/2-1]+v[len(v)/2]) / 2
}

// slopePerMinute is the least-squares slope of the points.
func slopePerMinute(ps []point) float64 {
	var sx, sy, sxx, sxy float64
	n := float64(len(ps))
	for _, p := range ps {
		x, y := p.at.Minutes(), float64(p.v)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / d
}
