// Package modeltest holds what tests of the sources need to check the
// model's promise: CheckSnapshot asserts, whatever the input, the
// invariants every reconciler relies on in a validated snapshot. The
// nodes-file and cache fuzz targets feed it whatever they parse.
//
// It is for tests only and touches nothing.
package modeltest

import (
	"net/netip"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

// Policy is a node n1 at 192.168.100.11 / fd00:100::11 on 192.168.100.0/24,
// default gateway 192.168.100.1, in a dual-stack cluster: the node the
// model's own tests validate for.
func Policy() model.Policy {
	return model.Policy{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")},
		HostAddrs:    []netip.Addr{netip.MustParseAddr("192.168.100.11"), netip.MustParseAddr("fd00:100::11")},
		HostSubnets:  []netip.Prefix{netip.MustParsePrefix("192.168.100.0/24"), netip.MustParsePrefix("fd00:100::/64")},
		Protected:    []netip.Addr{netip.MustParseAddr("192.168.100.1"), netip.MustParseAddr("10.96.0.1")},
	}
}

// CheckSnapshot asserts what every reconciler relies on, whatever the input.
func CheckSnapshot(t testing.TB, s model.Snapshot, pol model.Policy) {
	t.Helper()
	checkSelf(t, s, pol)
	seenCIDR := map[string]string{}
	seenAddr := map[string]string{}
	for _, p := range s.Peers {
		fam := map[bool]int{}
		for _, c := range p.PodCIDRs {
			if c.Masked() != c || c.Bits() == 0 {
				t.Fatalf("peer %s: podCIDR %s is not a usable network", p.Name, c)
			}
			fam[c.Addr().Is4()]++
			if _, ok := p.Via(c); !ok {
				t.Fatalf("peer %s: podCIDR %s has no address of its family", p.Name, c)
			}
			for other, owner := range seenCIDR {
				if o := netip.MustParsePrefix(other); o.Overlaps(c) {
					t.Fatalf("peers %s and %s overlap: %s %s", p.Name, owner, c, o)
				}
			}
			for _, own := range s.Self.PodCIDRs {
				if own.Overlaps(c) {
					t.Fatalf("peer %s overlaps this node: %s", p.Name, c)
				}
			}
			if len(pol.ClusterCIDRs) > 0 && !containedIn(c, pol.ClusterCIDRs) {
				t.Fatalf("peer %s: %s outside clusterCIDRs", p.Name, c)
			}
			if len(pol.ClusterCIDRs) == 0 && !containedIn(c, model.DefaultPodSpace()) {
				t.Fatalf("peer %s: %s outside private space with clusterCIDRs empty", p.Name, c)
			}
			seenCIDR[c.String()] = p.Name
		}
		if fam[true] > 1 || fam[false] > 1 {
			t.Fatalf("peer %s has two podCIDRs of one family", p.Name)
		}
		for _, a := range p.Addrs {
			if model.UnusableAddr(a) != "" {
				t.Fatalf("peer %s: unusable address %s accepted", p.Name, a)
			}
			if owner, dup := seenAddr[a.String()]; dup {
				t.Fatalf("peers %s and %s share %s", p.Name, owner, a)
			}
			seenAddr[a.String()] = p.Name
		}
	}
}

// checkSelf asserts what the CNI config relies on: each own podCIDR
// leaves a pod address and holds no address of the host (bridge mode's
// gateway excepted).
func checkSelf(t testing.TB, s model.Snapshot, pol model.Policy) {
	t.Helper()
	for _, c := range s.Self.PodCIDRs {
		if model.NoPodAddress(c) {
			t.Fatalf("own podCIDR %s has no pod address", c)
		}
		for _, a := range pol.HostAddrs {
			if c.Contains(a) && !(pol.GatewayOnHost && a == c.Masked().Addr().Next()) {
				t.Fatalf("own podCIDR %s holds the host's address %s", c, a)
			}
		}
	}
}

// containedIn reports whether p lies inside one of the prefixes in.
func containedIn(p netip.Prefix, in []netip.Prefix) bool {
	for _, c := range in {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
