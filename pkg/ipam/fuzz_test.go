package ipam

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// FuzzStateFile: whatever sits in the state file (a torn write from another
// tool, an edit by hand, a hostile file), the store either refuses it as
// unusable or keeps its promise: a new allocation is inside its range, is
// neither a reserved address nor one any record already holds.
func FuzzStateFile(f *testing.F) {
	f.Add([]byte(`{"version":1,"allocations":[{"containerID":"a","ifname":"eth0","ips":["10.244.1.2","fd00:10:244:1::2"],"created":"2026-01-01T00:00:00Z"}]}`))
	f.Add([]byte(`{"version":1,"last":{"10.244.1.0/24":"10.244.1.254"},"allocations":[]}`))
	f.Add([]byte(`{"version":1,"last":{"10.244.1.0/24":"192.168.0.1"},"allocations":[{"containerID":"x","ifname":"eth0","ips":["10.244.1.3","10.244.1.3"]},{"containerID":"x","ifname":"eth0","ips":[]}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"allocations":null}`))
	f.Add([]byte(`garbage`))
	pools := []Pool{
		{Range: netip.MustParsePrefix("10.244.1.0/29")},
		{Range: netip.MustParsePrefix("fd00:10:244:1::/125"), Gateway: netip.MustParseAddr("fd00:10:244:1::1")},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := New(t.TempDir(), "kindnet")
		if err := os.MkdirAll(s.Dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir, StateFile), data, 0o600); err != nil {
			t.Fatal(err)
		}
		before, err := s.List()
		if err != nil {
			return // refused as unusable: the plugin reports it, nothing is handed out
		}
		held := map[netip.Addr]bool{}
		for _, a := range before {
			if a.ContainerID == "new" {
				continue // its own old record may be replaced
			}
			for _, ip := range a.IPs {
				held[ip] = true
			}
		}
		a, err := s.Allocate(Key{ContainerID: "new", IfName: "eth0"}, pools, false)
		if err != nil {
			return // exhausted or unusable: fine, as long as it says so
		}
		if len(a.IPs) != len(pools) {
			t.Fatalf("allocation %v has %d addresses for %d pools", a.IPs, len(a.IPs), len(pools))
		}
		for i, ip := range a.IPs {
			p := pools[i]
			if !p.Range.Contains(ip) || reserved(p, ip) {
				t.Fatalf("handed out %s, outside %s or reserved", ip, p.Range)
			}
			if held[ip] {
				t.Fatalf("handed out %s, which another record holds", ip)
			}
		}
		if _, _, err := s.Release(Key{ContainerID: "new", IfName: "eth0"}); err != nil {
			t.Fatalf("release after allocate: %v", err)
		}
		_, _ = s.GC(nil)
	})
}
