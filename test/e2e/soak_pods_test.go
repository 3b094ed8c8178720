package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// podState is where a soak pod is in its life.
type podState int

const (
	podAdding   podState = iota // CNI ADD running
	podLive                     // wired, probed
	podDeleting                 // CNI DEL running (or failed)
)

// soakPod is a pod of the soak. Its container ID (the key of its IPAM
// record) is its namespace name, as the lab's CNI drivers pass it.
type soakPod struct {
	*lab.Pod
	state podState
	// permanent pods (the lab's own) live for the whole soak.
	permanent bool
}

// podRegistry knows every soak pod and its state: the probes, the IPAM
// checks and the churn all agree on it.
type podRegistry struct {
	mu   sync.Mutex
	pods map[string]*soakPod // by namespace (= container ID)
}

func newPodRegistry() *podRegistry { return &podRegistry{pods: map[string]*soakPod{}} }

func (r *podRegistry) set(p *soakPod, st podState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.state = st
	r.pods[p.NS] = p
}

// wired records the result of a pod's ADD (still in state adding).
func (r *podRegistry) wired(p *soakPod, w *lab.Pod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	p.Pod = w
}

func (r *podRegistry) drop(p *soakPod) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.pods, p.NS)
}

// stillLive says p is registered and live (its DEL has not started).
func (r *podRegistry) stillLive(p *soakPod) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pods[p.NS] == p && p.state == podLive
}

// podView is a copy of one pod's registry entry.
type podView struct {
	pod   *soakPod
	state podState
	ips   []netip.Addr
}

// snapshot copies the registry entries of one node (all nodes for "").
func (r *podRegistry) snapshot(node string) map[string]podView {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]podView{}
	for k, p := range r.pods {
		if node == "" || p.Node == node {
			out[k] = podView{pod: p, state: p.state, ips: podIPs(p.Pod)}
		}
	}
	return out
}

// counts returns the number of live pods, and of pods in ADD or DEL.
func (r *podRegistry) counts() (live, busy int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.pods {
		if p.state == podLive {
			live++
		} else {
			busy++
		}
	}
	return
}

// pickVictim marks a random non-permanent live pod as deleting and
// returns it (nil when there is none).
func (r *podRegistry) pickVictim() *soakPod {
	r.mu.Lock()
	defer r.mu.Unlock()
	var cands []*soakPod
	for _, p := range r.pods {
		if p.state == podLive && !p.permanent {
			cands = append(cands, p)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	v := cands[rand.N(len(cands))]
	v.state = podDeleting
	return v
}

func podIPs(p *lab.Pod) []netip.Addr {
	var out []netip.Addr
	for _, a := range []netip.Addr{p.IPv4, p.IPv6} {
		if a.IsValid() {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// churner adds and removes pods through the CNI plugin, from several
// workers at once, keeping about target non-permanent pods alive.
type churner struct {
	l      *lab.Lab
	reg    *podRegistry
	pr     *prober
	v      *violations
	target int

	serial       atomic.Int64
	adds, dels   atomic.Int64
	addNanos     atomic.Int64 // summed ADD latency
	delNanos     atomic.Int64
	addFailures  atomic.Int64
	delFailures  atomic.Int64
	probeOpenErr atomic.Int64
}

// run works until ctx ends, then finishes the operation it is in.
func (c *churner) run(ctx context.Context, worker int) {
	for ctx.Err() == nil {
		live, busy := c.reg.counts()
		if live+busy-len(c.l.Nodes) < c.target {
			c.add(worker)
		} else if !c.del() {
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// add wires a new pod on a random node; a failed ADD is a violation.
func (c *churner) add(worker int) {
	n := c.l.Nodes[rand.N(len(c.l.Nodes))]
	name := fmt.Sprintf("s%d", c.serial.Add(1))
	p := &soakPod{Pod: &lab.Pod{Name: name, Node: n.Name, NS: fmt.Sprintf("%s-%s-%s", c.l.ID, trimID(c.l, n.NS), name)}}
	c.reg.set(p, podAdding)
	// Its own context: the soak's end must not cut an ADD in half (that is
	// a different test: the plugin killed mid-ADD).
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	wired, err := c.l.WirePod(ctx, n, name)
	if err != nil {
		c.addFailures.Add(1)
		c.v.add("pod ADD failed", "worker %d: %v", worker, err)
		c.reg.drop(p)
		return
	}
	c.addNanos.Add(int64(time.Since(start)))
	c.adds.Add(1)
	c.reg.wired(p, wired)
	if err := c.pr.add(p); err != nil {
		c.probeOpenErr.Add(1)
		c.v.add("probe sockets", "%v", err)
	}
	c.reg.set(p, podLive)
}

// del removes a random live pod; it reports whether there was one.
func (c *churner) del() bool {
	p := c.reg.pickVictim()
	if p == nil {
		return false
	}
	c.pr.remove(p)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	var err error
	for range 3 { // a runtime retries a failed DEL; only the last failure counts
		if err = c.l.UnwirePod(ctx, p.Pod); err == nil {
			break
		}
	}
	if err != nil {
		// It stays registered as deleting: its IPAM record is expected.
		c.delFailures.Add(1)
		c.v.add("pod DEL failed", "%v", err)
		return true
	}
	c.delNanos.Add(int64(time.Since(start)))
	c.dels.Add(1)
	c.reg.drop(p)
	return true
}

func trimID(l *lab.Lab, ns string) string { return ns[len(l.ID)+1:] }

// ipamStore is the CNI plugin's allocation store of a lab node.
func ipamStore(n *lab.Node) *ipam.Store {
	return ipam.New(filepath.Join(n.Dir, "run", "ipam"), cniconf.NetworkName)
}

// checkIPAM compares every node's IPAM store with the pods the soak knows,
// around a read of the store that is not atomic with the registry: every
// pod live both before and after the read must hold exactly its addresses,
// and every record must belong to a pod known before or after (live, or in
// its ADD or DEL). No address may be held twice, on a node or across
// nodes. exact (at the end, nothing in flight) requires store = live pods.
func checkIPAM(l *lab.Lab, reg *podRegistry, exact bool) []string {
	var problems []string
	owner := map[netip.Addr]string{}
	for _, n := range l.Nodes {
		before := reg.snapshot(n.Name)
		recs, err := ipamStore(n).List()
		after := reg.snapshot(n.Name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: read IPAM store: %v", n.Name, err))
			continue
		}
		byID := map[string]ipam.Allocation{}
		for _, a := range recs {
			if _, dup := byID[a.ContainerID]; dup {
				problems = append(problems, fmt.Sprintf("%s: two IPAM records for %s", n.Name, a.ContainerID))
			}
			byID[a.ContainerID] = a
			for _, ip := range a.IPs {
				if o, dup := owner[ip]; dup {
					problems = append(problems, fmt.Sprintf("address %s handed out twice: %s and %s/%s", ip, o, n.Name, a.ContainerID))
				}
				owner[ip] = n.Name + "/" + a.ContainerID
			}
			_, b := before[a.ContainerID]
			_, f := after[a.ContainerID]
			if !b && !f {
				problems = append(problems, fmt.Sprintf("%s: IPAM record %s %v belongs to no pod (leaked)", n.Name, a.ContainerID, a.IPs))
			}
			if exact {
				if pv, ok := after[a.ContainerID]; !ok || pv.state != podLive {
					problems = append(problems, fmt.Sprintf("%s: at rest, IPAM record %s %v is not a live pod", n.Name, a.ContainerID, a.IPs))
				}
			}
		}
		for id, pv := range after {
			pb, ok := before[id]
			if pv.state != podLive || !ok || pb.state != podLive || pb.pod != pv.pod {
				continue
			}
			a, ok := byID[id]
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: live pod %s %v has no IPAM record", n.Name, pv.pod.Name, pv.ips))
				continue
			}
			got := slices.Clone(a.IPs)
			slices.SortFunc(got, netip.Addr.Compare)
			if !slices.Equal(got, pv.ips) {
				problems = append(problems, fmt.Sprintf("%s: pod %s has %v, its IPAM record says %v", n.Name, pv.pod.Name, pv.ips, got))
			}
		}
	}
	// Two live pods with one address would break the matrix silently.
	seen := map[netip.Addr]string{}
	for _, pv := range reg.snapshot("") {
		if pv.state != podLive {
			continue
		}
		for _, ip := range pv.ips {
			if o, dup := seen[ip]; dup {
				problems = append(problems, fmt.Sprintf("live pods %s and %s/%s share %s", o, pv.pod.Node, pv.pod.Name, ip))
			}
			seen[ip] = pv.pod.Node + "/" + pv.pod.Name
		}
	}
	return problems
}
