package cni

import (
	"fmt"
	"net"
	"net/netip"

	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"go4.org/netipx"
	"golang.org/x/sys/unix"
)

// wirePTP connects the pod with a routed veth pair:
//
//	pod:  eth0 10.244.1.5/32, fd00:10:244:1::5/128
//	      default via 169.254.1.1 dev eth0 onlink; default via fe80::1 dev eth0
//	      neigh 169.254.1.1 and fe80::1 lladdr <host end> PERMANENT
//	host: kn<hash> (no IPv4 address; fe80::1/64 on IPv6), proxy_arp on
//	      10.244.1.5 dev kn<hash> scope link; fd00:10:244:1::5 dev kn<hash>
//	      neigh 10.244.1.5 and fd00:10:244:1::5 lladdr <pod end> PERMANENT
//
// Both sides know each other's MAC from the start (the plugin chose them),
// so the first packet needs no ARP or neighbour discovery. proxy_arp and
// fe80::1 on the host end answer them anyway should a pod flush its
// neighbour table.
//
// host and podMAC are the pair createVeth made; deleting it undoes all of
// this.
func (a *attachment) wirePTP(hostNL, podNL *netlink.Handle, podNS ns.NetNS, host *netlink.Veth, podMAC net.HardwareAddr, ips []netip.Addr) (wiring, error) {
	v4, v6 := families(ips)
	if err := setSysctls(hostEndSysctls(a.hostIf, v4, v6, true)); err != nil {
		return wiring{}, fmt.Errorf("host end %s: %w", a.hostIf, err)
	}
	if err := hostNL.LinkSetUp(host); err != nil {
		return wiring{}, fmt.Errorf("set %s up: %w", a.hostIf, err)
	}
	if v6 {
		ll := &netlink.Addr{IPNet: netipx.PrefixIPNet(netip.PrefixFrom(gatewayV6, 64)), Flags: unix.IFA_F_NODAD}
		if err := hostNL.AddrAdd(host, ll); err != nil {
			return wiring{}, fmt.Errorf("add %s to %s: %w", ll.IPNet, a.hostIf, err)
		}
	}
	if err := a.configurePod(podNL, podNS, ips, host.HardwareAddr); err != nil {
		return wiring{}, err
	}
	for _, ip := range ips {
		n := &netlink.Neigh{LinkIndex: host.Index, Family: family(ip), State: netlink.NUD_PERMANENT,
			IP: ip.AsSlice(), HardwareAddr: podMAC}
		if err := hostNL.NeighAdd(n); err != nil {
			return wiring{}, fmt.Errorf("add neighbour %s lladdr %s on %s: %w", ip, podMAC, a.hostIf, err)
		}
		r := &netlink.Route{LinkIndex: host.Index, Dst: netipx.PrefixIPNet(netip.PrefixFrom(ip, ip.BitLen()))}
		if ip.Is4() {
			r.Scope = netlink.SCOPE_LINK
		}
		if err := hostNL.RouteAdd(r); err != nil {
			return wiring{}, fmt.Errorf("add route %s dev %s: %w", r.Dst, a.hostIf, err)
		}
	}
	return wiring{
		interfaces: []*types100.Interface{
			{Name: a.hostIf, Mac: host.HardwareAddr.String(), Mtu: a.conf.MTU},
			{Name: a.key.IfName, Mac: podMAC.String(), Mtu: a.conf.MTU, Sandbox: a.netns},
		},
		podIndex: 1,
	}, nil
}
