package routes

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/nldump"
)

// table is one dump of the main routing table (both families), split into
// kindnet's own routes and everyone else's. One dump serves the whole
// reconcile, so the cost does not grow with a netlink round trip per peer.
type table struct {
	own     map[netip.Prefix][]netlink.Route // kindnet routes by destination
	foreign map[netip.Prefix]netlink.Route   // other routes by destination (lowest metric)
	lpm     [2]map[int]map[netip.Prefix]netlink.Route
}

func (r *Reconciler) readTable() (*table, error) {
	routes, err := nldump.RouteListFiltered(r.Handle, netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes of the main table: %w", err)
	}
	t := &table{own: map[netip.Prefix][]netlink.Route{}, foreign: map[netip.Prefix]netlink.Route{}}
	t.lpm = [2]map[int]map[netip.Prefix]netlink.Route{{}, {}}
	for _, rt := range routes {
		dst, ok := routeDst(rt)
		if !ok {
			continue
		}
		if rt.Protocol == Protocol {
			t.own[dst] = append(t.own[dst], rt)
			continue
		}
		if cur, ok := t.foreign[dst]; !ok || rt.Priority < cur.Priority {
			t.foreign[dst] = rt
		}
		fam := familyIndex(dst.Addr())
		byLen := t.lpm[fam][dst.Bits()]
		if byLen == nil {
			byLen = map[netip.Prefix]netlink.Route{}
			t.lpm[fam][dst.Bits()] = byLen
		}
		if cur, ok := byLen[dst]; !ok || rt.Priority < cur.Priority {
			byLen[dst] = rt
		}
	}
	return t, nil
}

// routeDst returns a route's destination; a nil Dst is the default route.
func routeDst(rt netlink.Route) (netip.Prefix, bool) {
	if rt.Dst == nil {
		if rt.Family == unix.AF_INET6 {
			return netip.MustParsePrefix("::/0"), true
		}
		return netip.MustParsePrefix("0.0.0.0/0"), true
	}
	a, ok := netip.AddrFromSlice(rt.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := rt.Dst.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func familyIndex(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// onLink finds the most specific non-kindnet route to addr, the way the
// kernel checks a gateway when a route is added: the address is on-link
// when that route is a directly connected unicast route (no gateway). It
// returns the link to use, or why the address is not on-link.
func (t *table) onLink(addr netip.Addr) (int, string) {
	fam := familyIndex(addr)
	for bits := addr.BitLen(); bits >= 0; bits-- {
		byLen := t.lpm[fam][bits]
		if byLen == nil {
			continue
		}
		p, _ := addr.Prefix(bits)
		rt, ok := byLen[p]
		if !ok {
			continue
		}
		switch {
		case rt.Type != unix.RTN_UNICAST:
			return 0, fmt.Sprintf("is unreachable (route %s has type %d)", p, rt.Type)
		case rt.Gw != nil || len(rt.MultiPath) > 0 || rt.Via != nil:
			return 0, fmt.Sprintf("is not on-link: reached via a gateway (route %s)", p)
		case rt.LinkIndex <= 0:
			return 0, fmt.Sprintf("is not on-link: route %s has no interface", p)
		}
		return rt.LinkIndex, ""
	}
	return 0, "has no route"
}
