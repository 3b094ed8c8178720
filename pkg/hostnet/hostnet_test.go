package hostnet

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// hostWithManyRoutes is a namespace like a node of a big cluster: eth0
// (MTU 1500) and eth1 (MTU 1400) with the host's default routes, a default
// route in another table, and peers kindnet routes per family (proto 107,
// each via its own gateway) in the main table.
func hostWithManyRoutes(tb testing.TB, peers int) *netnstest.NS {
	ns := netnstest.New(tb)
	eth0 := ns.AddVeth(tb, "eth0")
	eth1 := ns.AddVeth(tb, "eth1")
	if err := ns.NL.LinkSetMTU(eth1, 1400); err != nil {
		tb.Fatal(err)
	}
	ns.AddAddrs(tb, eth0, "172.16.0.1/16", "fd00:172:16::1/64")
	ns.AddAddrs(tb, eth1, "192.168.51.1/24", "fd00:51::1/64")
	var b strings.Builder
	b.WriteString("route add default via 172.16.255.254 dev eth0\n")
	b.WriteString("route add ::/0 via fd00:172:16::fffe dev eth0 metric 1024\n")
	b.WriteString("route add ::/0 via fd00:51::fe dev eth1 metric 2000\n")
	b.WriteString("route add default via 192.168.51.99 dev eth1 table 100\n")
	for i := range peers {
		fmt.Fprintf(&b, "route add 10.%d.%d.0/24 via 172.16.%d.%d proto 107\n", 100+i/256, i%256, 1+i/250, 1+i%250)
		fmt.Fprintf(&b, "route add fd00:10:%x::/64 via fd00:172:16::%x proto 107\n", i, 2+i)
	}
	batch := filepath.Join(tb.TempDir(), "routes")
	if err := os.WriteFile(batch, []byte(b.String()), 0o600); err != nil {
		tb.Fatal(err)
	}
	if out, err := ns.Run("ip", "-batch", batch); err != nil {
		tb.Fatalf("ip -batch: %v\n%s", err, out)
	}
	return ns
}

func gws(rs []netlink.Route) []string {
	var out []string
	for _, r := range rs {
		for _, gw := range gateways(r) {
			out = append(out, gw.String())
		}
	}
	slices.Sort(out)
	return out
}

// Among 10,000 other routes of the main table, exactly the default routes
// of each family are found, not the one of another table, and they are
// what validation (gateways) and the CNI MTU are decided on.
func TestDefaultRoutesAreFoundAmongThousandsOfKindnetRoutesInBothFamilies(t *testing.T) {
	ns := hostWithManyRoutes(t, 5000)
	for _, tc := range []struct {
		family int
		want   []string
	}{
		{netlink.FAMILY_V4, []string{"172.16.255.254"}},
		{netlink.FAMILY_V6, []string{"fd00:172:16::fffe", "fd00:51::fe"}},
	} {
		defs, err := DefaultRoutes(ns.NL, tc.family)
		if err != nil {
			t.Fatal(err)
		}
		if got := gws(defs); !slices.Equal(got, tc.want) {
			t.Errorf("family %d: default routes via %v, want %v", tc.family, got, tc.want)
		}
	}
	if _, err := DefaultRoutes(ns.NL, netlink.FAMILY_ALL); err == nil {
		t.Error("FAMILY_ALL accepted: it has no default prefix to match")
	}
	f, err := Read(ns.NL)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Addr{netip.MustParseAddr("172.16.255.254"), netip.MustParseAddr("fd00:51::fe"), netip.MustParseAddr("fd00:172:16::fffe")}
	slices.SortFunc(f.Gateways, func(a, b netip.Addr) int { return a.Compare(b) })
	if !slices.Equal(f.Gateways, want) {
		t.Errorf("gateways %v, want %v (not the other table's 192.168.51.99)", f.Gateways, want)
	}
	if mtu, err := DefaultRouteMTU(ns.NL); err != nil || mtu != 1400 {
		t.Errorf("default route MTU %d (err %v), want 1400: the smallest link a default route leaves by", mtu, err)
	}
}

// BenchmarkDefaultRoutesAmong10000Routes measures the default-route lookup
// on a node with 5,000 dual-stack peers (B/op is what each reconcile pays,
// twice: validation facts and the CNI MTU).
func BenchmarkDefaultRoutesAmong10000Routes(b *testing.B) {
	ns := hostWithManyRoutes(b, 5000)
	b.ReportAllocs()
	for b.Loop() {
		for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
			if _, err := DefaultRoutes(ns.NL, fam); err != nil {
				b.Fatal(err)
			}
		}
	}
}
