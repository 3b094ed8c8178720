package model

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkValidate5000 validates a 5,000-node view, as the agent does on
// every change (with the previous snapshot deciding conflicts).
func BenchmarkValidate5000(b *testing.B) {
	v := View{Self: Node{Name: "self", Addresses: []string{"172.16.0.1"}, PodCIDRs: []string{"10.244.1.0/24"}}}
	for i := range 4999 {
		k := i + 256
		v.Peers = append(v.Peers, Node{Name: fmt.Sprintf("peer-%05d", i),
			Addresses: []string{fmt.Sprintf("172.16.%d.%d", k/256, k%256)},
			PodCIDRs:  []string{fmt.Sprintf("10.%d.%d.0/24", k/256, k%256)}})
	}
	pol := Policy{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		HostSubnets: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/16")}}
	prev := Validate(v, pol)
	pol.Previous = &prev
	b.ReportAllocs()
	for b.Loop() {
		if s := Validate(v, pol); len(s.Peers) != 4999 {
			b.Fatalf("%d peers accepted, %d rejected", len(s.Peers), len(s.Rejected))
		}
	}
}
