package model

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// policy is a node n1 at 192.168.100.11 / fd00:100::11 on 192.168.100.0/24,
// default gateway 192.168.100.1, in a dual-stack cluster.
func policy() Policy {
	return Policy{
		ClusterCIDRs: pfx("10.244.0.0/16", "fd00:10:244::/56"),
		HostAddrs:    addrs("192.168.100.11", "fd00:100::11"),
		HostSubnets:  pfx("192.168.100.0/24", "fd00:100::/64"),
		Protected:    addrs("192.168.100.1", "10.96.0.1"),
	}
}

func view(peers ...Node) View {
	return View{Self: Node{Name: "n1", Addresses: []string{"192.168.100.11"}, PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}}, Peers: peers}
}

func good(name, v4, v6, c4, c6 string) Node {
	return Node{Name: name, Addresses: []string{v4, v6}, PodCIDRs: []string{c4, c6}}
}

func TestValidPeersAreAccepted(t *testing.T) {
	s := Validate(view(
		good("n2", "192.168.100.12", "fd00:100::12", "10.244.2.0/24", "fd00:10:244:2::/64"),
		Node{Name: "n3", Addresses: []string{"192.168.100.13"}, PodCIDRs: []string{"10.244.3.0/24"}},
		Node{Name: "n4", Addresses: []string{"192.168.100.14"}}, // pending: no podCIDR yet
	), policy())
	if len(s.Rejected) != 0 || len(s.Peers) != 3 {
		t.Fatalf("peers %+v rejected %+v", s.Peers, s.Rejected)
	}
	if s.Self.PodCIDRs[1] != netip.MustParsePrefix("fd00:10:244:1::/64") {
		t.Fatalf("self podCIDRs %v", s.Self.PodCIDRs)
	}
	if via, _ := s.Peers[0].Via(netip.MustParsePrefix("fd00:10:244:2::/64")); via != netip.MustParseAddr("fd00:100::12") {
		t.Fatalf("via = %s", via)
	}
}

func TestHostilePeersAreRejectedWithReasonAndOthersUnaffected(t *testing.T) {
	cases := []struct {
		name   string
		node   Node
		reason string
	}{
		{"default route", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"0.0.0.0/0"}}, "default route"},
		{"too wide", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.0.0.0/7"}}, "too wide"},
		{"IPv6 default", Node{Name: "x", Addresses: []string{"fd00:100::50"}, PodCIDRs: []string{"::/0"}}, "default route"},
		{"host bits", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.244.9.1/24"}}, "not a network address"},
		{"unparsable", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.244.9.0/24x"}}, "does not parse"},
		{"outside clusterCIDRs", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.99.0.0/24"}}, "outside clusterCIDRs"},
		{"overlaps node subnet", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"192.168.100.0/25"}}, "outside clusterCIDRs"},
		{"overlaps self", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.244.1.0/25"}}, "this node's podCIDR"},
		{"duplicate of n2", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.244.2.0/24"}}, "overlaps podCIDR 10.244.2.0/24 of node n2"},
		{"own address", Node{Name: "x", Addresses: []string{"192.168.100.11"}, PodCIDRs: []string{"10.244.9.0/24"}}, "this node's own address"},
		{"address of n2", Node{Name: "x", Addresses: []string{"192.168.100.12"}, PodCIDRs: []string{"10.244.9.0/24"}}, "already used by node n2"},
		{"address in pod range", Node{Name: "x", Addresses: []string{"10.244.2.7"}, PodCIDRs: []string{"10.244.9.0/24"}}, "inside"},
		{"loopback address", Node{Name: "x", Addresses: []string{"127.0.0.1"}, PodCIDRs: []string{"10.244.9.0/24"}}, "loopback"},
		{"multicast address", Node{Name: "x", Addresses: []string{"224.0.0.5"}, PodCIDRs: []string{"10.244.9.0/24"}}, "multicast"},
		{"link-local address", Node{Name: "x", Addresses: []string{"fe80::1"}, PodCIDRs: []string{"fd00:10:244:9::/64"}}, "link-local"},
		{"mapped address", Node{Name: "x", Addresses: []string{"::ffff:192.168.100.50"}, PodCIDRs: []string{"10.244.9.0/24"}}, "IPv4-mapped"},
		{"garbage address", Node{Name: "x", Addresses: []string{"not-an-ip"}, PodCIDRs: []string{"10.244.9.0/24"}}, "does not parse"},
		{"no address of family", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"fd00:10:244:9::/64"}}, "no IPv6 address"},
		{"two of one family", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{"10.244.9.0/24", "10.244.10.0/24"}}, "same family"},
		{"absurd count", Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: make([]string, 10000)}, "10000 podCIDRs"},
		{"bad name", Node{Name: "X_1", Addresses: []string{"192.168.100.50"}}, "not a valid Kubernetes node name"},
		{"self name", Node{Name: "n1", Addresses: []string{"192.168.100.50"}}, "this node's own name"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n2 := good("n2", "192.168.100.12", "fd00:100::12", "10.244.2.0/24", "fd00:10:244:2::/64")
			s := Validate(view(n2, c.node), policy())
			if len(s.Peers) != 1 || s.Peers[0].Name != "n2" {
				t.Fatalf("n2 was affected: peers %+v rejected %+v", s.Peers, s.Rejected)
			}
			if len(s.Rejected) != 1 || !strings.Contains(s.Rejected[0].Reason, c.reason) {
				t.Fatalf("rejected = %+v, want one with reason containing %q", s.Rejected, c.reason)
			}
		})
	}
}

func TestProtectedAddressesAndHostSubnetsWithoutClusterCIDRs(t *testing.T) {
	pol := policy()
	pol.ClusterCIDRs = nil
	for _, c := range []struct{ cidr, reason string }{
		{"192.168.100.128/25", "connected subnet"},
		{"10.96.0.0/12", "covers 10.96.0.1"},
		{"169.254.0.0/16", "special range"},
		{"224.0.0.0/8", "special range"},
	} {
		s := Validate(view(Node{Name: "x", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{c.cidr}}), pol)
		if len(s.Rejected) != 1 || !strings.Contains(s.Rejected[0].Reason, c.reason) {
			t.Errorf("%s: rejected = %+v, want reason %q", c.cidr, s.Rejected, c.reason)
		}
	}
}

func TestConflictIsWonByThePeerAcceptedBefore(t *testing.T) {
	old := Node{Name: "zz-old", Addresses: []string{"192.168.100.20"}, PodCIDRs: []string{"10.244.5.0/24"}}
	newcomer := Node{Name: "aa-new", Addresses: []string{"192.168.100.21"}, PodCIDRs: []string{"10.244.5.0/24"}}
	first := Validate(view(old), policy())
	pol := policy()
	pol.Previous = &first
	s := Validate(view(old, newcomer), pol)
	if len(s.Peers) != 1 || s.Peers[0].Name != "zz-old" || s.Rejected[0].Node.Name != "aa-new" {
		t.Fatalf("peers %+v rejected %+v: the earlier owner must keep its podCIDR", s.Peers, s.Rejected)
	}
	// Without history the name decides, deterministically.
	s = Validate(view(old, newcomer), policy())
	if s.Peers[0].Name != "aa-new" {
		t.Fatalf("without history: peers %+v", s.Peers)
	}
}

func TestOwnPodCIDRProblemsAreReported(t *testing.T) {
	v := view()
	v.Self.PodCIDRs = []string{"10.99.0.0/24"}
	s := Validate(v, policy())
	if len(s.Self.PodCIDRs) != 0 || !strings.Contains(s.SelfProblem, "outside clusterCIDRs") {
		t.Fatalf("self %+v problem %q", s.Self, s.SelfProblem)
	}
	pol := policy()
	pol.SelfPodCIDRs = pfx("10.244.7.0/24")
	if s := Validate(v, pol); s.Self.PodCIDRs[0] != pfx("10.244.7.0/24")[0] {
		t.Fatalf("config podCIDRs did not override: %v", s.Self.PodCIDRs)
	}
}

func TestEveryTooWidePodCIDRIsRejected(t *testing.T) {
	pol := policy()
	pol.ClusterCIDRs = nil // so width itself must reject them
	for bits := 0; bits <= 7; bits++ {
		cidr := fmt.Sprintf("0.0.0.0/%d", bits)
		s := Validate(view(Node{Name: "wide", Addresses: []string{"192.168.100.50"}, PodCIDRs: []string{cidr}}), pol)
		if len(s.Peers) != 0 || len(s.Rejected) != 1 {
			t.Errorf("%s accepted: %+v", cidr, s.Peers)
		}
	}
	for _, c := range []string{"::ffff:10.244.80.0/120", "fe80::/64", "ff02::/16", "169.254.0.0/16", "224.0.0.0/24"} {
		s := Validate(view(Node{Name: "special", Addresses: []string{"192.168.100.50", "fd00:100::50"}, PodCIDRs: []string{c}}), pol)
		if len(s.Rejected) != 1 {
			t.Errorf("%s accepted: %+v", c, s.Peers)
		}
	}
}

func TestRejectionKeepsOnlyAnExcerptOfAHugeNode(t *testing.T) {
	cidrs := make([]string, 10000)
	for i := range cidrs {
		cidrs[i] = fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)
	}
	long := strings.Repeat("x", 100000)
	s := Validate(view(Node{Name: long, Addresses: []string{"192.168.100.50"}, PodCIDRs: cidrs}), policy())
	if len(s.Rejected) != 1 {
		t.Fatalf("rejected = %d", len(s.Rejected))
	}
	r := s.Rejected[0]
	if len(r.Node.PodCIDRs) != excerptItems+1 || r.Node.PodCIDRs[excerptItems] != "(+9996 more)" || len(r.Node.Name) > excerptLen+4 {
		t.Fatalf("rejection keeps %d podCIDRs, name of %d bytes", len(r.Node.PodCIDRs), len(r.Node.Name))
	}
	if len(r.Reason) > 400 {
		t.Fatalf("reason of %d bytes", len(r.Reason))
	}
}

// After a restart (no previous snapshot in memory) the node the kernel
// still routes a podCIDR to, or the one the cache names as accepted,
// keeps it: a newcomer whose name sorts first does not take it over.
func TestConflictIsWonByTheHolderAcrossARestart(t *testing.T) {
	old := Node{Name: "node2", Addresses: []string{"192.168.100.12"}, PodCIDRs: []string{"10.244.2.0/24"}}
	evil := Node{Name: "a-evil", Addresses: []string{"192.168.100.66"}, PodCIDRs: []string{"10.244.2.0/24"}}
	for _, c := range []struct {
		name string
		set  func(*Policy)
	}{
		{"route installed via node2", func(p *Policy) {
			p.Held = map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.244.2.0/24"): netip.MustParseAddr("192.168.100.12")}
		}},
		{"cache names node2", func(p *Policy) { p.Incumbents = []string{"node2"} }},
	} {
		pol := policy()
		c.set(&pol)
		s := Validate(view(evil, old), pol)
		if len(s.Peers) != 1 || s.Peers[0].Name != "node2" || len(s.Rejected) != 1 || s.Rejected[0].Node.Name != "a-evil" {
			t.Errorf("%s: peers %+v rejected %+v: node2 must keep 10.244.2.0/24", c.name, s.Peers, s.Rejected)
		}
	}
	// A held route via another address proves nothing about a-evil.
	pol := policy()
	pol.Held = map[netip.Prefix]netip.Addr{netip.MustParsePrefix("10.244.2.0/24"): netip.MustParseAddr("192.168.100.12")}
	evil.Addresses = []string{"192.168.100.67"}
	if s := Validate(view(evil), pol); len(s.Peers) != 1 {
		t.Fatalf("alone, a-evil is simply accepted: %+v", s.Rejected)
	}
}

// Two entries with the same peer name: neither is trusted, whatever they claim.
func TestDuplicatePeerNameRejectsEveryEntry(t *testing.T) {
	a := Node{Name: "node2", Addresses: []string{"192.168.100.12"}, PodCIDRs: []string{"10.244.2.0/24"}}
	b := Node{Name: "node2", Addresses: []string{"192.168.100.66"}, PodCIDRs: []string{"10.244.66.0/24"}}
	ok := Node{Name: "node3", Addresses: []string{"192.168.100.13"}, PodCIDRs: []string{"10.244.3.0/24"}}
	s := Validate(view(a, b, ok), policy())
	if len(s.Peers) != 1 || s.Peers[0].Name != "node3" {
		t.Fatalf("peers %+v: only node3 may be accepted", s.Peers)
	}
	if len(s.Rejected) != 2 {
		t.Fatalf("rejected %+v: both node2 entries must be rejected", s.Rejected)
	}
	for _, r := range s.Rejected {
		if !strings.Contains(r.Reason, "duplicate node name: 2 entries are named node2") {
			t.Errorf("reason %q does not say why", r.Reason)
		}
	}
}

// A peer at the network or broadcast address of a connected IPv4 subnet
// (/30 or wider) can never be a gateway: the kernel refuses the route.
func TestPeerAtTheEdgeOfAHostSubnetIsRejected(t *testing.T) {
	pol := policy()
	pol.HostSubnets = append(pol.HostSubnets, pfx("192.168.7.0/30", "192.168.8.0/31")...)
	for _, c := range []struct {
		addr, reason string
	}{
		{"192.168.100.255", "broadcast address of this host's subnet 192.168.100.0/24"},
		{"192.168.100.0", "network address of this host's subnet 192.168.100.0/24"},
		{"192.168.7.3", "broadcast address of this host's subnet 192.168.7.0/30"},
		{"192.168.7.0", "network address of this host's subnet 192.168.7.0/30"},
	} {
		s := Validate(view(Node{Name: "edge", Addresses: []string{c.addr}, PodCIDRs: []string{"10.244.9.0/24"}}), pol)
		if len(s.Rejected) != 1 || !strings.Contains(s.Rejected[0].Reason, c.reason) {
			t.Errorf("%s: peers %+v rejected %+v, want reason %q", c.addr, s.Peers, s.Rejected, c.reason)
		}
	}
	// Both addresses of a /31 are hosts (RFC 3021), and so is the rest of a /24.
	for _, a := range []string{"192.168.8.0", "192.168.8.1", "192.168.100.254", "192.168.7.1"} {
		if s := Validate(view(Node{Name: "ok", Addresses: []string{a}, PodCIDRs: []string{"10.244.9.0/24"}}), pol); len(s.Peers) != 1 {
			t.Errorf("%s rejected: %+v", a, s.Rejected)
		}
	}
}

// selfWith is the view of node n1 (policy()) claiming these podCIDRs.
func selfWith(cidrs ...string) View {
	v := view()
	v.Self.PodCIDRs = cidrs
	return v
}

func TestOwnPodCIDRWithoutAPodAddressIsRefused(t *testing.T) {
	for _, c := range []string{"10.244.1.0/31", "10.244.1.5/32", "fd00:10:244:1::/127", "fd00:10:244:1::5/128"} {
		s := Validate(selfWith(c), policy())
		if len(s.Self.PodCIDRs) != 0 || !strings.Contains(s.SelfProblem, "no usable pod address") {
			t.Errorf("own podCIDR %s from the source: self %v problem %q", c, s.Self.PodCIDRs, s.SelfProblem)
		}
		pol := policy()
		pol.SelfPodCIDRs = pfx(c)
		s = Validate(view(), pol)
		if len(s.Self.PodCIDRs) != 0 || !strings.Contains(s.SelfProblem, "no usable pod address") {
			t.Errorf("own podCIDR %s from the config: self %v problem %q", c, s.Self.PodCIDRs, s.SelfProblem)
		}
	}
	for _, c := range []string{"10.244.1.0/30", "fd00:10:244:1::/126"} {
		if s := Validate(selfWith(c), policy()); s.SelfProblem != "" {
			t.Errorf("own podCIDR %s refused: %q", c, s.SelfProblem)
		}
	}
}

func TestOwnPodCIDRHoldingAnAddressOfThisHostIsRefused(t *testing.T) {
	pol := policy()
	pol.HostAddrs = append(pol.HostAddrs, netip.MustParseAddr("10.244.1.1")) // e.g. on a dummy link
	s := Validate(view(), pol)
	if len(s.Self.PodCIDRs) != 0 || !strings.Contains(s.SelfProblem, "contains 10.244.1.1, an address of this host") {
		t.Fatalf("ptp: self %v problem %q", s.Self.PodCIDRs, s.SelfProblem)
	}
	cfg := pol
	cfg.SelfPodCIDRs = pfx("10.244.1.0/24")
	if s := Validate(view(), cfg); len(s.Self.PodCIDRs) != 0 || s.SelfProblem == "" {
		t.Fatalf("from the config: self %v problem %q", s.Self.PodCIDRs, s.SelfProblem)
	}
	// Bridge mode: the bridge holds the first address, which IPAM never
	// hands out; any other host address in the range is still refused.
	pol.GatewayOnHost = true
	if s := Validate(view(), pol); s.SelfProblem != "" || len(s.Self.PodCIDRs) != 2 {
		t.Fatalf("bridge gateway refused: self %v problem %q", s.Self.PodCIDRs, s.SelfProblem)
	}
	pol.HostAddrs = append(pol.HostAddrs, netip.MustParseAddr("fd00:10:244:1::7"))
	if s := Validate(view(), pol); !strings.Contains(s.SelfProblem, "contains fd00:10:244:1::7") {
		t.Fatalf("bridge mode, other host address: problem %q", s.SelfProblem)
	}
	// An address the host depends on (default gateway, API server) too.
	pol = policy()
	pol.Protected = append(pol.Protected, netip.MustParseAddr("10.244.1.9"))
	if s := Validate(view(), pol); !strings.Contains(s.SelfProblem, "covers 10.244.1.9") {
		t.Fatalf("protected address: problem %q", s.SelfProblem)
	}
}

func TestRefusedOwnPodCIDRKeepsTheLastGoodOnes(t *testing.T) {
	first := Validate(view(), policy())
	pol := policy()
	pol.Previous = &first
	s := Validate(selfWith("10.244.1.0/32"), pol)
	if !slices.Equal(s.Self.PodCIDRs, first.Self.PodCIDRs) || !strings.Contains(s.SelfProblem, "keeping the last good podCIDRs 10.244.1.0/24, fd00:10:244:1::/64") {
		t.Fatalf("self %v problem %q: the last good podCIDRs must stay", s.Self.PodCIDRs, s.SelfProblem)
	}
	// Last good ranges that no longer pass on this host are not kept.
	pol.HostAddrs = append(pol.HostAddrs, netip.MustParseAddr("10.244.1.1"))
	s = Validate(selfWith("10.244.1.0/32"), pol)
	if len(s.Self.PodCIDRs) != 0 || strings.Contains(s.SelfProblem, "keeping") {
		t.Fatalf("self %v problem %q", s.Self.PodCIDRs, s.SelfProblem)
	}
}

func TestSpecialOwnPodCIDRFromTheConfigIsRefused(t *testing.T) {
	for _, c := range []string{"169.254.1.0/24", "127.1.0.0/16", "224.1.0.0/16", "ff05::/64", "fe80::/64"} {
		pol := policy()
		pol.ClusterCIDRs = nil
		pol.SelfPodCIDRs = pfx(c)
		if s := Validate(view(), pol); len(s.Self.PodCIDRs) != 0 || !strings.Contains(s.SelfProblem, "special range") {
			t.Errorf("%s: self %v problem %q", c, s.Self.PodCIDRs, s.SelfProblem)
		}
	}
}

func TestWithoutClusterCIDRsOnlyPrivatePodCIDRsAreAccepted(t *testing.T) {
	pol := policy()
	pol.ClusterCIDRs = nil
	public := []string{"8.0.0.0/8", "1.2.3.0/24", "100.128.0.0/24", "2001:db8:1::/64", "2a00:1::/64"}
	for _, c := range public {
		n := Node{Name: "x", Addresses: []string{"192.168.100.50", "fd00:100::50"}, PodCIDRs: []string{c}}
		s := Validate(view(n), pol)
		if len(s.Peers) != 0 || len(s.Rejected) != 1 || !strings.Contains(s.Rejected[0].Reason, "list the cluster's pod ranges in clusterCIDRs") {
			t.Errorf("peer %s: peers %+v rejected %+v", c, s.Peers, s.Rejected)
		}
		// masquerade exempts AllPodCIDRs: public space must not get there
		if all := s.AllPodCIDRs(); slices.Contains(all, netip.MustParsePrefix(c)) {
			t.Errorf("peer %s: in the pod ranges masquerade exempts: %v", c, all)
		}
		if s := Validate(selfWith(c), pol); len(s.Self.PodCIDRs) != 0 || !strings.Contains(s.SelfProblem, "not in private address space") {
			t.Errorf("own %s: self %v problem %q", c, s.Self.PodCIDRs, s.SelfProblem)
		}
	}
	for _, c := range []string{"10.9.0.0/24", "172.16.5.0/24", "192.168.7.0/24", "100.64.1.0/24", "fd00:10:244:9::/64"} {
		n := Node{Name: "x", Addresses: []string{"192.168.100.50", "fd00:100::50"}, PodCIDRs: []string{c}}
		if s := Validate(view(n), pol); len(s.Peers) != 1 {
			t.Errorf("private %s rejected: %+v", c, s.Rejected)
		}
	}
	// A range the operator lists in clusterCIDRs is always accepted.
	pol.ClusterCIDRs = pfx("8.0.0.0/8", "2001:db8::/32")
	for _, c := range []string{"8.0.0.0/16", "2001:db8:1::/64"} {
		n := Node{Name: "x", Addresses: []string{"192.168.100.50", "fd00:100::50"}, PodCIDRs: []string{c}}
		if s := Validate(view(n), pol); len(s.Peers) != 1 {
			t.Errorf("%s inside clusterCIDRs rejected: %+v", c, s.Rejected)
		}
	}
}
