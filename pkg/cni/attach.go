package cni

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go4.org/netipx"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
	"github.com/kindnet-dev/kindnet/pkg/nldump"
)

// Link-local gateways of ptp mode: no address of the pod range is spent on
// them, and every pod sees the same ones.
var (
	gatewayV4 = netip.MustParseAddr("169.254.1.1")
	gatewayV6 = netip.MustParseAddr("fe80::1")
)

// aliasPrefix starts the alias of every host-side veth the plugin creates;
// DEL and GC only ever delete links carrying it.
const aliasPrefix = "kindnet:"

// attachment is one (container, interface) pair of one network.
type attachment struct {
	conf   *Config
	key    ipam.Key
	netns  string
	owner  string // "<network>/<container ID>/<ifname>"
	hostIf string // host end of the veth pair
}

func newAttachment(conf *Config, args *skel.CmdArgs) *attachment {
	owner := hostport.Owner(conf.Network, args.ContainerID, args.IfName)
	return &attachment{
		conf:   conf,
		key:    ipam.Key{ContainerID: args.ContainerID, IfName: args.IfName},
		netns:  args.Netns,
		owner:  owner,
		hostIf: HostIfName(owner),
	}
}

// HostIfName is the host end's name: "kn" and 12 hex digits of a hash of
// the owner, so DEL finds it without any state, within 15 characters.
func HostIfName(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return "kn" + hex.EncodeToString(sum[:6])
}

// IsHostIfName says whether name has the form HostIfName gives: the node
// agent ignores the link events of pods' host ends by it.
func IsHostIfName(name string) bool {
	hexPart, ok := strings.CutPrefix(name, "kn")
	if !ok || len(hexPart) != 12 {
		return false
	}
	_, err := hex.DecodeString(hexPart)
	return err == nil
}

func (a *attachment) alias() string { return aliasPrefix + a.owner }

func (a *attachment) store() *ipam.Store { return ipam.New(a.conf.IPAMDir, a.conf.Network) }

func (a *attachment) table() hostport.Table { return hostport.Table{Name: a.conf.HostPortTable} }

// pools are the ranges to allocate from; bridge mode keeps each range's
// first address for the bridge.
func pools(c *Config) []ipam.Pool {
	out := make([]ipam.Pool, 0, len(c.Ranges))
	for _, r := range c.Ranges {
		p := ipam.Pool{Range: r}
		if c.Mode == ModeBridge {
			p.Gateway = ipam.Gateway(r)
		}
		out = append(out, p)
	}
	return out
}

// gateway is the pod's next hop for a family.
func (a *attachment) gateway(ip netip.Addr) netip.Addr {
	if a.conf.Mode == ModeBridge {
		for _, r := range a.conf.Ranges {
			if r.Contains(ip) {
				return ipam.Gateway(r)
			}
		}
	}
	if ip.Is4() {
		return gatewayV4
	}
	return gatewayV6
}

// podPrefix is the address as it goes on the pod's interface: a host route
// in ptp mode, the range's length on a bridge.
func (a *attachment) podPrefix(ip netip.Addr) netip.Prefix {
	if a.conf.Mode == ModeBridge {
		for _, r := range a.conf.Ranges {
			if r.Contains(ip) {
				return netip.PrefixFrom(ip, r.Bits())
			}
		}
	}
	return netip.PrefixFrom(ip, ip.BitLen())
}

// hairpinFrom are the sources whose hostPort traffic to this pod is
// masqueraded: the pod itself, and on a bridge every pod of the node.
func (a *attachment) hairpinFrom(ips []netip.Addr) []netip.Prefix {
	if a.conf.Mode == ModeBridge {
		return a.conf.Ranges
	}
	out := make([]netip.Prefix, 0, len(ips))
	for _, ip := range ips {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

// rollback undoes the steps of a failed ADD, newest first.
type rollback []func() error

func (r *rollback) push(f func() error) { *r = append(*r, f) }

func (r rollback) run() error {
	var errs []error
	for i := len(r) - 1; i >= 0; i-- {
		errs = append(errs, r[i]())
	}
	return errors.Join(errs...)
}

// wiring is what the mode-specific code created.
type wiring struct {
	interfaces []*types100.Interface
	podIndex   int // index of the pod interface in interfaces
}

// add wires the pod. Before changing anything it refuses an interface name
// that is taken; after that every step is undone if a later one fails, so
// a failed ADD leaves nothing behind on the host.
//
// The veth pair comes first because it is this call's claim on the
// attachment: its host end's name is a hash of the attachment, and the
// kernel creates a name only once, so of several ADDs of one attachment
// running at once exactly one gets past createVeth, and only that one
// allocates addresses. Its rollback releases the record by the token its
// own Allocate gave (never another call's claim) and deletes the veth
// last, so the claim is held until everything else is undone.
func (a *attachment) add() (res *types100.Result, err error) {
	podNS, terr := openNetNS(a.netns)
	if terr != nil {
		return nil, terr
	}
	defer podNS.Close()
	hostNL, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	defer hostNL.Close()
	podNL, err := netlink.NewHandleAt(netns.NsHandle(podNS.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink in %s: %w", a.netns, err)
	}
	defer podNL.Close()
	if err := a.refuseExisting(hostNL, podNL); err != nil {
		return nil, err
	}

	var undo rollback
	defer func() {
		if err != nil {
			if rerr := undo.run(); rerr != nil {
				err = withDetails(err, "rollback incomplete: "+rerr.Error())
			}
		}
	}()
	var br netlink.Link
	master := 0
	if a.conf.Mode == ModeBridge {
		if br, err = a.ensureBridge(hostNL); err != nil {
			return nil, err
		}
		master = br.Attrs().Index
	}
	host, podMAC, err := a.createVeth(hostNL, podNS, master, &undo)
	if err != nil {
		return nil, err
	}
	alloc, err := a.store().Allocate(a.key, pools(a.conf), len(a.conf.PortMappings) > 0)
	if err != nil {
		return nil, errorCode(fmt.Errorf("allocate addresses for %s: %w", a.key, err))
	}
	undo.push(func() error { _, _, err := a.store().ReleaseOwned(a.key, alloc.Token); return err })

	var w wiring
	if a.conf.Mode == ModeBridge {
		w, err = a.wireBridge(hostNL, podNL, podNS, br, host, podMAC, alloc.IPs)
	} else {
		w, err = a.wirePTP(hostNL, podNL, podNS, host, podMAC, alloc.IPs)
	}
	if err != nil {
		return nil, err
	}
	if len(a.conf.PortMappings) > 0 {
		undo.push(func() error { _, err := a.table().Remove(a.owner); return err })
		if err := a.table().Add(a.owner, alloc.IPs, a.hairpinFrom(alloc.IPs), a.conf.PortMappings); err != nil {
			return nil, err
		}
		// After Add, which has put the guard in place: from here on the
		// link lets 127.0.0.0/8 through only for DNATed connections.
		if hostport.AnyLocalhost(a.conf.PortMappings) {
			if err := setSysctls([]sysctl{a.routeLocalnet()}); err != nil {
				return nil, fmt.Errorf("hostPort on a loopback hostIP: %w", err)
			}
		}
	}
	return a.result(w, alloc.IPs), nil
}

// routeLocalnet is what a hostPort on a loopback hostIP needs: the node's
// connection to 127.0.0.1 is DNATed to the pod, and the kernel routes a
// packet with a loopback source out of a link, and takes the reply back
// to 127.0.0.1 in from it, only with route_localnet=1 on that link. It is
// set on the link the pod's traffic crosses and nowhere else — the host
// end (ptp: it goes with the veth on DEL) or the bridge (bridge mode: it
// stays, since DEL cannot know without racing a concurrent ADD whether
// another pod still needs it; the guard of pkg/hostport, which stays as
// long as the table, keeps it harmless) — never on all, default or an
// external interface (CVE-2020-8558).
func (a *attachment) routeLocalnet() sysctl {
	link := a.hostIf
	if a.conf.Mode == ModeBridge {
		link = a.conf.Bridge
	}
	return sysctl{"ipv4/conf/" + link + "/route_localnet", "1"}
}

// refuseExisting fails, before anything is changed, when CNI_IFNAME is
// taken in the pod or this attachment's host veth exists already (an ADD
// without DEL): the spec's error 4 naming the variable.
func (a *attachment) refuseExisting(hostNL, podNL *netlink.Handle) error {
	if _, err := podNL.LinkByName(a.key.IfName); err == nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_IFNAME=%s: an interface of that name already exists in %s", a.key.IfName, a.netns), "")
	} else if !isNotFound(err) {
		return fmt.Errorf("look up %s in %s: %w", a.key.IfName, a.netns, err)
	}
	if _, err := hostNL.LinkByName(a.hostIf); err == nil {
		return types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_CONTAINERID=%s CNI_IFNAME=%s: this attachment already has host interface %s: DEL it first", a.key.ContainerID, a.key.IfName, a.hostIf), "")
	} else if !isNotFound(err) {
		return fmt.Errorf("look up %s: %w", a.hostIf, err)
	}
	return nil
}

func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}

// withDetails adds to the details of a CNI error, or to the message of
// another error.
func withDetails(err error, more string) error {
	var te *types.Error
	if errors.As(err, &te) {
		d := te.Details
		if d != "" {
			d += "; "
		}
		return types.NewError(te.Code, te.Msg, d+more)
	}
	return fmt.Errorf("%w; %s", err, more)
}

// createVeth makes the pair: the host end directly in the host namespace
// (named hostIf, down), the pod end directly in the pod's namespace (named
// CNI_IFNAME). Nothing is created in one namespace and moved. The kernel
// ignores an alias given at creation, so it is set right after, and the
// master (bridge mode) too, so that a failed LinkAdd has created nothing.
//
// The rollback is pushed only once LinkAdd has succeeded, and deletes the
// link of that ifindex only: a pair that existed already (a concurrent ADD
// of the same attachment won the name) fails LinkAdd with EEXIST and is
// the spec's error 4, with nothing of it undone.
func (a *attachment) createVeth(hostNL *netlink.Handle, podNS ns.NetNS, master int, undo *rollback) (host *netlink.Veth, podMAC net.HardwareAddr, err error) {
	la := netlink.NewLinkAttrs()
	la.Name = a.hostIf
	la.MTU = a.conf.MTU
	la.HardwareAddr = randomMAC()
	podMAC = randomMAC()
	host = &netlink.Veth{LinkAttrs: la, PeerName: a.key.IfName, PeerNamespace: netlink.NsFd(podNS.Fd()),
		PeerHardwareAddr: podMAC, PeerMTU: uint32(max(a.conf.MTU, 0))}
	if err := hostNL.LinkAdd(host); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables,
				fmt.Sprintf("CNI_CONTAINERID=%s CNI_IFNAME=%s: host interface %s or %s in %s exists already: another ADD of this attachment is running or has run; DEL it first",
					a.key.ContainerID, a.key.IfName, a.hostIf, a.key.IfName, a.netns), "")
		}
		return nil, nil, fmt.Errorf("create veth %s (host) / %s (pod %s): %w", a.hostIf, a.key.IfName, a.netns, err)
	}
	// LinkAdd looked the new link up by name to fill in its index; a link
	// of that name is ours from here on, whatever index it has now.
	created := host.Index
	undo.push(func() error {
		if created == 0 { // the lookup after creating failed: go by name and alias
			return a.deleteHostLink(hostNL)
		}
		return a.deleteCreatedLink(hostNL, created)
	})
	if err := hostNL.LinkSetAlias(host, a.alias()); err != nil {
		return nil, nil, fmt.Errorf("set alias of %s: %w", a.hostIf, err)
	}
	if master != 0 {
		if err := hostNL.LinkSetMasterByIndex(host, master); err != nil {
			return nil, nil, fmt.Errorf("attach %s to the bridge: %w", a.hostIf, err)
		}
	}
	return host, podMAC, nil
}

// deleteCreatedLink is the rollback of createVeth: it deletes the link
// this call created, found by its index, and only if it still has this
// attachment's host name and is a veth (an index is not reused while the
// link exists; once gone, nothing is deleted).
func (a *attachment) deleteCreatedLink(hostNL *netlink.Handle, index int) error {
	l, err := hostNL.LinkByIndex(index)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s (index %d): %w", a.hostIf, index, err)
	}
	if l.Attrs().Name != a.hostIf || l.Type() != "veth" {
		return nil // not the link this call made
	}
	if err := hostNL.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", a.hostIf, err)
	}
	return nil
}

// deleteHostLink removes the host end (the pod end and every route and
// neighbour entry on either end go with it); a missing one is not an
// error. It deletes only a veth of this attachment's name carrying its
// alias, or no alias at all: an ADD killed between creating the pair and
// naming it leaves that, and the name is a hash of the attachment.
func (a *attachment) deleteHostLink(hostNL *netlink.Handle) error {
	l, err := hostNL.LinkByName(a.hostIf)
	if isNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up %s: %w", a.hostIf, err)
	}
	if alias := l.Attrs().Alias; l.Type() != "veth" || (alias != a.alias() && alias != "") {
		return fmt.Errorf("%s is not the veth of %s (type %s, alias %q): left alone", a.hostIf, a.owner, l.Type(), alias)
	}
	if err := hostNL.LinkDel(l); err != nil && !isNotFound(err) {
		return fmt.Errorf("delete %s: %w", a.hostIf, err)
	}
	return nil
}

// hostEndSysctls are what the host end of a pod link needs: no duplicate
// address detection (its addresses are known to be unique, and DAD would
// hold them back a second), proxy ARP without delay so a pod that lost its
// static neighbour entry still resolves its IPv4 gateway.
func hostEndSysctls(ifname string, v4, v6 bool, proxyARP bool) []sysctl {
	var s []sysctl
	if v4 && proxyARP {
		s = append(s, sysctl{"ipv4/conf/" + ifname + "/proxy_arp", "1"}, sysctl{"ipv4/neigh/" + ifname + "/proxy_delay", "0"})
	}
	if v6 {
		s = append(s, sysctl{"ipv6/conf/" + ifname + "/accept_dad", "0"})
	}
	return s
}

func families(ips []netip.Addr) (v4, v6 bool) {
	for _, ip := range ips {
		if ip.Is4() {
			v4 = true
		} else {
			v6 = true
		}
	}
	return
}

// configurePod sets up CNI_IFNAME inside the pod: DAD off, the addresses,
// link up, a permanent neighbour entry for each gateway when gwMAC is
// known (ptp: no ARP or neighbour discovery before the first packet), and
// the default routes.
func (a *attachment) configurePod(podNL *netlink.Handle, podNS ns.NetNS, ips []netip.Addr, gwMAC net.HardwareAddr) error {
	if _, v6 := families(ips); v6 {
		// /proc/sys/net is the calling thread's namespace: write it from a
		// thread inside the pod's.
		err := podNS.Do(func(ns.NetNS) error {
			return setSysctls([]sysctl{{"ipv6/conf/" + a.key.IfName + "/accept_dad", "0"}})
		})
		if err != nil {
			return fmt.Errorf("pod %s: %w", a.netns, err)
		}
	}
	link, err := podNL.LinkByName(a.key.IfName)
	if err != nil {
		return fmt.Errorf("find %s in %s: %w", a.key.IfName, a.netns, err)
	}
	for _, ip := range ips {
		addr := &netlink.Addr{IPNet: netipx.PrefixIPNet(a.podPrefix(ip))}
		if ip.Is6() {
			addr.Flags = unix.IFA_F_NODAD
		}
		if err := podNL.AddrAdd(link, addr); err != nil {
			return fmt.Errorf("add %s to %s in %s: %w", addr.IPNet, a.key.IfName, a.netns, err)
		}
	}
	if err := podNL.LinkSetUp(link); err != nil {
		return fmt.Errorf("set %s up in %s: %w", a.key.IfName, a.netns, err)
	}
	for _, ip := range ips {
		gw := a.gateway(ip)
		if gwMAC != nil {
			n := &netlink.Neigh{LinkIndex: link.Attrs().Index, Family: family(gw), State: netlink.NUD_PERMANENT,
				IP: gw.AsSlice(), HardwareAddr: gwMAC}
			if err := podNL.NeighAdd(n); err != nil {
				return fmt.Errorf("add neighbour %s lladdr %s on %s in %s: %w", gw, gwMAC, a.key.IfName, a.netns, err)
			}
		}
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: defaultDst(ip), Gw: gw.AsSlice()}
		if ip.Is4() && a.conf.Mode == ModePTP {
			r.Flags = int(netlink.FLAG_ONLINK) // the gateway is on no subnet of the pod
		}
		if err := podNL.RouteAdd(r); err != nil {
			if errors.Is(err, unix.EEXIST) {
				return fmt.Errorf("add default route via %s in %s: the pod already has a default route", gw, a.netns)
			}
			return fmt.Errorf("add default route via %s in %s: %w", gw, a.netns, err)
		}
	}
	return nil
}

// result is the ADD result: the interfaces, one address per family on the
// pod interface, and the default routes. A prevResult (kindnet chained
// after another plugin) is kept in front.
func (a *attachment) result(w wiring, ips []netip.Addr) *types100.Result {
	res := &types100.Result{CNIVersion: types100.ImplementedSpecVersion}
	offset := 0
	if prev := a.conf.PrevResult; prev != nil {
		res.Interfaces = append(res.Interfaces, prev.Interfaces...)
		res.IPs = append(res.IPs, prev.IPs...)
		res.Routes = append(res.Routes, prev.Routes...)
		res.DNS = prev.DNS
		offset = len(prev.Interfaces)
	}
	res.Interfaces = append(res.Interfaces, w.interfaces...)
	for _, ip := range ips {
		gw := a.gateway(ip)
		res.IPs = append(res.IPs, &types100.IPConfig{
			Interface: types100.Int(offset + w.podIndex),
			Address:   *netipx.PrefixIPNet(a.podPrefix(ip)),
			Gateway:   gw.AsSlice(),
		})
		res.Routes = append(res.Routes, &types.Route{Dst: *defaultDst(ip), GW: gw.AsSlice()})
	}
	return res
}

func defaultDst(ip netip.Addr) *net.IPNet {
	if ip.Is4() {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

func family(ip netip.Addr) int {
	if ip.Is4() {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// del undoes ADD as far as anything is left: the hostPort rules, the veth
// pair (with it every route and neighbour entry on it), and the addresses.
// It needs neither the pod's namespace nor any earlier state nor a valid
// runtime config, and succeeds when there is nothing to do. The hostPort
// table is looked at when the IPAM record says the attachment had
// hostPorts, when the record cannot be read, or when the runtime config
// mentions port mappings (the record may be gone).
func (a *attachment) del() error {
	timer := newStepTimer() // KINDNET_CNI_TIMING: where DEL's time goes
	defer timer.print("DEL")
	store := a.store()
	rec, found, getErr := store.Get(a.key)
	timer.mark("ipam-get")
	var errs []error
	if (found && rec.HostPorts) || a.conf.MentionsPortMappings || getErr != nil {
		if _, err := a.table().Remove(a.owner); err != nil {
			errs = append(errs, err)
		}
		timer.mark("hostport-remove")
	}
	hostNL, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer hostNL.Close()
	timer.mark("netlink-open")
	if err := a.deleteHostLink(hostNL); err != nil {
		errs = append(errs, err)
	}
	timer.mark("veth-del")
	if getErr != nil {
		errs = append(errs, getErr)
	} else if found {
		if _, _, err := store.Release(a.key); err != nil {
			errs = append(errs, err)
		}
		timer.mark("ipam-release")
	}
	return errorCode(errors.Join(errs...))
}

// gc releases everything of this network that belongs to no attachment in
// cni.dev/valid-attachments: addresses, hostPort rules and host veths
// (whose pod namespace may still exist if the runtime leaked it). It goes
// on past errors and reports them all.
func gc(conf *Config) error {
	valid := map[string]bool{}
	var keys []ipam.Key
	for _, v := range conf.ValidAttachments {
		valid[hostport.Owner(conf.Network, v.ContainerID, v.IfName)] = true
		keys = append(keys, ipam.Key{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	var errs []error
	if _, err := ipam.New(conf.IPAMDir, conf.Network).GC(keys); err != nil {
		errs = append(errs, err)
	}
	table := hostport.Table{Name: conf.HostPortTable}
	if _, err := table.GC(conf.Network, func(owner string) bool { return valid[owner] }); err != nil {
		errs = append(errs, err)
	}
	if err := gcLinks(conf.Network, valid); err != nil {
		errs = append(errs, err)
	}
	return errorCode(errors.Join(errs...))
}

func gcLinks(network string, valid map[string]bool) error {
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("open netlink: %w", err)
	}
	defer nl.Close()
	links, err := nldump.LinkList(nl)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	var errs []error
	for _, l := range links {
		owner, ok := strings.CutPrefix(l.Attrs().Alias, aliasPrefix)
		if !ok || l.Type() != "veth" || !strings.HasPrefix(owner, network+"/") || valid[owner] {
			continue
		}
		if err := nl.LinkDel(l); err != nil && !isNotFound(err) {
			errs = append(errs, fmt.Errorf("delete stale %s (%s): %w", l.Attrs().Name, owner, err))
		}
	}
	return errors.Join(errs...)
}

// DisableRouteLocalnet turns route_localnet off on every host end the
// plugin made (veths carrying its alias) and on the bridge, where a
// hostPort on a loopback hostIP turned it on. `kindnet cleanup` calls it
// before it deletes the hostPort table, whose guard is what keeps those
// links from letting 127.0.0.0/8 in. It returns how many links it changed.
func DisableRouteLocalnet(nl *netlink.Handle, bridge string) (int, error) {
	links, err := nldump.LinkList(nl)
	if err != nil {
		return 0, fmt.Errorf("list links: %w", err)
	}
	var errs []error
	n := 0
	for _, l := range links {
		attrs := l.Attrs()
		ours := (l.Type() == "veth" && strings.HasPrefix(attrs.Alias, aliasPrefix)) || (l.Type() == "bridge" && attrs.Name == bridge)
		if !ours {
			continue
		}
		key := "ipv4/conf/" + attrs.Name + "/route_localnet"
		v, err := os.ReadFile("/proc/sys/net/" + key)
		if err != nil {
			errs = append(errs, fmt.Errorf("read net.%s: %w", dotted(key), err))
			continue
		}
		if strings.TrimSpace(string(v)) == "0" {
			continue
		}
		if err := setSysctls([]sysctl{{key, "0"}}); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}
