package model

import (
	"fmt"
	"net/netip"
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
