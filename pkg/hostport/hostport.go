// Package hostport gives pods their hostPorts: traffic to a port on one of
// the node's own addresses — from another host, from the node itself, or
// from a pod on this node (hairpin) — is DNATed to the pod's address and
// container port, for IPv4 and IPv6. A mapping on an IPv4 loopback hostIP
// (127.0.0.1) is reached from the node itself only: it is DNATed in the
// output hook and masqueraded, and a guard drops what arrives from outside
// for 127.0.0.0/8 (see the localhost chains below).
//
// It owns one nftables table of family inet, named by the CNI config
// (default "kindnet_hostport"), written through google/nftables. Each
// per-pod rule carries a comment naming the attachment it belongs to, so
// DEL removes exactly that attachment's rules and GC those of attachments
// that are gone. It never lists, flushes or changes any other table, and
// never touches links, addresses, routes or sysctls: the route_localnet a
// loopback mapping needs on the pod's host-side link is the CNI plugin's
// to set (pkg/cni), after Add has installed the guard.
package hostport

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/nftutil"
)

// DefaultTable is the table name when the CNI config names none.
const DefaultTable = "kindnet_hostport"

// Chain names inside the table.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainHostPorts   = "hostports"
	// chainLocalhost (nat, output hook) holds the DNAT rules of mappings on
	// a loopback hostIP, and chainGuard (filter, prerouting hook) the two
	// rules that keep 127.0.0.0/8 local. Both are made by the first ADD
	// with such a mapping, also in a table an older kindnet created.
	chainLocalhost = "localhost"
	chainGuard     = "localnet_guard"
)

// Comments of the guard's rules (they belong to no attachment).
const (
	guardLoopbackSource = "localnet guard: loopback source from outside"
	guardLoopbackDest   = "localnet guard: loopback destination not DNATed"
)

// loopbackV4 is 127.0.0.0/8.
var loopbackV4 = netip.MustParsePrefix("127.0.0.0/8")

// Mapping is one hostPort of a pod (CNI's runtimeConfig.portMappings).
type Mapping struct {
	HostPort      uint16
	ContainerPort uint16
	Protocol      string // "tcp", "udp" or "sctp"
	// HostIP, when valid, limits the mapping to that node address; zero
	// means every address of the node.
	HostIP netip.Addr
}

func (m Mapping) String() string {
	host := "*"
	if m.HostIP.IsValid() {
		host = m.HostIP.String()
	}
	return fmt.Sprintf("%s %s:%d->%d", m.Protocol, host, m.HostPort, m.ContainerPort)
}

// ctStatusDNAT is IPS_DST_NAT, the conntrack status bit of a DNATed
// connection (nft's "ct status dnat").
const ctStatusDNAT = 1 << 5

var protocols = map[string]byte{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP, "sctp": unix.IPPROTO_SCTP}

// Validate checks one mapping as it comes from the runtime.
func Validate(m Mapping) error {
	if _, ok := protocols[m.Protocol]; !ok {
		return fmt.Errorf("hostPort %d: protocol %q is not supported: expected tcp, udp or sctp", m.HostPort, m.Protocol)
	}
	if m.HostPort == 0 || m.ContainerPort == 0 {
		return fmt.Errorf("port mapping %s: hostPort and containerPort must be between 1 and 65535", m)
	}
	if m.HostIP.Is6() && m.HostIP.IsLoopback() {
		return fmt.Errorf("port mapping %s: hostIP ::1 is not supported: Linux never routes IPv6 loopback traffic off the loopback device (IPv6 has no route_localnet), so it cannot reach a pod; use 127.0.0.1 or an address of the node", m)
	}
	return nil
}

// localhost says whether m is reached through 127.0.0.0/8.
func (m Mapping) localhost() bool { return m.HostIP.Is4() && m.HostIP.IsLoopback() }

// AnyLocalhost says whether a mapping is on an IPv4 loopback hostIP: the
// pod's host-side link (ptp) or the bridge then needs route_localnet=1,
// which the caller sets after Add, never before (Add installs the guard).
func AnyLocalhost(ms []Mapping) bool { return slices.ContainsFunc(ms, Mapping.localhost) }

// Table is the hostPort table in one network namespace.
type Table struct {
	Name string
	// NetNSFd, when non-zero, is the network namespace to manage (tests);
	// zero means the caller's own namespace.
	NetNSFd int
}

func (t Table) conn() (*nftables.Conn, error) { return nftutil.Open(t.NetNSFd) }

// table is "table inet kindnet_hostport".
func (t Table) table() *nftables.Table { return nftutil.INet(t.Name) }

// Owner is the tag of an attachment's rules: network, container ID and
// interface name, none of which may contain a '/'.
func Owner(network, containerID, ifname string) string {
	return network + "/" + containerID + "/" + ifname
}

// Add installs the rules of one attachment: for every mapping and every pod
// address of a family the mapping applies to, a DNAT rule, and a
// masquerade rule for traffic from hairpinFrom that must come back through
// the node: the pod itself (a reply to itself would never reach the node
// to be un-DNATed), and on a bridge every pod of the node (a neighbour's
// reply would go straight over the bridge).
//
// A mapping on a loopback hostIP gets instead a DNAT rule in the localhost
// chain (output hook: only the node's own traffic) and a masquerade rule
// for its loopback source; the guard is made complete in the same
// transaction, so it is in place before the caller sets route_localnet.
func (t Table) Add(owner string, podIPs []netip.Addr, hairpinFrom []netip.Prefix, ms []Mapping) error {
	rules, err := t.rulesFor(owner, podIPs, hairpinFrom, ms)
	if err != nil || len(rules) == 0 {
		return err
	}
	c, err := t.conn()
	if err != nil {
		return err
	}
	if err := t.ensureSkeleton(c); err != nil {
		return err
	}
	if AnyLocalhost(ms) {
		if err := t.ensureLocalhost(c); err != nil {
			return err
		}
	}
	for _, r := range rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("add hostPort rules of %s to inet %s: %w", owner, t.Name, err)
	}
	return nil
}

// ensureSkeleton creates the table with its chains and jump rules in one
// transaction that fails when the table exists: concurrent plugin
// processes end up with exactly one copy of the jump rules.
//
//	table inet kindnet_hostport {
//	  chain prerouting { type nat hook prerouting priority dstnat; policy accept;
//	    meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local jump hostports
//	    meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local jump hostports }
//	  chain output { type nat hook output priority dstnat; policy accept;
//	    (the same two rules) }
//	  chain hostports { (DNAT rules, one per mapping and family) }
//	  chain postrouting { type nat hook postrouting priority srcnat; policy accept;
//	    (hairpin masquerade rules, one per mapping and family) }
//	}
//
// Loopback destinations are left alone here: only a mapping on a loopback
// hostIP answers on 127.0.0.0/8, through the localhost chain and its guard
// (ensureLocalhost), which a table gets with the first such mapping.
func (t Table) ensureSkeleton(c *nftables.Conn) error {
	tbl := t.table()
	c.CreateTable(tbl)
	accept := nftables.ChainPolicyAccept
	pre := c.AddChain(&nftables.Chain{Name: chainPrerouting, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	out := c.AddChain(&nftables.Chain{Name: chainOutput, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	c.AddChain(&nftables.Chain{Name: chainHostPorts, Table: tbl})
	c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	for _, ch := range []*nftables.Chain{pre, out} {
		for _, f := range nftutil.Families {
			// meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local jump hostports
			c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: jumpExprs(f)})
		}
	}
	err := c.Flush()
	if errors.Is(err, unix.EEXIST) {
		return nil // another ADD made it first
	}
	if err != nil {
		return fmt.Errorf("create nftables table inet %s: %w", t.Name, err)
	}
	return nil
}

// rulesFor lays out an attachment's rules, each tagged "<owner> <what>".
func (t Table) rulesFor(owner string, podIPs []netip.Addr, hairpinFrom []netip.Prefix, ms []Mapping) ([]*nftables.Rule, error) {
	tbl := t.table()
	masqChain := &nftables.Chain{Name: chainPostrouting, Table: tbl}
	var rules []*nftables.Rule
	for _, m := range ms {
		if err := Validate(m); err != nil {
			return nil, err
		}
		n := len(rules)
		for _, f := range nftutil.Families {
			pod, ok := f.Pick(podIPs)
			if !ok || (m.HostIP.IsValid() && m.HostIP.Is4() != f.Is4) {
				continue
			}
			comment := owner + " dnat " + f.Name + " " + m.String()
			if len(comment) > 250 {
				return nil, fmt.Errorf("hostPort rule tag %q is too long for an nftables comment: use shorter network names or container IDs", comment)
			}
			dnatChain := &nftables.Chain{Name: chainHostPorts, Table: tbl}
			// Traffic from 127.0.0.0/8 must not reach the pod with that
			// source (the pod would drop it as martian, and its reply would
			// never come back): masquerade it. Pods cannot reach a loopback
			// hostIP of the node, so there is no hairpin.
			masqFrom := f.Filter(hairpinFrom)
			what := "hairpin"
			if m.localhost() {
				dnatChain = &nftables.Chain{Name: chainLocalhost, Table: tbl}
				masqFrom, what = []netip.Prefix{loopbackV4}, "localhost"
			}
			// meta nfproto ipv4 [ip daddr <hostIP>] meta l4proto tcp th dport 8080 dnat ip to 10.244.1.5:80
			rules = append(rules, &nftables.Rule{Table: tbl, Chain: dnatChain, Exprs: dnatExprs(f, m, pod),
				UserData: userdata.AppendString(nil, userdata.TypeComment, comment)})
			for _, r := range masqFrom {
				// meta nfproto ipv4 ct status dnat ip saddr <r> ip daddr <pod> meta l4proto tcp th dport 80 masquerade
				rules = append(rules, &nftables.Rule{Table: tbl, Chain: masqChain, Exprs: hairpinExprs(f, m, pod, r),
					UserData: userdata.AppendString(nil, userdata.TypeComment, owner+" "+what+" "+f.Name+" "+m.String()+" from "+r.String())})
			}
		}
		if len(rules) == n {
			return nil, fmt.Errorf("port mapping %s: the pod has no address of the family of hostIP %s", m, m.HostIP)
		}
	}
	return rules, nil
}

// Remove deletes every rule of the attachment. A missing table or no rule
// is not an error; it returns how many rules went.
func (t Table) Remove(owner string) (int, error) {
	return t.deleteWhere(func(o string) bool { return o == owner })
}

// GC deletes the rules of every attachment of network for which keep says
// false. Rules of other networks are left alone.
func (t Table) GC(network string, keep func(owner string) bool) (int, error) {
	return t.deleteWhere(func(o string) bool { return strings.HasPrefix(o, network+"/") && !keep(o) })
}

func (t Table) deleteWhere(match func(owner string) bool) (int, error) {
	c, err := t.conn()
	if err != nil {
		return 0, err
	}
	rules, err := t.listRules(c)
	if err != nil || len(rules) == 0 {
		return 0, err
	}
	n := 0
	for _, r := range rules {
		if owner, _ := ruleOwner(r); owner != "" && match(owner) {
			if err := c.DelRule(r); err != nil {
				return 0, fmt.Errorf("delete hostPort rule: %w", err)
			}
			n++
		}
	}
	if n == 0 {
		return 0, nil
	}
	if err := c.Flush(); err != nil {
		return 0, fmt.Errorf("delete hostPort rules from inet %s: %w", t.Name, err)
	}
	return n, nil
}

// listRules returns the rules of the chains that hold per-attachment
// rules; nothing when the table (or, in a table made before loopback
// hostIPs were supported, the localhost chain) does not exist.
func (t Table) listRules(c *nftables.Conn) ([]*nftables.Rule, error) {
	tbl := t.table()
	var out []*nftables.Rule
	for _, name := range []string{chainHostPorts, chainLocalhost, chainPostrouting} {
		rules, err := c.GetRules(tbl, &nftables.Chain{Name: name, Table: tbl})
		if errors.Is(err, unix.ENOENT) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("list rules of inet %s chain %s: %w", t.Name, name, err)
		}
		out = append(out, rules...)
	}
	return out, nil
}

func ruleOwner(r *nftables.Rule) (owner, what string) {
	comment, ok := userdata.GetString(r.UserData, userdata.TypeComment)
	if !ok {
		return "", ""
	}
	owner, what, _ = strings.Cut(comment, " ")
	return owner, what
}

// Check reports an error unless the attachment has exactly the rules Add
// would install for it, and, for a mapping on a loopback hostIP, the guard
// is complete.
func (t Table) Check(owner string, podIPs []netip.Addr, hairpinFrom []netip.Prefix, ms []Mapping) error {
	want, err := t.rulesFor(owner, podIPs, hairpinFrom, ms)
	if err != nil {
		return err
	}
	c, err := t.conn()
	if err != nil {
		return err
	}
	rules, err := t.listRules(c)
	if err != nil {
		return err
	}
	var have, need []string
	for _, r := range rules {
		if o, what := ruleOwner(r); o == owner {
			have = append(have, what)
		}
	}
	for _, r := range want {
		_, what := ruleOwner(r)
		need = append(need, what)
	}
	slices.Sort(have)
	slices.Sort(need)
	if !slices.Equal(have, need) {
		return fmt.Errorf("hostPort rules of %s in inet %s: have %q, want %q", owner, t.Name, have, need)
	}
	if AnyLocalhost(ms) {
		ok, err := t.guardComplete(c)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("hostPort rules of %s: chain %s of inet %s lacks the rules that keep 127.0.0.0/8 local", owner, chainGuard, t.Name)
		}
	}
	return nil
}

// ensureLocalhost queues, in c's transaction, what mappings on a loopback
// hostIP need besides their own rules: the localhost chain, and the guard
// with exactly its two rules. The guard is rewritten (flushed and filled
// in one transaction, so no packet ever sees it empty) only when it is not
// complete: concurrent ADDs that all find it incomplete still leave
// exactly two rules, and its counters survive the ADDs that find it whole.
//
//	chain localhost { type nat hook output priority dstnat; policy accept;
//	  (DNAT rules of loopback hostIPs, one per mapping) }
//	chain localnet_guard { type filter hook prerouting priority filter; policy accept;
//	  meta nfproto ipv4 ip saddr 127.0.0.0/8 iifname != "lo" counter drop
//	  meta nfproto ipv4 ip daddr 127.0.0.0/8 iifname != "lo" ct status ! dnat counter drop }
//
// The localhost chain hooks output only: traffic arriving for 127.0.0.0/8
// is never DNATed. The guard runs after conntrack and the nat prerouting
// hook (priority filter > dstnat), so the reply of a DNATed localhost
// connection, whose destination the kernel has just turned back into
// 127.0.0.1, carries "ct status dnat" and passes; anything else arriving
// from outside lo with a loopback source or destination is what
// route_localnet=1 on an interface would let in (CVE-2020-8558), and is
// dropped. Without route_localnet the kernel drops those packets as
// martians anyway; the guard makes the pod-facing links on which kindnet
// sets it, and any interface an administrator sets it on, no different.
func (t Table) ensureLocalhost(c *nftables.Conn) error {
	complete, err := t.guardComplete(c)
	if err != nil {
		return err
	}
	tbl := t.table()
	accept := nftables.ChainPolicyAccept
	c.AddChain(&nftables.Chain{Name: chainLocalhost, Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept})
	if complete {
		return nil
	}
	guard := c.AddChain(&nftables.Chain{Name: chainGuard, Table: tbl, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	c.FlushChain(guard)
	c.AddRule(&nftables.Rule{Table: tbl, Chain: guard, Exprs: guardSourceExprs(),
		UserData: userdata.AppendString(nil, userdata.TypeComment, guardLoopbackSource)})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: guard, Exprs: guardDestExprs(),
		UserData: userdata.AppendString(nil, userdata.TypeComment, guardLoopbackDest)})
	return nil
}

// guardComplete says whether the guard chain holds exactly its two rules.
func (t Table) guardComplete(c *nftables.Conn) (bool, error) {
	tbl := t.table()
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: chainGuard, Table: tbl})
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("list rules of inet %s chain %s: %w", t.Name, chainGuard, err)
	}
	var have []string
	for _, r := range rules {
		comment, _ := userdata.GetString(r.UserData, userdata.TypeComment)
		have = append(have, comment)
	}
	return slices.Equal(have, []string{guardLoopbackSource, guardLoopbackDest}), nil
}

// Cleanup removes the whole table; it reports whether there was one.
func Cleanup(name string, netnsFd int) (bool, error) {
	c, err := nftutil.Open(netnsFd)
	if err != nil {
		return false, err
	}
	// delete table inet <name>
	return nftutil.DeleteTable(c, name)
}

// jumpExprs sends traffic for the node's own addresses to the hostports
// chain:
//
//	meta nfproto ipv4 ip daddr != 127.0.0.0/8 fib daddr type local jump hostports
//	meta nfproto ipv6 ip6 daddr != ::1 fib daddr type local jump hostports
func jumpExprs(f nftutil.Family) []expr.Any {
	// meta nfproto ipv4
	e := f.NFProtoExprs()
	if f.Is4 {
		e = append(e,
			// ip daddr != 127.0.0.0/8
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.DAddr, Len: f.Size},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
		)
	} else {
		e = append(e,
			// ip6 daddr != ::1
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.DAddr, Len: f.Size},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: netip.IPv6Loopback().AsSlice()},
		)
	}
	return append(e,
		// fib daddr type local
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		// jump hostports
		&expr.Verdict{Kind: expr.VerdictJump, Chain: chainHostPorts},
	)
}

// protoPortExprs matches the transport protocol and destination port:
//
//	meta l4proto tcp th dport 8080
func protoPortExprs(proto string, port uint16) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{protocols[proto]}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
}

// dnatExprs is one mapping for one family:
//
//	meta nfproto ipv4 [ip daddr <hostIP>] meta l4proto tcp th dport 8080 dnat ip to 10.244.1.5:80
func dnatExprs(f nftutil.Family, m Mapping, pod netip.Addr) []expr.Any {
	// meta nfproto ipv4
	e := f.NFProtoExprs()
	if m.HostIP.IsValid() {
		// ip daddr <hostIP>
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.DAddr, Len: f.Size},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: m.HostIP.AsSlice()},
		)
	}
	e = append(e, protoPortExprs(m.Protocol, m.HostPort)...)
	return append(e,
		// dnat ip to <pod>:<containerPort>
		&expr.Immediate{Register: 1, Data: pod.AsSlice()},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(m.ContainerPort)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: uint32(f.NFProto), RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}

// hairpinExprs masquerades DNATed traffic from a source that must see the
// reply come back through the node:
//
//	meta nfproto ipv4 ct status dnat ip saddr 10.244.1.5/32 ip daddr 10.244.1.5
//	  meta l4proto tcp th dport 80 masquerade
//
// (The original destination port cannot be matched too: google/nftables
// cannot read back a rule holding "ct original proto-dst".)
func hairpinExprs(f nftutil.Family, m Mapping, pod netip.Addr, from netip.Prefix) []expr.Any {
	// meta nfproto ipv4
	e := f.NFProtoExprs()
	e = append(e,
		// ct status dnat
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		// ip saddr 10.244.1.5/32
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.SAddr, Len: f.Size},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: f.Size, Mask: prefixMask(from), Xor: make([]byte, f.Size)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: from.Masked().Addr().AsSlice()},
		// ip daddr 10.244.1.5
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.DAddr, Len: f.Size},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: pod.AsSlice()},
	)
	e = append(e, protoPortExprs(m.Protocol, m.ContainerPort)...)
	// masquerade
	return append(e, &expr.Masq{})
}

// loopbackExprs matches an IPv4 address field inside 127.0.0.0/8 on a
// packet that did not come in through lo:
//
//	meta nfproto ipv4 ip saddr 127.0.0.0/8 iifname != "lo"
func loopbackExprs(offset uint32) []expr.Any {
	// meta nfproto ipv4
	e := nftutil.IPv4.NFProtoExprs()
	return append(e,
		// ip saddr 127.0.0.0/8 (or daddr, by offset)
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: prefixMask(loopbackV4), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: loopbackV4.Addr().AsSlice()},
		// iifname != "lo"
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname("lo")},
	)
}

// guardSourceExprs drops a loopback source from outside: nothing
// legitimate has one (the kernel drops it as martian on an interface
// without route_localnet).
//
//	meta nfproto ipv4 ip saddr 127.0.0.0/8 iifname != "lo" counter drop
func guardSourceExprs() []expr.Any {
	return append(loopbackExprs(nftutil.IPv4.SAddr),
		// counter
		&expr.Counter{},
		// drop
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// guardDestExprs drops a loopback destination from outside unless the
// connection was DNATed (the reply of a localhost hostPort connection, or
// someone's deliberate DNAT to a loopback address):
//
//	meta nfproto ipv4 ip daddr 127.0.0.0/8 iifname != "lo" ct status ! dnat counter drop
func guardDestExprs() []expr.Any {
	return append(loopbackExprs(nftutil.IPv4.DAddr),
		// ct status ! dnat
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
		// counter
		&expr.Counter{},
		// drop
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// ifname is an interface name as the kernel compares it: NUL-padded to
// IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// prefixMask is the netmask of p as bytes.
func prefixMask(p netip.Prefix) []byte {
	b := make([]byte, p.Addr().BitLen()/8)
	for i := range p.Bits() {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return b
}
