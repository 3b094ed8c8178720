package nftutil

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

func TestDeleteTableRemovesOnlyTheNamedInetTable(t *testing.T) {
	ns := netnstest.New(t)
	// Same name in another family, and another inet table: both stay.
	ns.Exec(t, "nft", "add table inet mine; add chain inet mine c; add table ip mine; add table inet other")
	c, err := Open(ns.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if tbl, err := FindTable(c, "mine"); err != nil || tbl == nil || tbl.Name != "mine" {
		t.Fatalf("FindTable(mine) = %v, %v; want the inet table", tbl, err)
	}
	removed, err := DeleteTable(c, "mine")
	if err != nil || !removed {
		t.Fatalf("first delete: removed=%v err=%v", removed, err)
	}
	if got := strings.Fields(ns.Exec(t, "nft", "list", "tables")); strings.Join(got, " ") != "table ip mine table inet other" {
		t.Fatalf("after delete: nft list tables = %q", got)
	}
	removed, err = DeleteTable(c, "mine")
	if err != nil || removed {
		t.Fatalf("second delete: removed=%v err=%v, want false, nil", removed, err)
	}
	if tbl, err := FindTable(c, "mine"); err != nil || tbl != nil {
		t.Fatalf("FindTable after delete = %v, %v; want nil, nil", tbl, err)
	}
}

func TestFamiliesSplitAddressesAndPrefixes(t *testing.T) {
	ps := []netip.Prefix{netip.MustParsePrefix("fd00::/64"), netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("10.1.0.0/16")}
	if got := IPv4.Filter(ps); len(got) != 2 || got[0] != ps[1] || got[1] != ps[2] {
		t.Errorf("IPv4.Filter = %v", got)
	}
	if got := IPv6.Filter(ps); len(got) != 1 || got[0] != ps[0] {
		t.Errorf("IPv6.Filter = %v", got)
	}
	ips := []netip.Addr{netip.MustParseAddr("fd00::5"), netip.MustParseAddr("10.0.0.5")}
	if a, ok := IPv4.Pick(ips); !ok || a != ips[1] {
		t.Errorf("IPv4.Pick = %v, %v", a, ok)
	}
	if a, ok := IPv6.Pick(ips[1:]); ok {
		t.Errorf("IPv6.Pick of IPv4 only = %v, want none", a)
	}
}
