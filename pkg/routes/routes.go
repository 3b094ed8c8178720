// Package routes converges the host's main routing table to the snapshot:
// one route per peer podCIDR via that peer's address of the same family,
// installed only when that address is on-link (no overlay, no gateway hop).
//
// Every route it installs carries kindnet's own route protocol number, and it
// only ever replaces or deletes routes carrying that number: routes of the
// host, of the administrator or of other software are never touched, even
// when they stand in kindnet's way (that is reported as a conflict instead).
package routes

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/cluster"
)

// Protocol is kindnet's route protocol number: `ip route` shows it as
// "proto kindnet" once packaging/rt_protos.d/kindnet.conf is installed.
const Protocol netlink.RouteProtocol = 107

// Reconciler owns the kindnet routes of one network namespace.
type Reconciler struct {
	// Handle is a netlink handle in the namespace to manage.
	Handle *netlink.Handle
}

// PeerState says what became of each accepted peer.
type PeerState struct {
	// State is StateRouted, StateOffLink, StateConflict or StatePending.
	State  string
	Reason string
}

// Peer states as `kindnet status` shows them.
const (
	StateRouted   = "routed"
	StateOffLink  = "off-link"
	StateConflict = "conflict"
	StatePending  = "pending"
)

// Result reports one reconcile.
type Result struct {
	Changes   []string // what was added, replaced or deleted, one line each
	Installed int      // kindnet routes present after the run
	Peers     map[string]PeerState
}

// Route is a desired kindnet route.
type Route struct {
	Peer      string
	Dst       netip.Prefix
	Via       netip.Addr
	LinkIndex int
}

func (r Route) String() string { return fmt.Sprintf("%s via %s (node %s)", r.Dst, r.Via, r.Peer) }

// Reconcile makes the kindnet routes of the namespace equal to what the
// snapshot wants. Running it again with the same snapshot changes nothing.
// One route failing does not stop the others; all failures are returned.
func (r *Reconciler) Reconcile(ctx context.Context, snap *cluster.Snapshot) (Result, error) {
	res := Result{Peers: map[string]PeerState{}}
	table, err := r.readTable()
	if err != nil {
		return res, err
	}
	desired := r.desired(snap, table, &res)
	var errs []error
	want := map[netip.Prefix]bool{}
	for _, d := range desired {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		want[d.Dst] = true
		if cur, ok := table.own[d.Dst]; ok && len(cur) == 1 && sameRoute(cur[0], d) {
			res.Installed++
			continue
		}
		if err := r.Handle.RouteReplace(toNetlink(d)); err != nil {
			errs = append(errs, fmt.Errorf("add route %s via %s: %w", d.Dst, d.Via, err))
			res.Peers[d.Peer] = PeerState{State: StateOffLink, Reason: err.Error()}
			continue
		}
		res.Installed++
		verb := "add"
		if _, ok := table.own[d.Dst]; ok {
			verb = "replace"
		}
		res.Changes = append(res.Changes, verb+" "+d.String())
		// A replace leaves extra kindnet routes with the same destination
		// but another metric; those are stale.
		for _, cur := range table.own[d.Dst] {
			if cur.Priority != metric(d.Dst) {
				errs = append(errs, r.delete(cur, &res))
			}
		}
	}
	for dst, cur := range table.own {
		if want[dst] {
			continue
		}
		for _, rt := range cur {
			errs = append(errs, r.delete(rt, &res))
		}
	}
	slices.Sort(res.Changes)
	return res, errors.Join(errs...)
}

func (r *Reconciler) delete(rt netlink.Route, res *Result) error {
	if err := r.Handle.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete stale route %s: %w", rt.Dst, err)
	}
	res.Changes = append(res.Changes, fmt.Sprintf("delete %s via %s", rt.Dst, rt.Gw))
	return nil
}

// desired computes the routes the snapshot wants, deciding for each peer
// whether it is on-link and whether a foreign route is in the way.
func (r *Reconciler) desired(snap *cluster.Snapshot, t *table, res *Result) []Route {
	var out []Route
	for _, p := range snap.Peers {
		if len(p.PodCIDRs) == 0 {
			res.Peers[p.Name] = PeerState{State: StatePending, Reason: "no podCIDR yet"}
			continue
		}
		state := PeerState{State: StateRouted}
		var routes []Route
		for _, cidr := range p.PodCIDRs {
			via, _ := p.Via(cidr) // validation guarantees one per family
			link, why := t.onLink(via)
			if why != "" {
				state = PeerState{State: StateOffLink, Reason: fmt.Sprintf("%s %s", via, why)}
				continue
			}
			if f, ok := t.foreign[cidr]; ok {
				state = PeerState{State: StateConflict, Reason: fmt.Sprintf("a route to %s not owned by kindnet exists (proto %s): remove it to let kindnet route this node", cidr, protoName(f.Protocol))}
				continue
			}
			routes = append(routes, Route{Peer: p.Name, Dst: cidr, Via: via, LinkIndex: link})
		}
		res.Peers[p.Name] = state
		out = append(out, routes...)
	}
	return out
}

func sameRoute(cur netlink.Route, d Route) bool {
	gw, _ := netip.AddrFromSlice(cur.Gw)
	return gw.Unmap() == d.Via && cur.LinkIndex == d.LinkIndex && cur.Priority == metric(d.Dst) &&
		len(cur.MultiPath) == 0 && cur.Type == unix.RTN_UNICAST
}

func toNetlink(d Route) *netlink.Route {
	return &netlink.Route{
		Dst:       prefixToIPNet(d.Dst),
		Gw:        net.IP(d.Via.AsSlice()),
		LinkIndex: d.LinkIndex,
		Protocol:  Protocol,
		Priority:  metric(d.Dst),
		Table:     unix.RT_TABLE_MAIN,
		Scope:     netlink.SCOPE_UNIVERSE,
		Type:      unix.RTN_UNICAST,
	}
}

// metric is the kernel's default metric for the family (IPv6 routes added
// with metric 0 are stored with 1024), so what we add is what we read back.
func metric(dst netip.Prefix) int {
	if dst.Addr().Is4() {
		return 0
	}
	return 1024
}

func prefixToIPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func protoName(p netlink.RouteProtocol) string {
	if s := p.String(); s != "" {
		return s
	}
	return fmt.Sprint(int(p))
}

// Cleanup deletes every route carrying kindnet's protocol, in both
// families, and nothing else. It returns how many it deleted.
func Cleanup(h *netlink.Handle) (int, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: Protocol, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("list kindnet routes: %w", err)
	}
	n := 0
	var errs []error
	for _, rt := range routes {
		if rt.Protocol != Protocol {
			continue
		}
		if err := h.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("delete route %s: %w", rt.Dst, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// List returns the kindnet routes of the namespace, for status and tests.
func List(h *netlink.Handle) ([]netlink.Route, error) {
	t, err := (&Reconciler{Handle: h}).readTable()
	if err != nil {
		return nil, err
	}
	var out []netlink.Route
	for _, rs := range t.own {
		out = append(out, rs...)
	}
	slices.SortFunc(out, func(a, b netlink.Route) int {
		pa, _ := netip.AddrFromSlice(a.Dst.IP)
		pb, _ := netip.AddrFromSlice(b.Dst.IP)
		return pa.Compare(pb)
	})
	return out, nil
}
