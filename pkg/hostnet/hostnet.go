// Package hostnet reads facts about the host's network that other packages
// decide on: its own addresses and connected subnets (validation), its
// default gateways (validation), and the MTU of the default route's link
// (the CNI config).
//
// It only reads: nothing here changes a link, an address or a route.
package hostnet

import (
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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
	addrs, err := h.AddrList(nil, netlink.FAMILY_ALL)
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
			for _, gw := range gateways(r) {
				f.Gateways = append(f.Gateways, gw)
			}
		}
	}
	return f, nil
}

// DefaultRoutes lists the main table's default routes of one family.
func DefaultRoutes(h *netlink.Handle, family int) ([]netlink.Route, error) {
	routes, err := h.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []netlink.Route
	for _, r := range routes {
		if r.Dst == nil || isDefault(r.Dst.IP, r.Dst.Mask) {
			out = append(out, r)
		}
	}
	return out, nil
}

func isDefault(ip []byte, mask []byte) bool {
	for _, b := range mask {
		if b != 0 {
			return false
		}
	}
	return true
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
