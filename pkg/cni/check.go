package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/nldump"
)

// check compares the attachment with what ADD reported (prevResult) and
// what the plugin knows it made: the IPAM record, both ends of the veth
// pair (up, MTU, peers of each other), the pod's addresses and default
// routes, the host routes (ptp) or the bridge port (bridge), and the
// hostPort rules (and route_localnet where a loopback hostIP needs it).
// Routes or addresses added by later plugins are fine;
// anything of kindnet's that is missing is an error naming it.
func (a *attachment) check() error {
	want, err := a.expectedAddrs()
	if err != nil {
		return err
	}
	var errs []error
	fail := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	rec, found, err := a.store().Get(a.key)
	switch {
	case err != nil:
		errs = append(errs, err)
	case !found:
		fail("IPAM has no addresses for %s", a.key)
	default:
		got := slices.Clone(rec.IPs)
		exp := make([]netip.Addr, 0, len(want))
		for _, p := range want {
			exp = append(exp, p.Addr())
		}
		slices.SortFunc(got, netip.Addr.Compare)
		slices.SortFunc(exp, netip.Addr.Compare)
		if !slices.Equal(got, exp) {
			fail("IPAM holds %v for %s, the ADD result says %v", got, a.key, exp)
		}
	}

	podNS, terr := openNetNS(a.netns)
	if terr != nil {
		return terr
	}
	defer podNS.Close()
	hostNL, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer hostNL.Close()
	podNL, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink in %s: %w", a.netns, err)
	}
	defer podNL.Close()

	host, err := hostNL.LinkByName(a.hostIf)
	if err != nil {
		fail("host end %s: %v", a.hostIf, err)
	} else {
		errs = append(errs, a.checkLink("host end", host, a.alias())...)
	}
	pod, err := podNL.LinkByName(a.key.IfName)
	if err != nil {
		fail("%s in %s: %v", a.key.IfName, a.netns, err)
	} else {
		errs = append(errs, a.checkLink(a.key.IfName+" in "+a.netns, pod, "")...)
		if host != nil && pod.Attrs().ParentIndex != host.Attrs().Index {
			fail("%s in %s is not the peer of %s", a.key.IfName, a.netns, a.hostIf)
		}
		errs = append(errs, a.checkPod(podNL, pod, want)...)
	}
	if host != nil {
		if a.conf.Mode == ModeBridge {
			errs = append(errs, a.checkBridge(hostNL, host)...)
		} else {
			errs = append(errs, a.checkHostRoutes(hostNL, host, want)...)
		}
	}
	addrs := make([]netip.Addr, 0, len(want))
	for _, p := range want {
		addrs = append(addrs, p.Addr())
	}
	if err := a.table().Check(a.owner, addrs, a.hairpinFrom(addrs), a.conf.PortMappings); err != nil {
		errs = append(errs, err)
	}
	if hostport.AnyLocalhost(a.conf.PortMappings) {
		want := a.routeLocalnet()
		if v, err := os.ReadFile("/proc/sys/net/" + want.key); err != nil {
			fail("net.%s: %v", dotted(want.key), err)
		} else if got := strings.TrimSpace(string(v)); got != want.value {
			fail("net.%s is %s, a hostPort on a loopback hostIP needs %s", dotted(want.key), got, want.value)
		}
	}
	return errors.Join(errs...)
}

// expectedAddrs are the addresses prevResult puts on CNI_IFNAME.
func (a *attachment) expectedAddrs() ([]netip.Prefix, error) {
	prev := a.conf.PrevResult
	idx := -1
	for i, in := range prev.Interfaces {
		if in.Name == a.key.IfName && in.Sandbox == a.netns {
			idx = i
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("prevResult has no interface %s in %s", a.key.IfName, a.netns)
	}
	var out []netip.Prefix
	for _, ipc := range prev.IPs {
		if ipc.Interface == nil || *ipc.Interface != idx {
			continue
		}
		p, ok := netipx.FromStdIPNet(&ipc.Address)
		if !ok {
			return nil, fmt.Errorf("prevResult address %s is not an IP prefix", ipc.Address.String())
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("prevResult has no address on %s", a.key.IfName)
	}
	return out, nil
}

// checkLink: a veth, up, with the configured MTU and (host end) our alias.
func (a *attachment) checkLink(what string, l netlink.Link, alias string) []error {
	var errs []error
	attrs := l.Attrs()
	if l.Type() != "veth" {
		errs = append(errs, fmt.Errorf("%s %s is a %s, not a veth", what, attrs.Name, l.Type()))
	}
	if alias != "" && attrs.Alias != alias {
		errs = append(errs, fmt.Errorf("%s %s has alias %q, not %q", what, attrs.Name, attrs.Alias, alias))
	}
	if attrs.Flags&net.FlagUp == 0 {
		errs = append(errs, fmt.Errorf("%s %s is down", what, attrs.Name))
	}
	if a.conf.MTU > 0 && attrs.MTU != a.conf.MTU {
		errs = append(errs, fmt.Errorf("%s %s has MTU %d, the config says %d", what, attrs.Name, attrs.MTU, a.conf.MTU))
	}
	return errs
}

// checkPod: every address, and a default route via the gateway of each
// family.
func (a *attachment) checkPod(nl *netlink.Handle, pod netlink.Link, want []netip.Prefix) []error {
	var errs []error
	have, err := nldump.AddrList(nl, pod, netlink.FAMILY_ALL)
	if err != nil {
		return []error{fmt.Errorf("list addresses of %s in %s: %w", a.key.IfName, a.netns, err)}
	}
	for _, p := range want {
		if !hasAddr(have, p) {
			errs = append(errs, fmt.Errorf("%s in %s lacks address %s", a.key.IfName, a.netns, p))
		}
		gw := a.gateway(p.Addr())
		routes, err := nldump.RouteListFiltered(nl, family(p.Addr()), &netlink.Route{LinkIndex: pod.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			errs = append(errs, fmt.Errorf("list routes in %s: %w", a.netns, err))
			continue
		}
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			return isDefault(r.Dst) && r.Gw != nil && r.Gw.Equal(gw.AsSlice())
		}) {
			errs = append(errs, fmt.Errorf("%s has no default route via %s on %s", a.netns, gw, a.key.IfName))
		}
	}
	return errs
}

func isDefault(dst *net.IPNet) bool {
	if dst == nil {
		return true
	}
	ones, _ := dst.Mask.Size()
	return ones == 0
}

// checkHostRoutes: ptp's route to each pod address through the host end.
func (a *attachment) checkHostRoutes(nl *netlink.Handle, host netlink.Link, want []netip.Prefix) []error {
	var errs []error
	for _, p := range want {
		routes, err := nldump.RouteListFiltered(nl, family(p.Addr()), &netlink.Route{LinkIndex: host.Attrs().Index}, netlink.RT_FILTER_OIF)
		if err != nil {
			errs = append(errs, fmt.Errorf("list routes on %s: %w", a.hostIf, err))
			continue
		}
		host := netip.PrefixFrom(p.Addr(), p.Addr().BitLen())
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
			q, ok := netipx.FromStdIPNet(orZero(r.Dst))
			return ok && q == host
		}) {
			errs = append(errs, fmt.Errorf("no host route %s dev %s", host, a.hostIf))
		}
	}
	return errs
}

func orZero(n *net.IPNet) *net.IPNet {
	if n == nil {
		return &net.IPNet{}
	}
	return n
}

// checkBridge: the host end is a port of the bridge, which holds the
// gateways.
func (a *attachment) checkBridge(nl *netlink.Handle, host netlink.Link) []error {
	br, err := nl.LinkByName(a.conf.Bridge)
	if err != nil {
		return []error{fmt.Errorf("bridge %s: %w", a.conf.Bridge, err)}
	}
	var errs []error
	if host.Attrs().MasterIndex != br.Attrs().Index {
		errs = append(errs, fmt.Errorf("%s is not a port of %s", a.hostIf, a.conf.Bridge))
	}
	have, err := nldump.AddrList(nl, br, netlink.FAMILY_ALL)
	if err != nil {
		return append(errs, fmt.Errorf("list addresses of %s: %w", a.conf.Bridge, err))
	}
	for _, r := range a.conf.Ranges {
		gw := netip.PrefixFrom(a.gateway(r.Addr().Next()), r.Bits())
		if !hasAddr(have, gw) {
			errs = append(errs, fmt.Errorf("bridge %s lacks gateway %s", a.conf.Bridge, gw))
		}
	}
	return errs
}
