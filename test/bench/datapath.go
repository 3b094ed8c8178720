package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// DatapathOptions bound the datapath measurements.
type DatapathOptions struct {
	Rounds       int           `json:"rounds"`       // each measurement is repeated this many times, alternating paths
	Seconds      int           `json:"seconds"`      // iperf3 -t
	Omit         int           `json:"omit"`         // iperf3 -O: warm-up seconds not counted
	PingCount    int           `json:"pingCount"`    // echo requests per RTT run
	PingInterval time.Duration `json:"pingInterval"` // between echo requests
}

// Path keys: the four ways traffic goes in the lab.
const (
	PathNode     = "node"     // node namespace to node namespace: the limit
	PathKindnet  = "kindnet"  // pod to pod across nodes via kindnet's routes
	PathSameNode = "samenode" // pod to pod on one node
	PathVXLAN    = "vxlan"    // pod to pod across nodes over a VXLAN overlay
)

// Metric keys.
const (
	MetricTCP1  = "tcp1"  // TCP throughput, 1 stream, Gbit/s
	MetricTCP4  = "tcp4"  // TCP throughput, 4 streams, Gbit/s
	MetricRTT   = "rtt"   // median ICMP echo RTT of a run, µs
	MetricRTT99 = "rtt99" // 99th percentile RTT of a run, µs
)

// PathInfo says where a path goes.
type PathInfo struct {
	Key          string     `json:"key"`
	Label        string     `json:"label"`
	From         string     `json:"from"`
	To           string     `json:"to"`
	Addr4        netip.Addr `json:"addr4"`
	Addr6        netip.Addr `json:"addr6"`
	fromNS, toNS string
}

// Series is one metric of one path and family over the rounds.
type Series struct {
	Path   string `json:"path"`
	Family string `json:"family"`
	Metric string `json:"metric"`
	Stat   Stat   `json:"stat"`
	Rounds Floats `json:"rounds"` // per round, null where the run failed
}

// Comparison is A against B, computed round by round from runs made
// back to back in the same round: a ratio A/B or a difference A−B.
type Comparison struct {
	A      string `json:"a"`
	B      string `json:"b"`
	Family string `json:"family"`
	Metric string `json:"metric"`
	Kind   string `json:"kind"` // "ratio" or "difference"
	Stat   Stat   `json:"stat"`
}

// VXLANStatus says whether the overlay comparison could be built.
type VXLANStatus struct {
	Available bool   `json:"available"`
	Note      string `json:"note,omitempty"`
}

// DatapathResult is the datapath section of the report.
type DatapathResult struct {
	Options     DatapathOptions `json:"options"`
	Lab         string          `json:"lab"`
	VXLAN       VXLANStatus     `json:"vxlan"`
	Paths       []PathInfo      `json:"paths"`
	Series      []Series        `json:"series"`
	Comparisons []Comparison    `json:"comparisons"`
	Errors      []string        `json:"errors,omitempty"`
	Load        []Load          `json:"load"`
	Seconds     float64         `json:"seconds"`
	err         string          // the section's error, for goal reasons
}

// Find returns the series of a path, family and metric.
func (d *DatapathResult) Find(path, family, metric string) (Series, bool) {
	for _, s := range d.Series {
		if s.Path == path && s.Family == family && s.Metric == metric {
			return s, true
		}
	}
	return Series{}, false
}

// Compare returns the comparison of A over B.
func (d *DatapathResult) Compare(a, b, family, metric string) (Comparison, bool) {
	for _, c := range d.Comparisons {
		if c.A == a && c.B == b && c.Family == family && c.Metric == metric {
			return c, true
		}
	}
	return Comparison{}, false
}

// Families in the order they are reported.
var Families = []string{"IPv4", "IPv6"}

// RunDatapath builds a two-node lab with two pods per node and, when the
// kernel has VXLAN, an overlay with one pod per node; then it measures
// every path in rounds, the paths alternating inside each round.
func RunDatapath(ctx context.Context, env Env, o DatapathOptions) (res *DatapathResult, err error) {
	start := time.Now()
	res = &DatapathResult{Options: o}
	res.Load = append(res.Load, readLoad("datapath start"))
	l, err := lab.Up(ctx, lab.Options{Nodes: 2, PodsPerNode: 2, Kindnet: env.Kindnet, LabTool: env.LabTool,
		CNIPlugin: "ptp", CNIBinDir: env.cniBinDir(), Log: env.Log})
	if err != nil {
		return res, fmt.Errorf("lab up: %w", err)
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab down: %w", derr))
		}
	}()
	res.Lab = l.ID
	n1, n2 := l.Nodes[0], l.Nodes[1]
	res.Paths = []PathInfo{
		{Key: PathNode, Label: "node ↔ node", fromNS: n1.NS, toNS: n2.NS, From: n1.Name, To: n2.Name, Addr4: n2.IPv4, Addr6: n2.IPv6},
		{Key: PathKindnet, Label: "pod ↔ pod, across nodes, kindnet", fromNS: n1.Pods[0].NS, toNS: n2.Pods[0].NS,
			From: n1.Name + "/" + n1.Pods[0].Name, To: n2.Name + "/" + n2.Pods[0].Name, Addr4: n2.Pods[0].IPv4, Addr6: n2.Pods[0].IPv6},
		{Key: PathSameNode, Label: "pod ↔ pod, same node", fromNS: n1.Pods[0].NS, toNS: n1.Pods[1].NS,
			From: n1.Name + "/" + n1.Pods[0].Name, To: n1.Name + "/" + n1.Pods[1].Name, Addr4: n1.Pods[1].IPv4, Addr6: n1.Pods[1].IPv6},
	}
	if verr := l.VXLANSupported(); verr != nil {
		res.VXLAN.Note = "this kernel cannot create VXLAN devices, so there is no overlay to compare with: " + verr.Error()
		env.Log("bench: %s", res.VXLAN.Note)
	} else {
		ov, err := l.AddVXLANOverlay()
		if err != nil {
			return res, err
		}
		a, err := ov.AddPod(ctx, n1, "ov1")
		if err != nil {
			return res, err
		}
		b, err := ov.AddPod(ctx, n2, "ov1")
		if err != nil {
			return res, err
		}
		res.VXLAN = VXLANStatus{Available: true, Note: "flannel-style: flannel.1 (VNI 1, UDP 8472, IPv4 underlay, MTU 1450) and flannel-v6.1 (IPv6 underlay, MTU 1430); pods wired by the same reference ptp plugin with MTU 1450"}
		res.Paths = append(res.Paths, PathInfo{Key: PathVXLAN, Label: "pod ↔ pod, across nodes, VXLAN overlay", fromNS: a.NS, toNS: b.NS,
			From: n1.Name + "/" + a.Name, To: n2.Name + "/" + b.Name, Addr4: b.IPv4, Addr6: b.IPv6})
	}
	for _, p := range res.Paths {
		srv, err := startInNS(p.toNS, filepath.Join(l.Dir, "iperf3-"+p.Key+".log"), "iperf3", "-s", "-p", iperfPort)
		if err != nil {
			return res, err
		}
		defer srv.stop()
	}
	if err := warmUp(ctx, res.Paths); err != nil {
		return res, err
	}
	measureRounds(ctx, env, o, res)
	res.Load = append(res.Load, readLoad("datapath end"))
	res.Seconds = time.Since(start).Seconds()
	return res, ctx.Err()
}

// warmUp makes every path answer before anything is timed: neighbour
// entries, IPv6 addresses still settling, iperf3 servers starting; one
// short untimed iperf3 run per path and family checks the servers.
func warmUp(ctx context.Context, paths []PathInfo) error {
	for _, p := range paths {
		for _, dst := range []netip.Addr{p.Addr4, p.Addr6} {
			var err error
			for range 10 {
				if err = lab.Ping(ctx, p.fromNS, dst); err == nil {
					break
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
			if err != nil {
				return fmt.Errorf("path %s does not answer ping before the benchmark: %w", p.Key, err)
			}
			for try := 0; ; try++ {
				if _, err = iperf(ctx, p.fromNS, dst, 1, 0, 1); err == nil || try == 5 || ctx.Err() != nil {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err != nil {
				return fmt.Errorf("path %s: iperf3 fails before the benchmark: %w", p.Key, err)
			}
		}
	}
	return nil
}

type seriesKey struct{ path, family, metric string }

func measureRounds(ctx context.Context, env Env, o DatapathOptions, res *DatapathResult) {
	vals := map[seriesKey][]float64{}
	record := func(k seriesKey, round int, v float64) {
		s := vals[k]
		for len(s) <= round {
			s = append(s, math.NaN())
		}
		s[round] = v
		vals[k] = s
	}
	fail := func(what string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
		env.Log("bench: %s: %v", what, err)
	}
	for round := 0; round < o.Rounds && ctx.Err() == nil; round++ {
		ld := readLoad(fmt.Sprintf("round %d", round+1))
		res.Load = append(res.Load, ld)
		env.Log("bench: datapath round %d of %d (load %.2f)", round+1, o.Rounds, ld.Average[0])
		// Rotate the order of the paths every round, so no path always
		// runs first (or right after the same neighbour).
		order := rotate(res.Paths, round)
		for fi, fam := range Families {
			for _, metric := range []string{MetricTCP1, MetricTCP4, MetricRTT} {
				for _, p := range order {
					if ctx.Err() != nil {
						return
					}
					dst := p.Addr4
					if fi == 1 {
						dst = p.Addr6
					}
					what := fmt.Sprintf("round %d %s %s %s", round+1, p.Key, fam, metric)
					switch metric {
					case MetricTCP1, MetricTCP4:
						streams := 1
						if metric == MetricTCP4 {
							streams = 4
						}
						g, err := iperf(ctx, p.fromNS, dst, o.Seconds, o.Omit, streams)
						if err != nil {
							fail(what, err)
							g = math.NaN()
						}
						record(seriesKey{p.Key, fam, metric}, round, g)
					case MetricRTT:
						r, err := ping(ctx, p.fromNS, dst, o.PingCount, o.PingInterval)
						if err != nil {
							fail(what, err)
							r.Median, r.P99 = math.NaN(), math.NaN()
						}
						record(seriesKey{p.Key, fam, MetricRTT}, round, r.Median)
						record(seriesKey{p.Key, fam, MetricRTT99}, round, r.P99)
					}
				}
			}
		}
	}
	for _, fam := range Families {
		for _, p := range res.Paths {
			for _, m := range []string{MetricTCP1, MetricTCP4, MetricRTT, MetricRTT99} {
				r := vals[seriesKey{p.Key, fam, m}]
				res.Series = append(res.Series, Series{Path: p.Key, Family: fam, Metric: m, Rounds: r, Stat: Summarize(metricUnit(m), r)})
			}
		}
	}
	res.Comparisons = compare(res, vals)
}

func rotate[T any](s []T, by int) []T {
	if len(s) == 0 {
		return s
	}
	by %= len(s)
	return append(append([]T{}, s[by:]...), s[:by]...)
}

func metricUnit(m string) string {
	if m == MetricRTT || m == MetricRTT99 {
		return "µs"
	}
	return "Gbit/s"
}

// compare pairs the rounds of two paths: throughput as a ratio, RTT as a
// difference in microseconds.
func compare(res *DatapathResult, vals map[seriesKey][]float64) []Comparison {
	pairs := [][2]string{{PathKindnet, PathNode}, {PathKindnet, PathVXLAN}, {PathVXLAN, PathNode}, {PathSameNode, PathNode}}
	var out []Comparison
	for _, fam := range Families {
		for _, pr := range pairs {
			for _, m := range []string{MetricTCP1, MetricTCP4, MetricRTT} {
				a, aok := vals[seriesKey{pr[0], fam, m}]
				b, bok := vals[seriesKey{pr[1], fam, m}]
				if !aok || !bok {
					continue
				}
				c := Comparison{A: pr[0], B: pr[1], Family: fam, Metric: m, Kind: "ratio"}
				if m == MetricRTT {
					c.Kind = "difference"
					c.Stat = Summarize("µs", Pairwise(a, b, Diff))
				} else {
					c.Stat = Summarize("×", Pairwise(a, b, Ratio))
				}
				out = append(out, c)
			}
		}
	}
	return out
}
