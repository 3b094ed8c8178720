package model

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// checkSnapshot asserts what every reconciler relies on, whatever the input.
func checkSnapshot(t *testing.T, s Snapshot, pol Policy) {
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
			seenCIDR[c.String()] = p.Name
		}
		if fam[true] > 1 || fam[false] > 1 {
			t.Fatalf("peer %s has two podCIDRs of one family", p.Name)
		}
		for _, a := range p.Addrs {
			if unusableAddr(a) != "" {
				t.Fatalf("peer %s: unusable address %s accepted", p.Name, a)
			}
			if owner, dup := seenAddr[a.String()]; dup {
				t.Fatalf("peers %s and %s share %s", p.Name, owner, a)
			}
			seenAddr[a.String()] = p.Name
		}
	}
}

// FuzzNodesFile feeds arbitrary bytes through parsing, conversion and
// validation: nothing may panic, and whatever is accepted must be safe to
// install.
func FuzzNodesFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte("apiVersion: v1\nkind: Node\nmetadata: {name: x}\nspec: {podCIDRs: [0.0.0.0/0]}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{metadata: {name: a}, spec: {podCIDRs: ['::ffff:10.0.0.0/104']}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		nodes, err := ParseNodes(data)
		if err != nil {
			return
		}
		for _, allowExt := range []bool{false, true} {
			v := ViewFromNodes("n1", nodes, AddressPolicy{AllowExternalIP: allowExt})
			pol := policy()
			s := Validate(v, pol)
			checkSnapshot(t, s, pol)
			pol.ClusterCIDRs = nil
			checkSnapshot(t, Validate(v, pol), pol)
		}
	})
}

// FuzzCache: a corrupt cache file is an error, never a panic or a bad view.
func FuzzCache(f *testing.F) {
	f.Add([]byte(`{"version":1,"node":"n1","view":{"self":{"name":"n1"},"peers":[{"name":"n2","addresses":["192.168.100.12"],"podCIDRs":["10.244.2.0/24"]}]}}`))
	f.Add([]byte(`{"version":1,"node":"n1","view":{"peers":null}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "cluster-view.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := (&Cache{Path: path, Node: "n1"}).Load()
		if err != nil || v == nil {
			return
		}
		pol := policy()
		checkSnapshot(t, Validate(*v, pol), pol)
	})
}
