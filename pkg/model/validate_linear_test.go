package model

// This is validation as it was before the claims index: every check scans
// the peers accepted so far. It is kept, in a test only, as the reference
// the indexed validation must agree with on every input.

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func linearValidate(v View, pol Policy) Snapshot {
	s := Snapshot{ClusterCIDRs: slices.Clone(pol.ClusterCIDRs)}
	s.Self, s.SelfProblem = validateSelf(v.Self, pol)
	ck := linearChecker{pol: pol, snap: &s, seenNames: map[string]bool{v.Self.Name: true}}
	for _, n := range orderPeers(v.Peers, pol.Previous) {
		peer, reason := ck.peer(n)
		if reason != "" {
			s.Rejected = append(s.Rejected, Rejection{Node: n, Reason: reason})
			continue
		}
		s.Peers = append(s.Peers, peer)
	}
	slices.SortFunc(s.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Rejected, func(a, b Rejection) int { return strings.Compare(a.Node.Name, b.Node.Name) })
	return s
}

type linearChecker struct {
	pol       Policy
	snap      *Snapshot
	seenNames map[string]bool
}

// peer validates one node against the policy and against the peers accepted
// so far. It returns the reason for rejecting it, or "".
func (c *linearChecker) peer(n Node) (Peer, string) {
	if reason := c.name(n.Name); reason != "" {
		return Peer{}, reason
	}
	addrs, reason := parseAddrs(n.Addresses)
	if reason != "" {
		return Peer{}, reason
	}
	cidrs, reason := parsePodCIDRs(n.PodCIDRs, c.pol.ClusterCIDRs)
	if reason != "" {
		return Peer{}, reason
	}
	p := Peer{Name: n.Name, Addrs: addrs, PodCIDRs: cidrs}
	for _, check := range []func(Peer) string{c.addrConflicts, c.cidrConflicts, needsAddrPerFamily} {
		if reason := check(p); reason != "" {
			return Peer{}, reason
		}
	}
	return p, ""
}

func (c *linearChecker) name(name string) string {
	switch {
	case name == "":
		return "node has no name"
	case len(name) > maxNameLen || !nodeNameRE.MatchString(name):
		return fmt.Sprintf("node name %.64q is not a valid Kubernetes node name", name)
	case c.seenNames[name]:
		if name == c.snap.Self.Name {
			return "a peer has this node's own name"
		}
		return "duplicate node name"
	}
	c.seenNames[name] = true
	return ""
}

// addrConflicts rejects a peer whose address belongs to this host or to an
// accepted peer, or lies inside a pod range.
func (c *linearChecker) addrConflicts(p Peer) string {
	for _, a := range p.Addrs {
		if slices.Contains(c.pol.HostAddrs, a) || slices.Contains(c.snap.Self.Addrs, a) {
			return fmt.Sprintf("address %s is this node's own address", a)
		}
		for _, q := range c.snap.Peers {
			if slices.Contains(q.Addrs, a) {
				return fmt.Sprintf("address %s is already used by node %s", a, q.Name)
			}
		}
		for _, r := range c.linearPodRanges() {
			if r.prefix.Contains(a) {
				return fmt.Sprintf("address %s is inside %s", a, r.what)
			}
		}
		for _, own := range p.PodCIDRs {
			if own.Contains(a) {
				return fmt.Sprintf("address %s is inside its own podCIDR %s", a, own)
			}
		}
	}
	return ""
}

type linearPodRange struct {
	prefix netip.Prefix
	what   string
}

// linearPodRanges lists every range that holds pods: clusterCIDRs, this node's
// podCIDRs and the podCIDRs of the peers accepted so far.
func (c *linearChecker) linearPodRanges() []linearPodRange {
	var out []linearPodRange
	for _, p := range c.pol.ClusterCIDRs {
		out = append(out, linearPodRange{p, "clusterCIDR " + p.String()})
	}
	for _, p := range c.snap.Self.PodCIDRs {
		out = append(out, linearPodRange{p, "this node's podCIDR " + p.String()})
	}
	for _, q := range c.snap.Peers {
		for _, p := range q.PodCIDRs {
			out = append(out, linearPodRange{p, fmt.Sprintf("podCIDR %s of node %s", p, q.Name)})
		}
	}
	return out
}

// cidrConflicts rejects a peer whose podCIDRs overlap another node's, the
// host's own subnets, or cover an address that must stay reachable.
func (c *linearChecker) cidrConflicts(p Peer) string {
	for _, cidr := range p.PodCIDRs {
		for _, own := range c.snap.Self.PodCIDRs {
			if own.Overlaps(cidr) {
				return fmt.Sprintf("podCIDR %s overlaps this node's podCIDR %s", cidr, own)
			}
		}
		for _, q := range c.snap.Peers {
			for _, qc := range q.PodCIDRs {
				if qc.Overlaps(cidr) {
					return fmt.Sprintf("podCIDR %s overlaps podCIDR %s of node %s", cidr, qc, q.Name)
				}
			}
			for _, a := range q.Addrs {
				if cidr.Contains(a) {
					return fmt.Sprintf("podCIDR %s covers the address %s of node %s", cidr, a, q.Name)
				}
			}
		}
		for _, sub := range c.pol.HostSubnets {
			if sub.Overlaps(cidr) && !c.insideSelf(sub) {
				return fmt.Sprintf("podCIDR %s overlaps this host's connected subnet %s", cidr, sub)
			}
		}
		for _, a := range append(slices.Clone(c.pol.HostAddrs), c.pol.Protected...) {
			if cidr.Contains(a) {
				return fmt.Sprintf("podCIDR %s covers %s, an address of this host or one it depends on", cidr, a)
			}
		}
	}
	return ""
}

// insideSelf reports whether a host subnet is one of kindnet's own pod
// subnets (the bridge address in bridge mode); those are not "the host's
// network" and a peer overlapping them is rejected by the podCIDR check.
func (c *linearChecker) insideSelf(sub netip.Prefix) bool {
	return containedIn(sub, c.snap.Self.PodCIDRs)
}

// TestIndexedValidationMatchesLinearReference validates many random,
// collision-heavy views with both implementations: the same peers must be
// accepted and rejected, with the same reasons, also with a previous
// snapshot deciding conflicts.
func TestIndexedValidationMatchesLinearReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(list []string, max int) []string {
		var out []string
		for range r.IntN(max + 1) {
			out = append(out, list[r.IntN(len(list))])
		}
		return out
	}
	names := []string{"a", "b", "c", "d", "e", "f", "g", "self", "", "Bad_Name"}
	addrs := []string{"192.168.1.1", "192.168.1.2", "192.168.1.3", "192.168.1.4", "10.244.1.5", "10.244.2.1",
		"10.9.0.1", "fd00::1", "fd00::2", "fd00:10:244:1::9", "127.0.0.1", "garbage", "192.168.1.200"}
	cidrs := []string{"10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24", "10.244.0.0/16", "10.244.2.0/25",
		"10.244.2.128/25", "192.168.1.0/28", "192.168.1.192/26", "10.9.0.0/16", "fd00:10:244:1::/64",
		"fd00:10:244::/56", "fd00::/64", "10.0.0.0/8", "x", "10.244.1.1/24"}
	prefixes := func(list []string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range list {
			if p, err := netip.ParsePrefix(s); err == nil && p.Masked() == p {
				out = append(out, p)
			}
		}
		return out
	}
	for iter := range 20000 {
		v := View{Self: Node{Name: "self", Addresses: pick(addrs[:4], 1), PodCIDRs: pick(cidrs[:3], 1)}}
		for range r.IntN(8) {
			v.Peers = append(v.Peers, Node{Name: names[r.IntN(len(names))], Addresses: pick(addrs, 3), PodCIDRs: pick(cidrs, 2)})
		}
		pol := Policy{
			ClusterCIDRs: prefixes(pick([]string{"10.244.0.0/16", "fd00:10:244::/56", "10.0.0.0/8"}, 2)),
			HostAddrs:    []netip.Addr{netip.MustParseAddr("192.168.1.1")},
			HostSubnets:  prefixes(pick([]string{"192.168.1.0/24", "fd00::/64", "10.244.1.0/24"}, 2)),
			Protected:    []netip.Addr{netip.MustParseAddr("192.168.1.254")},
		}
		if r.IntN(3) == 0 {
			prev := Validate(View{Peers: v.Peers[:r.IntN(len(v.Peers)+1)]}, pol)
			pol.Previous = &prev
		}
		got, want := Validate(v, pol), linearValidate(v, pol)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("iteration %d: view %+v\npolicy %+v\nindexed: %+v\nlinear:  %+v", iter, v, pol, got, want)
		}
	}
}
