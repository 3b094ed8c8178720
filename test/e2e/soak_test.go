package e2e

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// soakEnv holds the soak's duration; without it TestSoak skips. `make
// soak` sets it (SOAK=10m by default; CI runs SOAK=3m).
const soakEnv = "KINDNET_SOAK"

// Soak shape.
const (
	soakWorkers     = 6                // concurrent CNI ADD/DEL workers
	soakPodTarget   = 18               // churned pods alive at a time, besides one permanent pod per node
	soakKillEvery   = time.Minute      // one agent SIGKILLed and restarted this often
	soakOutage      = 30 * time.Second // each API server outage
	soakSampleEvery = 5 * time.Second  // agent RSS, goroutines, fds
)

// soakOutagesAt are the start times of the two API outages, as fractions
// of the soak.
var soakOutagesAt = []float64{0.1, 0.5}

// soak is one run: the lab, what it does to it, and what it found.
type soak struct {
	t     *testing.T
	kl    *kubeLab
	start time.Time
	v     *violations
	reg   *podRegistry
	pr    *prober
	ch    *churner
	ev    *nodeEvents
	want  *desiredRoutes
	tl    *timeline

	gate    *faultGate
	agentMu sync.Mutex // guards the lab's agent fields (restarts vs sampling)

	kills, outages atomic.Int64
	restartReady   durations // SIGKILL → /readyz of the new agent
	outageRecovery durations // API ready → a Node changed then routed by every agent
	down           durations // API stop requested → ready again
	steadyChecks   atomic.Int64
	ipamChecks     atomic.Int64
	resources      map[string]*series // node/pid → samples
	resourcesMu    sync.Mutex
	killedNode     *lab.Node
}

// TestSoak runs the 3-node lab with the real API server for KINDNET_SOAK
// and, all at once: pods added and removed continuously through the CNI
// plugin, Nodes created, re-addressed and deleted through the API, one
// agent SIGKILLed and restarted every minute, and the API server stopped
// for 30 s twice. It checks continuously that every live pod reaches every
// other live pod over IPv4 and IPv6, that the IPAM stores hold exactly the
// live pods' addresses and none twice, that every node routes the desired
// set at rest and within 1 s of a change, and it samples the agents' RSS,
// goroutines and open fds to judge leaks. It prints a summary and fails on
// any violation.
func TestSoak(t *testing.T) {
	raw := os.Getenv(soakEnv)
	if raw == "" {
		t.Skipf("the soak runs only when asked: %s=10m (or `sudo make soak SOAK=10m`)", soakEnv)
	}
	dur, err := time.ParseDuration(raw)
	if err != nil || dur < 2*time.Minute {
		t.Fatalf("%s=%q: want a duration of at least 2m (two API outages of 30 s and agent kills every minute need room)", soakEnv, raw)
	}
	kl := newKubeLab(t, kubeLabOptions{rbac: true, pods: 1})
	kl.waitRoutes(t, 30*time.Second, "routed to every lab node", nil)
	kl.checkPods(t)

	s := &soak{t: t, kl: kl, reg: newPodRegistry(), pr: newProber(), want: &desiredRoutes{fakes: map[int]fakeNode{}},
		resources: map[string]*series{}, killedNode: kl.Nodes[len(kl.Nodes)-1]}
	t.Cleanup(s.pr.closeAll)
	s.start = time.Now()
	s.v = newViolations(s.start)
	s.tl = &timeline{start: s.start}
	s.gate = newFaultGate()
	for _, n := range kl.Nodes {
		for _, p := range n.Pods {
			sp := &soakPod{Pod: p, permanent: true}
			if err := s.pr.add(sp); err != nil {
				t.Fatal(err)
			}
			s.reg.set(sp, podLive)
		}
	}
	var readers []*routeReader
	for _, n := range kl.Nodes {
		r, err := newRouteReader(n)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(r.h.Close)
		readers = append(readers, r)
	}
	s.ch = &churner{l: kl.Lab, reg: s.reg, pr: s.pr, v: s.v, target: soakPodTarget}
	s.ev = &nodeEvents{kl: kl, readers: readers, want: s.want, gate: s.gate, v: s.v, timeline: s.tl}

	t.Logf("soak: %s from %s; agent of %s is killed every %s; API outages at %v of the run",
		dur, s.start.Format(time.TimeOnly), s.killedNode.Name, soakKillEvery, soakOutagesAt)
	ctx, stop := context.WithTimeout(context.Background(), dur)
	defer stop()
	var wg sync.WaitGroup
	for w := range soakWorkers {
		wg.Go(func() { s.ch.run(ctx, w) })
	}
	wg.Go(func() { s.ev.run(ctx) })
	wg.Go(func() { s.probeLoop(ctx) })
	wg.Go(func() { s.ipamLoop(ctx) })
	wg.Go(func() { steadyCheck(ctx, kl, readers, s.want, s.v, &s.steadyChecks) })
	wg.Go(func() { s.sampleLoop(ctx) })
	wg.Go(func() { s.killLoop(ctx) })
	wg.Go(func() { s.outageLoop(ctx, dur) })
	wg.Wait()
	elapsed := time.Since(s.start)

	s.finish()
	summary := s.summary(elapsed)
	t.Log("\n" + summary)
	if n := s.v.total(); n > 0 {
		t.Errorf("soak found %d violations (see the summary above)", n)
		s.keepLogs()
	}
}

// soakLogsEnv names a directory to copy the agents' logs to when the soak
// fails (the lab's own directory is removed with it).
const soakLogsEnv = "KINDNET_SOAK_LOGS"

func (s *soak) keepLogs() {
	dir := os.Getenv(soakLogsEnv)
	if dir == "" {
		s.t.Logf("set %s=DIR to keep the agents' full logs of a failed soak", soakLogsEnv)
		return
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		s.t.Log(err)
		return
	}
	for _, n := range s.kl.Nodes {
		if b, err := os.ReadFile(n.LogPath()); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name+".log"), b, 0o600)
		}
	}
	s.t.Logf("agents' logs kept in %s", dir)
}

// probeLoop runs ping rounds back to back until the soak ends.
func (s *soak) probeLoop(ctx context.Context) {
	for ctx.Err() == nil {
		for _, f := range s.pr.round(ctx, s.reg) {
			s.v.add("pod unreachable", "%s", f)
		}
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ipamLoop compares the IPAM stores with the live pods every second.
func (s *soak) ipamLoop(ctx context.Context) {
	for ctx.Err() == nil {
		for _, p := range checkIPAM(s.kl.Lab, s.reg, false) {
			s.v.add("IPAM", "%s", p)
		}
		s.ipamChecks.Add(1)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// killLoop SIGKILLs the same agent every soakKillEvery and starts it
// again (always the same one: the other agents then live for the whole
// soak, which is what judges their leaks). The restart ends when the new
// agent answers /readyz: bootstrapped and synced with the API (during an
// outage, only after it).
func (s *soak) killLoop(ctx context.Context) {
	n := s.killedNode
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(s.start.Add(time.Duration(s.kills.Load()+1) * soakKillEvery))):
		}
		if ctx.Err() != nil {
			return
		}
		s.gate.beginFault()
		start := time.Now()
		s.agentMu.Lock()
		old := n.AgentPID
		err := s.kl.RestartAgent(n, syscall.SIGKILL)
		pid := n.AgentPID
		s.agentMu.Unlock()
		s.kills.Add(1)
		s.tl.add("agent of %s SIGKILLed (pid %d) and started again (pid %d)", n.Name, old, pid)
		if err != nil {
			s.v.add("agent restart", "%s: %v", n.Name, err)
		} else if err := waitReady(n, 2*time.Minute); err != nil {
			s.v.add("agent restart", "%s: not ready again: %v", n.Name, err)
		} else {
			d := time.Since(start)
			s.restartReady.add(d)
			s.tl.add("agent of %s ready again after %s", n.Name, d.Round(time.Millisecond))
		}
		s.gate.endFault()
	}
}

// outageLoop stops the API server for soakOutage at each soakOutagesAt.
// When it is back, a canary Node is created: the time until every agent
// routes it is how long the agents took to follow the API again (their
// watches back off up to 15-30 s while it is down). Node changes resume
// only then, so the 1 s bound is measured against agents that follow the
// API.
func (s *soak) outageLoop(ctx context.Context, dur time.Duration) {
	for _, frac := range soakOutagesAt {
		at := s.start.Add(time.Duration(frac * float64(dur)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Until(at)):
		}
		s.gate.beginFault()
		s.outages.Add(1)
		stopped := time.Now()
		s.tl.add("API server stopping")
		if err := s.kl.api.StopAPIServer(); err != nil {
			s.v.add("API outage", "stop: %v", err)
		}
		s.tl.add("API server stopped")
		// soakOutage from the stop request, not cut short by the soak's
		// end: the API must come back.
		time.Sleep(time.Until(stopped.Add(soakOutage)))
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		err := s.kl.api.StartAPIServer(sctx)
		cancel()
		if err != nil {
			s.v.add("API outage", "start again: %v", err)
		}
		s.down.add(time.Since(stopped))
		s.tl.add("API server ready again")
		// The canary Node is created after the first outage and
		// re-addressed after the next: either is a change every agent
		// must see. It is not bounded by the 1 s: the agents' watches
		// are still backing off.
		op := "create"
		s.want.mu.Lock()
		if _, ok := s.want.fakes[canarySlot]; ok {
			op = "readdress"
		}
		s.want.mu.Unlock()
		if d, ok := s.ev.do(op, canarySlot, false); ok {
			s.outageRecovery.add(d)
			s.tl.add("every agent routes the canary Node changed after the outage (%s): %s", op, d.Round(time.Millisecond))
		}
		s.gate.endFault()
	}
}

// sampleLoop reads every agent's RSS, open fds and goroutines.
func (s *soak) sampleLoop(ctx context.Context) {
	for {
		for _, n := range s.kl.Nodes {
			s.agentMu.Lock()
			pid := n.AgentPID
			s.agentMu.Unlock()
			if pid == 0 {
				continue
			}
			rss, fds, err := readProc(pid)
			if err != nil {
				continue // restarted between the two reads
			}
			g := goroutines(n)
			key := fmt.Sprintf("%s/%d", n.Name, pid)
			s.resourcesMu.Lock()
			sr := s.resources[key]
			if sr == nil {
				sr = &series{node: n.Name, pid: pid}
				s.resources[key] = sr
			}
			sr.samples = append(sr.samples, resourceSample{at: time.Since(s.start), rssKiB: rss, fds: fds, goroutines: g})
			s.resourcesMu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(soakSampleEvery):
		}
	}
}

// finish checks the end state with nothing in flight: the full matrix,
// IPAM stores equal to the live pods, routes equal to the desired set; then
// removes every churned pod and fake Node and checks that the stores hold
// only the permanent pods and the routes only the lab nodes.
func (s *soak) finish() {
	ctx := context.Background()
	for _, f := range s.pr.round(ctx, s.reg) {
		s.v.add("end: pod unreachable", "%s", f)
	}
	for _, p := range checkIPAM(s.kl.Lab, s.reg, true) {
		s.v.add("end: IPAM", "%s", p)
	}
	for _, r := range s.ev.readers {
		got, err := r.read()
		if want := s.want.forNode(s.kl, r.node); err != nil || !maps.Equal(got, want) {
			s.v.add("end: routes", "%s: %v, want %v (%v)", r.node.Name, got, want, err)
		}
	}
	for {
		p := s.reg.pickVictim()
		if p == nil {
			break
		}
		s.pr.remove(p)
		if err := s.kl.UnwirePod(ctx, p.Pod); err != nil {
			s.v.add("end: pod DEL failed", "%v", err)
			continue
		}
		s.reg.drop(p)
	}
	for _, p := range checkIPAM(s.kl.Lab, s.reg, true) {
		s.v.add("end: IPAM after removing the churned pods", "%s", p)
	}
	s.want.mu.Lock()
	fakes := maps.Clone(s.want.fakes)
	s.want.mu.Unlock()
	for _, f := range fakes {
		if err := s.kl.admin.CoreV1().Nodes().Delete(ctx, f.name(), metav1.DeleteOptions{}); err != nil {
			s.v.add("end: delete fake Node", "%s: %v", f.name(), err)
		}
	}
	// Only the lab nodes are left.
	deadline := time.Now().Add(30 * time.Second)
	for _, r := range s.ev.readers {
		want := s.kl.labRoutes(r.node, nil)
		for {
			got, err := r.read()
			if err == nil && maps.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				s.v.add("end: routes after deleting the fake Nodes", "%s: %v, want %v (%v)", r.node.Name, got, want, err)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func (s *soak) summary(elapsed time.Duration) string {
	var b strings.Builder
	ch, ev := s.ch, s.ev
	secs := elapsed.Seconds()
	avg := func(total, n int64) time.Duration {
		if n == 0 {
			return 0
		}
		return time.Duration(total / n).Round(time.Millisecond)
	}
	fmt.Fprintf(&b, "==== kindnet soak summary (%s, %d nodes, real kube-apiserver) ====\n", elapsed.Round(time.Second), len(s.kl.Nodes))
	fmt.Fprintf(&b, "pods set up (CNI ADD):      %d (%.2f/s, mean %s each, %d workers)\n", ch.adds.Load(), float64(ch.adds.Load())/secs, avg(ch.addNanos.Load(), ch.adds.Load()), soakWorkers)
	fmt.Fprintf(&b, "pods torn down (CNI DEL):   %d (%.2f/s, mean %s each; the churned pods left at the end are removed after)\n", ch.dels.Load(), float64(ch.dels.Load())/secs, avg(ch.delNanos.Load(), ch.dels.Load()))
	fmt.Fprintf(&b, "CNI operations in all:      %.2f/s (ADD+DEL) ; failures ADD %d DEL %d\n", float64(ch.adds.Load()+ch.dels.Load())/secs, ch.addFailures.Load(), ch.delFailures.Load())
	fmt.Fprintf(&b, "Node events through the API: %d created, %d re-addressed, %d deleted\n", ev.created.Load(), ev.readdressed.Load(), ev.deleted.Load())
	fmt.Fprintf(&b, "agent SIGKILL+restart:      %d (%s), ready again: %s\n", s.kills.Load(), s.killedNode.Name, s.restartReady.summary(0))
	fmt.Fprintf(&b, "API server outages:         %d; unavailable from stop request to ready again: %s\n", s.outages.Load(), s.down.summary(0))
	fmt.Fprintf(&b, "  a Node changed once the API is back is routed by every agent after: %s (watch back-off, not bounded)\n", s.outageRecovery.summary(0))
	fmt.Fprintf(&b, "ping rounds:                %d; pair checks %d (max %d pods at once); echo requests %d, replies %d, send errors %d\n",
		s.pr.rounds.Load(), s.pr.pairsChecked.Load(), s.pr.maxPods.Load(), s.pr.sent.Load(), s.pr.answered.Load(), s.pr.sendErrors.Load())
	fmt.Fprintf(&b, "  pairs unanswered after 3 tries: %d, of which excused because a pod entered its DEL: %d\n", s.pr.unanswered.Load(), s.pr.excused.Load())
	for _, n := range s.kl.Nodes {
		if fams, err := scrape(n); err == nil {
			r, _ := sample(fams, "kindnet_reconcile_runs_total", "reconciler", "routes")
			fmt.Fprintf(&b, "  agent of %s (this process): %.0f routes reconciles\n", n.Name, r)
		}
	}
	fmt.Fprintf(&b, "IPAM checks:                %d ; route checks at rest: %d\n", s.ipamChecks.Load(), s.steadyChecks.Load())
	fmt.Fprintf(&b, "route convergence per change (slowest node): %s\n", ev.convergence.summary(convergenceBound))
	fmt.Fprintf(&b, "  histogram: %s\n", ev.convergence.histogram(50*time.Millisecond, 100*time.Millisecond, 200*time.Millisecond, 500*time.Millisecond, time.Second))
	fmt.Fprintf(&b, "route convergence per change and node:       %s\n", ev.perNode.summary(convergenceBound))
	b.WriteString("agent resources (leak: last-quarter median above first-quarter median by more than RSS 8 MiB and 25%, goroutines 10 and 10%, fds 5 and 10%, after 60 s warm-up):\n")
	s.resourcesMu.Lock()
	keys := make([]string, 0, len(s.resources))
	for k := range s.resources {
		keys = append(keys, k)
	}
	s.resourcesMu.Unlock()
	sortByFirstSample(keys, s.resources)
	for _, k := range keys {
		for _, l := range s.resources[k].judge(&b) {
			s.v.add("leak", "%s", l)
		}
	}
	b.WriteString("agents' warnings and errors (all logs of the run, by message; outages cause some):\n")
	for _, l := range logLevels(s.kl.Nodes) {
		fmt.Fprintf(&b, "  %s\n", l)
	}
	b.WriteString("timeline (faults, and changes slower than the bound):\n")
	s.tl.report(&b)
	fmt.Fprintf(&b, "violations: %d\n", s.v.total())
	s.v.report(&b)
	return b.String()
}

var logLine = regexp.MustCompile(`level=(WARN|ERROR) msg=("(?:[^"\\]|\\.)*"|\S+)`)

// logLevels counts the agents' WARN and ERROR lines by level and message.
func logLevels(nodes []*lab.Node) []string {
	counts := map[string]int{}
	for _, n := range nodes {
		b, _ := os.ReadFile(n.LogPath())
		for _, m := range logLine.FindAllStringSubmatch(string(b), -1) {
			counts[m[1]+" "+m[2]]++
		}
	}
	keys := slices.Sorted(maps.Keys(counts))
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, fmt.Sprintf("%5d %s", counts[k], k))
	}
	return out
}

// sortByFirstSample orders series by node, then by when they started.
func sortByFirstSample(keys []string, m map[string]*series) {
	slices.SortFunc(keys, func(a, b string) int {
		x, y := m[a], m[b]
		if c := strings.Compare(x.node, y.node); c != 0 {
			return c
		}
		return cmp.Compare(x.samples[0].at, y.samples[0].at)
	})
}
