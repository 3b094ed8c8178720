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
	"strings"

	"github.com/vishvananda/netlink"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/nldump"
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
	// Changes are the routes added, replaced or deleted, sorted by
	// destination. They are values, not text, so a caller that does not log
	// each one (a boot at info level with thousands of peers) pays nothing
	// for formatting.
	Changes []Change
	// Added, Replaced, Removed and Unchanged count the routes by what
	// became of them; Unchanged ones were already exactly as wanted.
	Added, Replaced, Removed, Unchanged int
	Installed                           int // kindnet routes present after the run
	Peers                               map[string]PeerState
	// wanted are the destinations this run left in place (see Wanted).
	wanted map[netip.Prefix]bool
}

// Verbs of a Change.
const (
	VerbAdd     = "add"
	VerbReplace = "replace"
	VerbDelete  = "delete"
)

// Change is one route the reconcile added, replaced or deleted.
type Change struct {
	Verb string // VerbAdd, VerbReplace or VerbDelete
	Dst  netip.Prefix
	Via  netip.Addr
	Peer string // the node the route leads to; empty for a delete
}

// String is the change as one log message, e.g.
// "add 10.244.2.0/24 via 192.168.1.2 (node node2)".
func (c Change) String() string {
	if c.Verb == VerbDelete {
		return fmt.Sprintf("%s %s via %s", c.Verb, c.Dst, c.Via)
	}
	return fmt.Sprintf("%s %s via %s (node %s)", c.Verb, c.Dst, c.Via, c.Peer)
}

// Deleted is a kindnet route seen deleted (a netlink RTM_DELROUTE event),
// reduced to what tells whether a reconcile wanted it: small enough to
// queue thousands of them when a reconcile removes thousands of routes.
type Deleted struct {
	Dst      netip.Prefix
	Table    int
	Priority int
}

// DeletedOf reduces the route of a deletion event; ok is false when the
// route is not kindnet's (another protocol) or has no usable destination.
func DeletedOf(rt netlink.Route) (Deleted, bool) {
	if rt.Protocol != Protocol {
		return Deleted{}, false
	}
	dst, ok := routeDst(rt)
	return Deleted{Dst: dst, Table: rt.Table, Priority: rt.Priority}, ok
}

// Wanted reports whether the deleted route is one this reconcile left in
// place: the main table, a destination it installed or kept, and the
// metric kindnet installs with. A reconcile deletes only routes it does
// not want, so such a deletion was made by someone else and needs a repair;
// any other deletion of a kindnet route (a stale one, or the duplicate with
// another metric that a replace leaves) needs nothing.
func (r Result) Wanted(d Deleted) bool {
	if d.Table != unix.RT_TABLE_MAIN {
		return false
	}
	return r.wanted[d.Dst] && d.Priority == metric(d.Dst)
}

// WantsDst reports whether this reconcile left a kindnet route to dst in
// place (installed, replaced or found as wanted).
func (r Result) WantsDst(dst netip.Prefix) bool { return r.wanted[dst] }

// Route is a desired kindnet route.
type Route struct {
	Peer      string
	Dst       netip.Prefix
	Via       netip.Addr
	LinkIndex int
}

func (r Route) String() string { return fmt.Sprintf("%s via %s (node %s)", r.Dst, r.Via, r.Peer) }

// PeerError is a route to one peer that the kernel refused. It concerns that
// peer alone: the other peers' routes are installed all the same, and a run
// whose only failures are PeerErrors (see OnlyPeerErrors) still converged
// everything else.
type PeerError struct {
	Peer string
	Dst  netip.Prefix
	Via  netip.Addr
	Err  error
}

func (e *PeerError) Error() string {
	return fmt.Sprintf("add route %s via %s (node %s): %v", e.Dst, e.Via, e.Peer, e.Err)
}

func (e *PeerError) Unwrap() error { return e.Err }

// OnlyPeerErrors reports whether err is non-nil and made of PeerErrors
// alone: some peers could not be routed, but the table was read and every
// other route is as wanted.
func OnlyPeerErrors(err error) bool {
	if err == nil {
		return false
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !OnlyPeerErrors(e) {
				return false
			}
		}
		return true
	}
	_, ok := err.(*PeerError)
	return ok
}

// Reconcile makes the kindnet routes of the namespace equal to what the
// snapshot wants. Running it again with the same snapshot changes nothing.
// One route failing does not stop the others; all failures are returned,
// a refused route as a *PeerError.
func (r *Reconciler) Reconcile(ctx context.Context, snap *model.Snapshot) (Result, error) {
	res := Result{Peers: map[string]PeerState{}}
	table, err := r.readTable()
	if err != nil {
		return res, err
	}
	desired := r.desired(snap, table, &res)
	var errs []error
	want := make(map[netip.Prefix]bool, len(desired))
	res.wanted = want
	var failed []netip.Prefix // wanted, but not installed
	for _, d := range desired {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		want[d.Dst] = true
		if cur, ok := table.own[d.Dst]; ok && len(cur) == 1 && sameRoute(cur[0], d) {
			res.Installed++
			res.Unchanged++
			continue
		}
		if err := r.Handle.RouteReplace(toNetlink(d)); err != nil {
			pe := &PeerError{Peer: d.Peer, Dst: d.Dst, Via: d.Via, Err: err}
			errs = append(errs, pe)
			res.Peers[d.Peer] = PeerState{State: StateOffLink, Reason: pe.Error()}
			failed = append(failed, d.Dst)
			continue
		}
		res.Installed++
		verb := VerbAdd
		if _, ok := table.own[d.Dst]; ok {
			verb = VerbReplace
			res.Replaced++
		} else {
			res.Added++
		}
		res.Changes = append(res.Changes, Change{Verb: verb, Dst: d.Dst, Via: d.Via, Peer: d.Peer})
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
	// The stale routes are gone; from here on wanted means "in place as
	// wanted", so a route that could not be installed is not in it.
	for _, dst := range failed {
		delete(want, dst)
	}
	slices.SortFunc(res.Changes, func(a, b Change) int {
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		if c := a.Dst.Bits() - b.Dst.Bits(); c != 0 {
			return c
		}
		return strings.Compare(a.Verb, b.Verb)
	})
	return res, errors.Join(errs...)
}

func (r *Reconciler) delete(rt netlink.Route, res *Result) error {
	if err := r.Handle.RouteDel(&rt); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("delete stale route %s: %w", rt.Dst, err)
	}
	dst, _ := routeDst(rt)
	gw, _ := netip.AddrFromSlice(rt.Gw)
	res.Changes = append(res.Changes, Change{Verb: VerbDelete, Dst: dst, Via: gw.Unmap()})
	res.Removed++
	return nil
}

// desired computes the routes the snapshot wants, deciding for each peer
// whether it is on-link and whether a foreign route is in the way.
func (r *Reconciler) desired(snap *model.Snapshot, t *table, res *Result) []Route {
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
		Dst:       netipx.PrefixIPNet(d.Dst),
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

func protoName(p netlink.RouteProtocol) string {
	if s := p.String(); s != "" {
		return s
	}
	return fmt.Sprint(int(p))
}

// Cleanup deletes every route of the main table carrying kindnet's
// protocol, in both families, and nothing else. It returns how many it
// deleted. Routes with kindnet's protocol number in other tables are not
// kindnet's: it only ever installs into main, so a route elsewhere was put
// there by someone else (a policy-routing setup copying routes, or another
// program that picked the same number) and stays.
func Cleanup(h *netlink.Handle) (int, error) {
	routes, err := nldump.RouteListFiltered(h, netlink.FAMILY_ALL, &netlink.Route{Protocol: Protocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("list kindnet routes: %w", err)
	}
	n := 0
	var errs []error
	for _, rt := range routes {
		if rt.Protocol != Protocol || rt.Table != unix.RT_TABLE_MAIN {
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
