package e2e

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// routeReader lists a node's kindnet routes over netlink, from a handle
// opened inside the node's namespace once: polling every few milliseconds
// costs no process.
type routeReader struct {
	node *lab.Node
	h    *netlink.Handle
}

func newRouteReader(n *lab.Node) (*routeReader, error) {
	ns, err := netns.GetFromName(n.NS)
	if err != nil {
		return nil, fmt.Errorf("open netns of %s: %w", n.Name, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", n.Name, err)
	}
	return &routeReader{node: n, h: h}, nil
}

// read returns the node's kindnet routes as destination → next hop.
func (r *routeReader) read() (map[string]string, error) {
	out := map[string]string{}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := r.h.RouteListFiltered(fam, &netlink.Route{Protocol: routes.Protocol}, netlink.RT_FILTER_PROTOCOL)
		if err != nil {
			return nil, fmt.Errorf("list routes of %s: %w", r.node.Name, err)
		}
		for _, rt := range rs {
			if rt.Dst == nil {
				out["default"] = ipString(rt.Gw)
				continue
			}
			out[rt.Dst.String()] = ipString(rt.Gw)
		}
	}
	return out, nil
}

func ipString(ip net.IP) string {
	if ip == nil {
		return ""
	}
	return ip.String()
}

// fakeNode is a Node of the soak with no machine behind it: created,
// re-addressed and deleted through the API to make the agents change
// routes. Slot s always has the same podCIDRs; its addresses change.
type fakeNode struct {
	slot     int
	ip4, ip6 string
	gen      int
}

func (f fakeNode) name() string  { return fmt.Sprintf("soak-fake%d", f.slot) }
func (f fakeNode) cidr4() string { return fmt.Sprintf("10.244.%d.0/24", 100+f.slot) }
func (f fakeNode) cidr6() string { return fmt.Sprintf("fd00:10:244:%x::/64", 0x80+f.slot) }

// readdress picks the slot's next pair of addresses on the lab subnet.
func (f *fakeNode) readdress() {
	f.gen++
	f.ip4 = fmt.Sprintf("192.168.100.%d", 100+f.slot*10+f.gen%10)
	f.ip6 = fmt.Sprintf("fd00:100::1:%x", f.slot*16+f.gen%16)
}

// fakeSlots are the slots the Node changes use; canarySlot is one more,
// used only after an API outage to see when every agent follows the API
// again.
const (
	fakeSlots  = 8
	canarySlot = fakeSlots
)

// desiredRoutes is what every node must route: the other lab nodes and
// every fake node. inflight marks a change whose convergence is being
// measured; gen changes with every change.
type desiredRoutes struct {
	mu       sync.Mutex
	fakes    map[int]fakeNode
	gens     [fakeSlots + 1]int // last address generation of each slot
	inflight bool
	gen      int
}

func (d *desiredRoutes) forNode(kl *kubeLab, n *lab.Node) map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	extra := map[string]string{}
	for _, f := range d.fakes {
		extra[f.cidr4()] = f.ip4
		extra[f.cidr6()] = f.ip6
	}
	return kl.labRoutes(n, extra)
}

// faultGate keeps Node changes and faults apart: a change starts only when
// no fault (agent restart, API outage) is under way, since a change cannot
// be made while the API is down and an agent that is not running cannot
// converge; a fault waits only for the change in flight, if any (at most
// its convergence), so faults start on time and may overlap each other.
type faultGate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	faults   int
	changing bool
}

func newFaultGate() *faultGate {
	g := &faultGate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *faultGate) beginFault() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.changing {
		g.cond.Wait()
	}
	g.faults++
}

func (g *faultGate) endFault() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults--
	g.cond.Broadcast()
}

func (g *faultGate) beginChange() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.faults > 0 {
		g.cond.Wait()
	}
	g.changing = true
}

func (g *faultGate) endChange() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.changing = false
	g.cond.Broadcast()
}

// nodeEvents changes Nodes through the API one at a time and measures how
// long every lab node takes to route exactly the new desired set, between
// faults (faultGate).
type nodeEvents struct {
	kl       *kubeLab
	readers  []*routeReader
	want     *desiredRoutes
	gate     *faultGate
	v        *violations
	timeline *timeline

	created, readdressed, deleted atomic.Int64
	convergence                   durations // per change: the slowest node
	perNode                       durations // per change and node
}

// convergenceBound is the soak's correctness bound: every node routes
// exactly the desired set within this time of a change.
const convergenceBound = time.Second

func (e *nodeEvents) run(ctx context.Context) {
	for ctx.Err() == nil {
		e.gate.beginChange()
		if ctx.Err() == nil {
			e.change()
		}
		e.gate.endChange()
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(300+rand.N(700)) * time.Millisecond):
		}
	}
}

// change makes one random Node change and measures its convergence.
func (e *nodeEvents) change() {
	e.want.mu.Lock()
	var used, free []int
	for s := range fakeSlots {
		if _, ok := e.want.fakes[s]; ok {
			used = append(used, s)
		} else {
			free = append(free, s)
		}
	}
	e.want.mu.Unlock()
	sort.Ints(used)
	// Roughly half the slots in use: creations, re-addressings and
	// deletions in about equal numbers.
	var op string
	switch r := rand.N(3); {
	case len(used) == 0 || (r == 0 && len(free) > 0):
		op = "create"
	case r == 1 || len(used) <= 2:
		op = "readdress"
	default:
		op = "delete"
	}
	slot := -1
	if op == "create" {
		slot = free[rand.N(len(free))]
	} else {
		slot = used[rand.N(len(used))]
	}
	if d, ok := e.do(op, slot, true); ok {
		e.convergence.add(d)
	}
}

// do applies one change to the fake Node in slot through the API, with
// the desired routes updated first, and measures how long every node took
// to route exactly the new set. It returns the slowest node's time, and
// false if the change failed or never converged. bounded changes count
// against convergenceBound.
func (e *nodeEvents) do(op string, slot int, bounded bool) (time.Duration, bool) {
	e.want.mu.Lock()
	f, ok := e.want.fakes[slot]
	switch op {
	case "create":
		f = fakeNode{slot: slot, gen: e.want.gens[slot]}
		f.readdress()
		e.want.fakes[slot] = f
	case "readdress":
		f.readdress()
		e.want.fakes[slot] = f
	case "delete":
		delete(e.want.fakes, slot)
	}
	if !ok && op != "create" {
		e.want.mu.Unlock()
		e.v.add("soak bug", "%s of slot %d, which holds no Node", op, slot)
		return 0, false
	}
	e.want.gens[slot] = f.gen
	e.want.inflight = true
	e.want.gen++
	e.want.mu.Unlock()
	defer func() {
		e.want.mu.Lock()
		e.want.inflight = false
		e.want.gen++
		e.want.mu.Unlock()
	}()

	// Not the soak's context: a call cut short at the end would leave the
	// desired set and the API disagreeing.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin := e.kl.admin
	start := time.Now() // before the call: its own latency counts too
	var err error
	switch op {
	case "create":
		err = createNode(ctx, admin, f.name(), []string{f.ip4, f.ip6}, []string{f.cidr4(), f.cidr6()})
		e.created.Add(1)
	case "readdress":
		err = setInternalIPs(ctx, admin, f.name(), f.ip4, f.ip6)
		e.readdressed.Add(1)
	case "delete":
		err = admin.CoreV1().Nodes().Delete(ctx, f.name(), metav1.DeleteOptions{})
		e.deleted.Add(1)
	}
	what := fmt.Sprintf("%s %s (%s, %s)", op, f.name(), f.ip4, f.ip6)
	if err != nil {
		e.v.add("API change failed", "%s: %v", what, err)
		e.resync(admin)
		return 0, false
	}
	return e.measure(start, what, bounded)
}

// measure polls every node until it routes the desired set, and records
// how long each took. A node slower than convergenceBound is a violation;
// one that has not converged after 90 s is reported with what differs.
// Polling every 10 ms is the resolution of the measurement.
func (e *nodeEvents) measure(start time.Time, what string, bounded bool) (time.Duration, bool) {
	done := make([]bool, len(e.readers))
	left := len(done)
	var last []string
	slowest := time.Duration(0)
	for left > 0 {
		for i, r := range e.readers {
			if done[i] {
				continue
			}
			got, err := r.read()
			want := e.want.forNode(e.kl, r.node)
			if err == nil && maps.Equal(got, want) {
				d := time.Since(start)
				done[i] = true
				left--
				slowest = max(slowest, d)
				if !bounded {
					continue
				}
				e.perNode.add(d)
				if d > convergenceBound {
					e.v.add("convergence over 1s", "%s: %s took %s", what, r.node.Name, d.Round(time.Millisecond))
				}
				continue
			}
			last = append(last[:0], fmt.Sprintf("%s: %v, want %v (%v)", r.node.Name, got, want, err))
		}
		if time.Since(start) > 90*time.Second {
			e.v.add("never converged", "%s: after 90s: %s", what, strings.Join(last, "; "))
			return 0, false
		}
		time.Sleep(10 * time.Millisecond)
	}
	if bounded && slowest > convergenceBound {
		e.timeline.add("slow change: %s: slowest node %s", what, slowest.Round(time.Millisecond))
	}
	return slowest, true
}

// resync makes the desired set what the API holds after a failed call
// (it may or may not have been applied).
func (e *nodeEvents) resync(admin kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e.want.mu.Lock()
	defer e.want.mu.Unlock()
	for s, f := range e.want.fakes {
		n, err := admin.CoreV1().Nodes().Get(ctx, f.name(), metav1.GetOptions{})
		if err != nil {
			delete(e.want.fakes, s)
			continue
		}
		for _, a := range n.Status.Addresses {
			if strings.Contains(a.Address, ":") {
				f.ip6 = a.Address
			} else {
				f.ip4 = a.Address
			}
		}
		e.want.fakes[s] = f
	}
}

// steadyCheck verifies, whenever no change is in flight, that every node
// routes exactly the desired set: across agent kills, API outages and pod
// churn nothing may add, remove or rewrite a route. A read counts only if
// no change started or ended around it, so every difference it sees is a
// violation.
func steadyCheck(ctx context.Context, kl *kubeLab, readers []*routeReader, want *desiredRoutes, v *violations, checks *atomic.Int64) {
	for ctx.Err() == nil {
		for _, r := range readers {
			want.mu.Lock()
			gen, busy := want.gen, want.inflight
			want.mu.Unlock()
			if busy {
				continue
			}
			exp := want.forNode(kl, r.node)
			got, err := r.read()
			want.mu.Lock()
			changed := want.gen != gen || want.inflight
			want.mu.Unlock()
			if changed {
				continue
			}
			checks.Add(1)
			if err != nil || !maps.Equal(got, exp) {
				v.add("routes differ at rest", "%s: %v, want %v (%v)", r.node.Name, got, exp, err)
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}
