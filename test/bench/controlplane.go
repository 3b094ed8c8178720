package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// ControlOptions bound the control-plane and footprint measurements.
type ControlOptions struct {
	Sizes    []int `json:"sizes"`    // peer counts booted from the cache (0 = idle agent)
	Repeats  int   `json:"repeats"`  // boots per size, sizes alternating
	Settle   Dur   `json:"settle"`   // wait after READY before reading RSS
	RSSAfter Dur   `json:"rssAfter"` // also read RSS this long after READY (0: skip)

	ChangePeers      int `json:"changePeers"`      // cluster size for the single-change and CPU measures
	ChangeRepeats    int `json:"changeRepeats"`    // single changes, alternately adding and removing a peer
	EventRewrites    int `json:"eventRewrites"`    // nodes-file rewrites for CPU per event
	EventsPerRewrite int `json:"eventsPerRewrite"` // peers changed by each rewrite
	IdleWindow       Dur `json:"idleWindow"`       // idle CPU baseline
	PluginRuns       int `json:"pluginRuns"`       // CNI plugin ADDs whose peak RSS is read

	// Budget bounds each phase when the agent is slow: a size is booted
	// again only while its boots so far took less than Budget, and no new
	// single change or rewrite starts once its phase has run for Budget
	// (each phase still measures at least once; add and remove at least
	// once each). Skipped runs are reported.
	Budget Dur `json:"budget"`
}

// agentWait bounds every wait for the agent (READY, a route change): far
// above any goal, so only a stuck or hopelessly slow agent reaches it.
const agentWait = 3 * time.Minute

// Dur is a time.Duration that JSON shows as "1m0s".
type Dur time.Duration

func (d Dur) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }
func (d *Dur) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Dur(v)
	return err
}

// BootResult is the boot from cache at one cluster size.
type BootResult struct {
	Peers          int  `json:"peers"`
	ExpectedRoutes int  `json:"expectedRoutes"`
	ReadyMs        Stat `json:"readyMs"` // agent start → READY=1
	// FloorMs is the kernel's part: iproute2 (ip -batch) installing the
	// same routes in a fresh namespace, right after each boot; OverFloor is
	// ReadyMs / FloorMs, boot by boot.
	FloorMs         Stat   `json:"floorMs"`
	OverFloor       Stat   `json:"overFloor"`
	RoutesAtReady   []int  `json:"routesAtReady"`   // kindnet routes present when READY=1 arrived
	ConflistAtReady []bool `json:"conflistAtReady"` // the CNI config existed when READY=1 arrived
	AllInPlace      bool   `json:"allInPlace"`      // every run had every route and the conflist at READY
	RSSMiB          Stat   `json:"rssMiB"`          // VmRSS after the settle time
	PeakMiB         Stat   `json:"peakMiB"`         // VmHWM after the settle time
	// After RSSAfter (one agent, the last repeat), once it is idle: VmRSS
	// and the CPU it used per minute since the settle time (the periodic
	// resync included: every minute by default).
	RSSLaterMiB  *float64 `json:"rssLaterMiB,omitempty"`
	IdleCPUSecPM *float64 `json:"idleCpuSecondsPerMinute,omitempty"`
}

// ChangeRun is one single-peer change through the nodes file.
type ChangeRun struct {
	Kind           string   `json:"kind"` // "add" or "remove"
	ConvergeMs     float64  `json:"convergeMs"`
	ProcessMs      float64  `json:"processMs"`
	ExpectedEvents int      `json:"expectedEvents"`
	RouteEvents    int      `json:"routeEvents"` // every kindnet route event in the window
	LoggedChanges  int      `json:"loggedChanges"`
	Reconciles     int      `json:"reconciles"`
	ReconcileWhy   []string `json:"reconcileWhy"` // why each reconcile ran (the agent's debug log)
}

// ChangeResult is the single-peer change at scale.
type ChangeResult struct {
	Peers          int         `json:"peers"`
	BootFromFileMs float64     `json:"bootFromFileMs"` // READY when booting from the nodes file (one run)
	ConvergeMs     Stat        `json:"convergeMs"`     // file replaced → last route event of the change
	ProcessMs      Stat        `json:"processMs"`      // agent opened the new file → last route event
	Runs           []ChangeRun `json:"runs"`
	MaxRouteEvents int         `json:"maxRouteEvents"`
	RSSMiB         float64     `json:"rssMiB"` // after the changes
	PeakMiB        float64     `json:"peakMiB"`
}

// EventsCPU is the CPU the agent spends per node event.
type EventsCPU struct {
	Peers            int     `json:"peers"`
	Rewrites         int     `json:"rewrites"`
	PerRewrite       int     `json:"perRewrite"`
	Events           int     `json:"events"`
	ElapsedSec       float64 `json:"elapsedSeconds"`
	CPUSec           float64 `json:"cpuSeconds"`
	IdleCPUSecPerSec float64 `json:"idleCpuSecondsPerSecond"`
	NetCPUSec        float64 `json:"netCpuSeconds"`
	PerThousand      float64 `json:"cpuSecondsPer1000Events"`
	RewriteMs        Stat    `json:"rewriteMs"` // file replaced → last route event of that rewrite
}

// ControlResult is the control-plane section of the report.
type ControlResult struct {
	Options   ControlOptions `json:"options"`
	Lab       string         `json:"lab"`
	WrapperMs Stat           `json:"wrapperMs"` // `ip netns exec NS true`, included in every boot time
	Boot      []BootResult   `json:"boot"`
	Change    *ChangeResult  `json:"change,omitempty"`
	Events    *EventsCPU     `json:"events,omitempty"`
	Errors    []string       `json:"errors,omitempty"`
	Skipped   []string       `json:"skipped,omitempty"` // runs left out to stay within the time budget
	// PluginPeakMiB is the peak RSS of kindnet's CNI plugin during ADD.
	PluginPeakMiB Stat    `json:"pluginPeakMiB"`
	Load          []Load  `json:"load"`
	Seconds       float64 `json:"seconds"`
}

// BootAt returns the boot result for a cluster size.
func (c *ControlResult) BootAt(peers int) (BootResult, bool) {
	for _, b := range c.Boot {
		if b.Peers == peers {
			return b, true
		}
	}
	return BootResult{}, false
}

const mib = 1024.0 // KiB per MiB

// RunControlPlane measures the agent without an API server: boot from the
// cache at each size, then one peer changed at a time at ChangePeers, then
// CPU per node event. All of it in namespaces of one bare lab.
func RunControlPlane(ctx context.Context, env Env, o ControlOptions) (res *ControlResult, err error) {
	start := time.Now()
	res = &ControlResult{Options: o}
	res.Load = append(res.Load, readLoad("control plane start"))
	l, err := lab.Bare(lab.Options{Kindnet: env.Kindnet, LabTool: env.LabTool, CNIBinDir: env.cniBinDir(), Log: env.Log})
	if err != nil {
		return res, err
	}
	defer func() {
		if derr := l.Down(); derr != nil {
			err = errors.Join(err, fmt.Errorf("lab down: %w", derr))
		}
	}()
	res.Lab = l.ID
	fail := func(what string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", what, err))
		env.Log("bench: %s: %v", what, err)
	}
	if res.WrapperMs, err = wrapperCost(ctx, l); err != nil {
		return res, err
	}
	if err := bootRuns(ctx, env, l, o, res, fail); err != nil {
		return res, err
	}
	if o.PluginRuns > 0 {
		peaks, err := pluginPeakRSS(ctx, env, l, o.PluginRuns)
		if err != nil {
			fail("CNI plugin ADD peak RSS", err)
		}
		res.PluginPeakMiB = Summarize("MiB", peaks)
		env.Log("bench: CNI plugin ADD peak RSS %s", fmtStat(res.PluginPeakMiB, "MiB", 1))
	}
	if o.ChangePeers > 0 {
		if err := changeRuns(ctx, env, l, o, res, fail); err != nil {
			fail("single change and events", err)
		}
	}
	res.Load = append(res.Load, readLoad("control plane end"))
	res.Seconds = time.Since(start).Seconds()
	return res, ctx.Err()
}

// wrapperCost times `ip netns exec NS true`: the lab starts every agent
// through it, so every boot time includes it once.
func wrapperCost(ctx context.Context, l *lab.Lab) (Stat, error) {
	ns, err := l.AddNS("wrap")
	if err != nil {
		return Stat{}, err
	}
	var ms []float64
	for range 10 {
		t := time.Now()
		if _, err := runInNS(ctx, 10*time.Second, ns, "true"); err != nil {
			return Stat{}, err
		}
		ms = append(ms, msSince(t))
	}
	return Summarize("ms", ms), nil
}

func msSince(t time.Time) float64 { return float64(time.Since(t).Microseconds()) / 1000 }

// bootSample is what one boot gave.
type bootSample struct {
	readyMs  float64
	floorMs  float64
	routes   int
	conflist bool
	mem      ProcMem
}

func bootRuns(ctx context.Context, env Env, l *lab.Lab, o ControlOptions, res *ControlResult, fail func(string, error)) error {
	samples := map[int][]bootSample{}
	type kept struct {
		h     *synthHost
		size  int
		ready time.Time
		cpu   float64   // CPU seconds used by cpuAt
		cpuAt time.Time // the settle time after READY
	}
	var keep []kept
	defer func() {
		for _, k := range keep {
			_ = k.h.close()
		}
	}()
	spent := map[int]time.Duration{}
	for rep := 0; rep < o.Repeats; rep++ {
		for _, size := range rotate(o.Sizes, rep) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if rep > 0 && o.Budget > 0 && spent[size] > time.Duration(o.Budget) {
				res.Skipped = append(res.Skipped, fmt.Sprintf("boot %d of %d at %d peers: the boots so far took %s, over the budget of %s",
					rep+1, o.Repeats, size, spent[size].Round(time.Second), time.Duration(o.Budget)))
				continue
			}
			t0 := time.Now()
			h, s, ready, err := bootOnce(ctx, env, l, size, rep, time.Duration(o.Settle))
			spent[size] += time.Since(t0)
			// The last boot of a size keeps running for the reading a while
			// after READY: the last repeat, or the last the budget allows.
			last := o.RSSAfter > 0 && (rep == o.Repeats-1 || o.Budget > 0 && spent[size] > time.Duration(o.Budget))
			if err != nil {
				fail(fmt.Sprintf("boot %d peers, run %d", size, rep+1), err)
				s = bootSample{readyMs: math.NaN()}
			}
			s.floorMs = math.NaN()
			if size > 0 && err == nil {
				if s.floorMs, err = routeFloor(ctx, env, l, size, rep); err != nil {
					fail(fmt.Sprintf("ip -batch of %d peers' routes, run %d", size, rep+1), err)
				}
			}
			samples[size] = append(samples[size], s)
			env.Log("bench: boot from cache, %d peers: READY after %.1f ms, %d routes, conflist %t, RSS %.1f MiB",
				size, s.readyMs, s.routes, s.conflist, float64(s.mem.RSSKiB)/mib)
			if h == nil {
				continue
			}
			if last && err == nil {
				cpu, _ := readCPUSeconds(h.pid())
				keep = append(keep, kept{h, size, ready, cpu, time.Now()})
			} else {
				_ = h.close()
			}
		}
	}
	for _, size := range o.Sizes {
		b := BootResult{Peers: size, ExpectedRoutes: 2 * size, AllInPlace: true}
		var ready, floor, rss, hwm []float64
		for _, s := range samples[size] {
			ready = append(ready, s.readyMs)
			floor = append(floor, s.floorMs)
			rss = append(rss, float64(s.mem.RSSKiB)/mib)
			hwm = append(hwm, float64(s.mem.HWMKiB)/mib)
			b.RoutesAtReady = append(b.RoutesAtReady, s.routes)
			b.ConflistAtReady = append(b.ConflistAtReady, s.conflist)
			// A failed boot is counted by ReadyMs.N; in place means every
			// boot that reached READY had everything.
			if !math.IsNaN(s.readyMs) && (s.routes != 2*size || !s.conflist) {
				b.AllInPlace = false
			}
		}
		b.ReadyMs, b.RSSMiB, b.PeakMiB = Summarize("ms", ready), Summarize("MiB", nonZero(rss)), Summarize("MiB", nonZero(hwm))
		b.FloorMs, b.OverFloor = Summarize("ms", floor), Summarize("×", Pairwise(ready, floor, Ratio))
		res.Boot = append(res.Boot, b)
	}
	// The kept agents have run since their READY; read them once each has
	// been up RSSAfter.
	for _, k := range keep {
		wait := time.Until(k.ready.Add(time.Duration(o.RSSAfter)))
		if wait > 0 {
			env.Log("bench: waiting %s to read the idle agents' memory a while after READY", wait.Round(time.Second))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(wait):
			}
		}
		// A periodic resync may be running: read once it is done.
		qerr := waitQuiet(ctx, k.h.pid())
		m, err := readProcMem(k.h.pid())
		cpu, cerr := readCPUSeconds(k.h.pid())
		if err = errors.Join(qerr, err, cerr); err != nil {
			fail(fmt.Sprintf("memory %s after READY at %d peers", time.Duration(o.RSSAfter), k.size), err)
			continue
		}
		for i := range res.Boot {
			if res.Boot[i].Peers == k.size {
				rss := float64(m.RSSKiB) / mib
				perMin := (cpu - k.cpu) / time.Since(k.cpuAt).Minutes()
				res.Boot[i].RSSLaterMiB, res.Boot[i].IdleCPUSecPM = &rss, &perMin
			}
		}
	}
	return nil
}

func nonZero(in []float64) []float64 {
	out := make([]float64, len(in))
	for i, v := range in {
		out[i] = v
		if v == 0 {
			out[i] = math.NaN()
		}
	}
	return out
}

// bootOnce boots one agent from a cache of size peers with the nodes file
// absent, and times start → READY=1. The returned host still runs.
func bootOnce(ctx context.Context, env Env, l *lab.Lab, size, rep int, settle time.Duration) (*synthHost, bootSample, time.Time, error) {
	var s bootSample
	suffix := fmt.Sprintf("boot%d-%d", size, rep)
	dir := filepath.Join(l.Dir, suffix)
	h, err := newSynthHost(l, suffix, env.cniBinDir(), filepath.Join(dir, "nodes-absent.yaml"), "")
	if err != nil {
		return nil, s, time.Time{}, err
	}
	if err := h.writeCache(synthView(size, nil)); err != nil {
		return h, s, time.Time{}, err
	}
	sock, err := listenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return h, s, time.Time{}, err
	}
	defer sock.Close()
	t0 := time.Now()
	if err := h.start(sock.Env()); err != nil {
		return h, s, time.Time{}, err
	}
	ready, err := sock.waitReady(ctx, agentWait, func() bool { return !h.alive() })
	if err != nil {
		return h, s, time.Time{}, fmt.Errorf("%w; agent log:\n%s", err, tailFile(h.n.LogPath(), 20))
	}
	s.readyMs = float64(ready.Sub(t0).Microseconds()) / 1000
	// What must be in place at READY: every route and the CNI config.
	if s.routes, err = h.countRoutes(); err != nil {
		return h, s, ready, err
	}
	_, cerr := os.Stat(h.conflistPath())
	s.conflist = cerr == nil
	select {
	case <-ctx.Done():
		return h, s, ready, ctx.Err()
	case <-time.After(settle):
	}
	s.mem, err = readProcMem(h.pid())
	return h, s, ready, err
}

// waitQuiet waits until the agent is idle — under 5% of a CPU over two
// half-second looks in a row — so that work it still does (a reconcile its
// own route deletion triggered, say) does not land in the next figure.
func waitQuiet(ctx context.Context, pid int) error {
	deadline := time.Now().Add(agentWait)
	prev, err := readCPUSeconds(pid)
	if err != nil {
		return err
	}
	calm := 0
	for calm < 2 {
		if time.Now().After(deadline) {
			return fmt.Errorf("the agent (pid %d) stayed busy for %s", pid, agentWait)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		cur, err := readCPUSeconds(pid)
		if err != nil {
			return err
		}
		if cur-prev < 0.025 {
			calm++
		} else {
			calm = 0
		}
		prev = cur
	}
	return nil
}

// routeFloor times iproute2 installing the routes an agent with size peers
// installs (ip -batch, one process), in a fresh namespace like the agent's:
// what the kernel alone needs, the floor under any boot time.
func routeFloor(ctx context.Context, env Env, l *lab.Lab, size, rep int) (float64, error) {
	suffix := fmt.Sprintf("floor%d-%d", size, rep)
	h, err := newSynthHost(l, suffix, env.cniBinDir(), "", "")
	if err != nil {
		return math.NaN(), err
	}
	defer h.close()
	batch := filepath.Join(h.dir, "routes.batch")
	if err := os.WriteFile(batch, []byte(routeBatch(size)), 0o600); err != nil {
		return math.NaN(), err
	}
	t0 := time.Now()
	cmd := exec.CommandContext(ctx, "ip", "-n", h.n.NS, "-batch", batch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return math.NaN(), fmt.Errorf("ip -batch: %v: %s", err, out)
	}
	ms := msSince(t0)
	if n, err := h.countRoutes(); err != nil || n != 2*size {
		return math.NaN(), fmt.Errorf("ip -batch left %d kindnet routes, want %d (%v)", n, 2*size, err)
	}
	return ms, nil
}

// routeBatch is the agent's routes for size peers as `ip -batch` input.
func routeBatch(size int) string {
	var b strings.Builder
	for i := 1; i <= size; i++ {
		c4, c6 := synthPodCIDRs(i)
		fmt.Fprintf(&b, "route add %s via %s proto %d\n", c4, synthAddr4(i, false), routes.Protocol)
		fmt.Fprintf(&b, "route add %s via %s proto %d\n", c6, synthAddr6(i), routes.Protocol)
	}
	return b.String()
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	n := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			if n++; n > lines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// changeRuns boots an agent from a nodes file of ChangePeers peers, then
// changes one peer at a time (adding, then removing, one extra node) and
// times each change to its routes; then it rewrites the file with many
// changed peers at a time to measure CPU per node event.
func changeRuns(ctx context.Context, env Env, l *lab.Lab, o ControlOptions, res *ControlResult, fail func(string, error)) error {
	peers := o.ChangePeers
	dir := filepath.Join(l.Dir, "change")
	nodesFile := filepath.Join(dir, "nodes.yaml")
	// The resync is moved out of the way so each figure is the work the
	// change caused, not a periodic resync that happened to fall inside.
	h, err := newSynthHost(l, "change", env.cniBinDir(), nodesFile, "1h")
	if err != nil {
		return err
	}
	defer h.close()
	nf := &lab.Lab{NodesFile: nodesFile} // only the nodes-file writer is used
	view := synthView(peers, nil)
	if err := nf.WriteNodesFile(nodeObjects(view)); err != nil {
		return err
	}
	sock, err := listenNotify(filepath.Join(dir, "notify.sock"))
	if err != nil {
		return err
	}
	defer sock.Close()
	t0 := time.Now()
	if err := h.start(sock.Env(), "KINDNET_LOG_LEVEL=debug"); err != nil {
		return err
	}
	ready, err := sock.waitReady(ctx, agentWait, func() bool { return !h.alive() })
	if err != nil {
		return fmt.Errorf("boot from a nodes file of %d peers: %w; agent log:\n%s", peers, err, tailFile(h.n.LogPath(), 20))
	}
	cr := &ChangeResult{Peers: peers, BootFromFileMs: float64(ready.Sub(t0).Microseconds()) / 1000}
	res.Change = cr
	if n, err := h.countRoutes(); err != nil || n != 2*peers {
		return fmt.Errorf("after booting from the nodes file: %d kindnet routes, want %d (%v)", n, 2*peers, err)
	}
	env.Log("bench: agent with %d peers from the nodes file READY after %.0f ms", peers, cr.BootFromFileMs)
	rw, err := h.watchRoutes()
	if err != nil {
		return err
	}
	defer rw.close()
	ow, err := watchOpens(dir, filepath.Base(nodesFile))
	if err != nil {
		return err
	}
	defer ow.close()
	// Let the agent pass at least one poll of the unchanged file and
	// finish whatever it still does.
	time.Sleep(1500 * time.Millisecond)
	if err := waitQuiet(ctx, h.pid()); err != nil {
		return err
	}

	extra := synthNode(peers+1, false)
	c4, c6 := synthPodCIDRs(peers + 1)
	var conv, proc []float64
	phase := time.Now()
	for rep := 0; rep < o.ChangeRepeats && ctx.Err() == nil; rep++ {
		if rep >= 2 && o.Budget > 0 && time.Since(phase) > time.Duration(o.Budget) {
			res.Skipped = append(res.Skipped, fmt.Sprintf("single changes %d to %d of %d: the changes so far took %s, over the budget of %s",
				rep+1, o.ChangeRepeats, o.ChangeRepeats, time.Since(phase).Round(time.Second), time.Duration(o.Budget)))
			break
		}
		run := ChangeRun{Kind: "add", ExpectedEvents: 2}
		v := synthView(peers, nil)
		if rep%2 == 0 {
			v.Peers = append(v.Peers, extra)
		} else {
			run.Kind = "remove"
		}
		logOff := fileSize(h.n.LogPath())
		t := time.Now()
		if err := nf.WriteNodesFile(nodeObjects(v)); err != nil {
			return err
		}
		done, err := rw.waitFor(ctx, t, []netip.Prefix{c4, c6}, run.Kind == "remove", agentWait)
		if err != nil {
			fail(fmt.Sprintf("single change %d (%s a peer at %d peers)", rep+1, run.Kind, peers), err)
			conv, proc = append(conv, math.NaN()), append(proc, math.NaN())
			continue
		}
		run.ConvergeMs = float64(done.Sub(t).Microseconds()) / 1000
		run.ProcessMs = math.NaN()
		if opened, ok := ow.firstAfter(t); ok && !opened.After(done) {
			run.ProcessMs = float64(done.Sub(opened).Microseconds()) / 1000
		}
		// One more poll interval, then until the agent is idle: whatever
		// else this change makes the agent do shows up here.
		time.Sleep(1200 * time.Millisecond)
		if err := waitQuiet(ctx, h.pid()); err != nil {
			return err
		}
		run.RouteEvents = len(rw.since(t))
		run.LoggedChanges, _ = countLogLines(h.n.LogPath(), logOff, isRouteChange)
		run.ReconcileWhy = reconcileWhys(h.n.LogPath(), logOff)
		run.Reconciles = len(run.ReconcileWhy)
		cr.Runs = append(cr.Runs, run)
		cr.MaxRouteEvents = max(cr.MaxRouteEvents, run.RouteEvents)
		conv, proc = append(conv, run.ConvergeMs), append(proc, run.ProcessMs)
		env.Log("bench: %s one peer at %d peers: routes after %.0f ms (%.1f ms after the agent read the file), %d route events, reconciles: %q",
			run.Kind, peers, run.ConvergeMs, run.ProcessMs, run.RouteEvents, run.ReconcileWhy)
	}
	cr.ConvergeMs, cr.ProcessMs = Summarize("ms", conv), Summarize("ms", proc)
	if m, err := readProcMem(h.pid()); err == nil {
		cr.RSSMiB, cr.PeakMiB = float64(m.RSSKiB)/mib, float64(m.HWMKiB)/mib
	}
	if o.EventRewrites > 0 {
		ev, err := eventsCPU(ctx, env, h, nf, rw, o, res)
		res.Events = ev
		if err != nil {
			return err
		}
	}
	return nil
}

// eventsCPU rewrites the nodes file EventRewrites times, each time moving
// EventsPerRewrite other peers to their alternative address (one route
// replaced per peer), waits for the routes each time, and charges the
// agent's CPU time, minus its idle rate, to those node events.
func eventsCPU(ctx context.Context, env Env, h *synthHost, nf *lab.Lab, rw *routeWatch, o ControlOptions, res *ControlResult) (*EventsCPU, error) {
	peers, k := o.ChangePeers, o.EventsPerRewrite
	if o.EventRewrites*k > peers {
		return nil, fmt.Errorf("%d rewrites of %d peers need more than %d peers", o.EventRewrites, k, peers)
	}
	ev := &EventsCPU{Peers: peers, Rewrites: o.EventRewrites, PerRewrite: k}
	// The file is back to the plain cluster (the last single change may
	// have left the extra peer in); wait for the agent to settle.
	if err := nf.WriteNodesFile(nodeObjects(synthView(peers, nil))); err != nil {
		return ev, err
	}
	time.Sleep(2500 * time.Millisecond)
	if err := waitQuiet(ctx, h.pid()); err != nil {
		return ev, err
	}
	c0, err := readCPUSeconds(h.pid())
	if err != nil {
		return ev, err
	}
	time.Sleep(time.Duration(o.IdleWindow))
	c1, err := readCPUSeconds(h.pid())
	if err != nil {
		return ev, err
	}
	ev.IdleCPUSecPerSec = (c1 - c0) / time.Duration(o.IdleWindow).Seconds()

	alt := map[int]bool{}
	var rewriteMs []float64
	start := time.Now()
	done := 0
	for r := 0; r < o.EventRewrites; r++ {
		if err := ctx.Err(); err != nil {
			return ev, err
		}
		if r > 0 && o.Budget > 0 && time.Since(start) > time.Duration(o.Budget) {
			res.Skipped = append(res.Skipped, fmt.Sprintf("rewrites %d to %d of %d for CPU per event: the rewrites so far took %s, over the budget of %s",
				r+1, o.EventRewrites, o.EventRewrites, time.Since(start).Round(time.Second), time.Duration(o.Budget)))
			break
		}
		var want []netip.Prefix
		for j := 0; j < k; j++ {
			idx := 1 + r*k + j
			alt[idx] = true
			c4, _ := synthPodCIDRs(idx)
			want = append(want, c4)
		}
		t := time.Now()
		if err := nf.WriteNodesFile(nodeObjects(synthView(peers, alt))); err != nil {
			return ev, err
		}
		last, err := rw.waitFor(ctx, t, want, false, agentWait)
		if err != nil {
			return ev, fmt.Errorf("rewrite %d of %d: %w", r+1, o.EventRewrites, err)
		}
		rewriteMs = append(rewriteMs, float64(last.Sub(t).Microseconds())/1000)
		done++
	}
	ev.ElapsedSec = time.Since(start).Seconds()
	c2, err := readCPUSeconds(h.pid())
	if err != nil {
		return ev, err
	}
	ev.Rewrites = done
	ev.Events = done * k
	ev.CPUSec = c2 - c1
	ev.NetCPUSec = ev.CPUSec - ev.IdleCPUSecPerSec*ev.ElapsedSec
	ev.PerThousand = ev.NetCPUSec / float64(ev.Events) * 1000
	ev.RewriteMs = Summarize("ms", rewriteMs)
	env.Log("bench: %d node events in %d rewrites at %d peers: %.2f CPU s (%.2f net of idle) → %.2f CPU s per 1,000 events",
		ev.Events, ev.Rewrites, peers, ev.CPUSec, ev.NetCPUSec, ev.PerThousand)
	return ev, nil
}
