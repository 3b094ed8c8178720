package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/ipam"
	"github.com/kindnet-dev/kindnet/pkg/nldump"
)

// wireBridge attaches the pod to the node's bridge:
//
//	host: kindnet0 10.244.1.1/24, fd00:10:244:1::1/64 (made on first use)
//	      kn<hash> master kindnet0, hairpin on
//	pod:  eth0 10.244.1.5/24, fd00:10:244:1::5/64
//	      default via 10.244.1.1; default via fd00:10:244:1::1
//
// Hairpin lets a pod reach itself through a hostPort: the DNATed packet
// leaves through the port it came in by.
//
// br is the bridge ensureBridge found or made, host and podMAC the pair
// createVeth made (already a port of br).
func (a *attachment) wireBridge(hostNL, podNL *netlink.Handle, podNS ns.NetNS, br netlink.Link, host *netlink.Veth, podMAC net.HardwareAddr, ips []netip.Addr) (wiring, error) {
	if err := hostNL.LinkSetHairpin(host, true); err != nil {
		return wiring{}, fmt.Errorf("set hairpin on %s: %w", a.hostIf, err)
	}
	_, v6 := families(ips)
	if err := setSysctls(hostEndSysctls(a.hostIf, false, v6, false)); err != nil {
		return wiring{}, fmt.Errorf("host end %s: %w", a.hostIf, err)
	}
	if err := hostNL.LinkSetUp(host); err != nil {
		return wiring{}, fmt.Errorf("set %s up: %w", a.hostIf, err)
	}
	// No static neighbour entry for the gateway: a bridge made anew (after
	// `kindnet cleanup`) has a new MAC, which ARP finds and a permanent
	// entry would hide.
	if err := a.configurePod(podNL, podNS, ips, nil); err != nil {
		return wiring{}, err
	}
	return wiring{
		interfaces: []*types100.Interface{
			{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String(), Mtu: br.Attrs().MTU},
			{Name: a.hostIf, Mac: host.HardwareAddr.String(), Mtu: a.conf.MTU},
			{Name: a.key.IfName, Mac: podMAC.String(), Mtu: a.conf.MTU, Sandbox: a.netns},
		},
		podIndex: 2,
	}, nil
}

// BridgeAlias is the alias of a bridge the plugin created. A bridge of the
// configured name without it (made by someone else, or by a release before
// the alias existed) is used, but never deleted by `kindnet cleanup`.
const BridgeAlias = aliasPrefix + "bridge"

// OwnsBridge reports whether l is a bridge the plugin created.
func OwnsBridge(l netlink.Link) bool {
	return l.Type() == "bridge" && l.Attrs().Alias == BridgeAlias
}

// ensureBridge finds or makes the bridge: up, with the configured MTU, a
// fixed MAC (a bridge otherwise takes the lowest MAC of its ports, which
// changes as pods come and go and breaks their ARP caches), DAD off and
// the gateway address of every range. Concurrent ADDs may race to create
// it; the loser finds it made.
func (a *attachment) ensureBridge(nl *netlink.Handle) (netlink.Link, error) {
	name := a.conf.Bridge
	l, err := nl.LinkByName(name)
	if isNotFound(err) {
		la := netlink.NewLinkAttrs()
		// The MTU is set below, not here: only an MTU set on an existing
		// bridge sticks; one given at creation yields to its ports' MTUs.
		la.Name, la.HardwareAddr = name, randomMAC()
		br := &netlink.Bridge{LinkAttrs: la}
		addErr := nl.LinkAdd(br)
		switch {
		case addErr == nil:
			// The alias records that kindnet made this bridge: `kindnet
			// cleanup` deletes a bridge only when it carries it. Only the
			// creator sets it (the kernel ignores IFLA_IFALIAS in the
			// creating RTM_NEWLINK, so it is a second request).
			if err := nl.LinkSetAlias(br, BridgeAlias); err != nil {
				return nil, fmt.Errorf("mark bridge %s as kindnet's: %w", name, err)
			}
		case !errors.Is(addErr, unix.EEXIST):
			return nil, fmt.Errorf("create bridge %s: %w", name, addErr)
		}
		l, err = nl.LinkByName(name)
	}
	if err != nil {
		return nil, fmt.Errorf("look up bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return nil, fmt.Errorf("%s exists and is a %s, not a bridge: it is not kindnet's; remove it or set \"bridge\" in the network config", name, l.Type())
	}
	if a.conf.hasIPv6() {
		if err := setSysctls([]sysctl{{"ipv6/conf/" + name + "/accept_dad", "0"}}); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", name, err)
		}
	}
	if a.conf.MTU > 0 && l.Attrs().MTU != a.conf.MTU {
		if err := nl.LinkSetMTU(l, a.conf.MTU); err != nil {
			return nil, fmt.Errorf("set MTU %d on %s: %w", a.conf.MTU, name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := nl.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	have, err := nldump.AddrList(nl, l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", name, err)
	}
	for _, r := range a.conf.Ranges {
		want := netip.PrefixFrom(ipam.Gateway(r), r.Bits())
		if hasAddr(have, want) {
			continue
		}
		addr := &netlink.Addr{IPNet: netipx.PrefixIPNet(want)}
		if r.Addr().Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := nl.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("add gateway %s to %s: %w", want, name, err)
		}
	}
	return l, nil
}

func hasAddr(have []netlink.Addr, want netip.Prefix) bool {
	for _, h := range have {
		ip, ok := netip.AddrFromSlice(h.IP)
		ones, _ := h.Mask.Size()
		if ok && ip.Unmap() == want.Addr() && ones == want.Bits() {
			return true
		}
	}
	return false
}
