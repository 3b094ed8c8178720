// Package hostnet reads facts about the host's network that other packages
// decide on: its own addresses and connected subnets (validation), its
// default gateways (validation), and the MTU of the default route's link
// (the CNI config).
//
// It only reads: nothing here changes a link, an address or a route.
package hostnet

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/pkg/nldump"
)

// Facts is what validation needs to know about the host.
type Facts struct {
	// Addrs are the host's unicast addresses (not loopback, not link-local).
	Addrs []netip.Addr
	// Subnets are the networks of those addresses (connected routes), except
	// host-only ones (/32, /128), which carry no other host.
	Subnets []netip.Prefix
	// Gateways are the next hops of the default routes.
	Gateways []netip.Addr
}

// Read gathers the facts through h (a handle for the host's namespace).
func Read(h *netlink.Handle) (Facts, error) {
	var f Facts
	addrs, err := nldump.AddrList(h, nil, netlink.FAMILY_ALL)
	if err != nil {
		return f, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ip = ip.Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
			continue
		}
		f.Addrs = append(f.Addrs, ip)
		ones, bits := a.Mask.Size()
		if ones < bits {
			f.Subnets = append(f.Subnets, netip.PrefixFrom(ip, ones).Masked())
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		defs, err := DefaultRoutes(h, fam)
		if err != nil {
			return f, err
		}
		for _, r := range defs {
			f.Gateways = append(f.Gateways, gateways(r)...)
		}
	}
	return f, nil
}

// DefaultRoutes lists the main table's default routes of one family.
//
// The main table of a node holds one kindnet route per peer pod CIDR, so
// thousands of routes, and this runs on every reconcile (validation facts,
// the CNI MTU). The kernel cannot filter a route dump by destination, so the
// dump still carries every route; what is avoided is keeping them: the
// iterator drops every other table's route before decoding it, and every
// route whose destination is not the family's zero prefix before it is
// collected, so only the default routes are held in memory.
func DefaultRoutes(h *netlink.Handle, family int) ([]netlink.Route, error) {
	zero, err := zeroPrefix(family)
	if err != nil {
		return nil, err
	}
	var out []netlink.Route
	// Without RT_FILTER_TABLE the library keeps the main table only, and
	// skips the others before decoding them (unlike RT_FILTER_TABLE, which
	// decodes every table's routes and then compares). With RT_FILTER_DST a
	// default route matches its zero prefix: netlink v1.3 decodes a route
	// without RTA_DST as 0.0.0.0/0 or ::/0, never as a nil Dst.
	err = nldump.RouteListFilteredIter(h, family, &netlink.Route{Dst: zero}, netlink.RT_FILTER_DST, func() { out = nil }, func(r netlink.Route) bool {
		out = append(out, r)
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("list default routes: %w", err)
	}
	return out, nil
}

// zeroPrefix is the default route's destination in the family.
func zeroPrefix(family int) (*net.IPNet, error) {
	switch family {
	case netlink.FAMILY_V4:
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, nil
	case netlink.FAMILY_V6:
		return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, nil
	}
	return nil, fmt.Errorf("list default routes: family %d is neither IPv4 nor IPv6", family)
}

func gateways(r netlink.Route) []netip.Addr {
	var out []netip.Addr
	if gw, ok := netip.AddrFromSlice(r.Gw); ok {
		out = append(out, gw.Unmap())
	}
	for _, nh := range r.MultiPath {
		if gw, ok := netip.AddrFromSlice(nh.Gw); ok {
			out = append(out, gw.Unmap())
		}
	}
	return out
}

// DefaultRouteMTU returns the MTU a pod interface should use: the smallest
// MTU among the links the default routes leave by (every next hop of a
// multipath route counts, since a flow may take any of them), also taking
// the route's own mtu metric into account. It returns 0 when there is no
// default route.
func DefaultRouteMTU(h *netlink.Handle) (int, error) {
	mtu := 0
	consider := func(m int) {
		if m > 0 && (mtu == 0 || m < mtu) {
			mtu = m
		}
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		defs, err := DefaultRoutes(h, fam)
		if err != nil {
			return 0, err
		}
		for _, r := range defs {
			consider(r.MTU)
			idx := []int{r.LinkIndex}
			for _, nh := range r.MultiPath {
				idx = append(idx, nh.LinkIndex)
			}
			for _, i := range idx {
				if i <= 0 {
					continue
				}
				l, err := h.LinkByIndex(i)
				if err != nil {
					return 0, fmt.Errorf("link %d of the default route: %w", i, err)
				}
				consider(l.Attrs().MTU)
			}
		}
	}
	return mtu, nil
}
