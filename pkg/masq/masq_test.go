package masq

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/golden"
	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

func snapshot() *model.Snapshot {
	return &model.Snapshot{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16"), netip.MustParsePrefix("fd00:10:244::/56")},
		Self:         model.Peer{Name: "n1", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")}},
		Peers: []model.Peer{{Name: "n2", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24")}},
			// a podCIDR outside the cluster ranges (no clusterCIDRs check at this layer)
			{Name: "n3", PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/24")}}},
	}
}

func TestMasqueradeTableIsWrittenOnceAndLeavesOtherTablesAlone(t *testing.T) {
	ns := netnstest.New(t)
	// someone else's table, which must survive everything we do
	ns.Exec(t, "nft", "add table inet other; add chain inet other c { type filter hook forward priority 0; }; add rule inet other c counter")
	r := &Reconciler{Table: "kindnet", Enabled: true, NetNSFd: ns.Fd(),
		NoMasquerade: []netip.Prefix{netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("10.244.3.0/24")}}
	ctx := context.Background()
	res, err := r.Reconcile(ctx, snapshot())
	if err != nil || !res.Changed {
		t.Fatalf("first run: changed=%v err=%v", res.Changed, err)
	}
	// The whole table as nft prints it: the sets (pod ranges with the
	// foreign podCIDR, no-masquerade ranges merged with the cluster's) and
	// the one postrouting chain, and nothing else.
	golden.Check(t, "testdata/dualstack.golden", []byte(ns.Exec(t, "nft", "list", "table", "inet", "kindnet")))
	res, err = r.Reconcile(ctx, snapshot())
	if err != nil || res.Changed {
		t.Fatalf("second run: changed=%v err=%v, want no change", res.Changed, err)
	}
	// someone flushes one of our sets by hand: the next run repairs it
	ns.Exec(t, "nft", "flush set inet kindnet pods-v4")
	if res, err = r.Reconcile(ctx, snapshot()); err != nil || !res.Changed {
		t.Fatalf("after tampering: changed=%v err=%v, want a rewrite", res.Changed, err)
	}
	r.Enabled = false
	if res, err = r.Reconcile(ctx, snapshot()); err != nil || !res.Changed {
		t.Fatalf("disable: changed=%v err=%v", res.Changed, err)
	}
	if present, _ := Exists("kindnet", ns.Fd()); present {
		t.Fatal("table still present after disabling masquerade")
	}
	if out := ns.Exec(t, "nft", "list", "ruleset"); !strings.Contains(out, "table inet other") || !strings.Contains(out, "counter") {
		t.Fatalf("the other table was touched:\n%s", out)
	}
}

func TestIPv4OnlyClusterHasNoIPv6Rule(t *testing.T) {
	ns := netnstest.New(t)
	r := &Reconciler{Table: "kindnet_v4", Enabled: true, NetNSFd: ns.Fd()}
	snap := &model.Snapshot{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
	if _, err := r.Reconcile(context.Background(), snap); err != nil {
		t.Fatal(err)
	}
	// No IPv6 set, no IPv6 rule.
	golden.Check(t, "testdata/ipv4-only.golden", []byte(ns.Exec(t, "nft", "list", "table", "inet", "kindnet_v4")))
	if removed, err := Cleanup("kindnet_v4", ns.Fd()); err != nil || !removed {
		t.Fatalf("cleanup: removed=%v err=%v", removed, err)
	}
}

func TestIntervalElementsMergeTouchingRanges(t *testing.T) {
	els := intervalElements([]netip.Prefix{
		netip.MustParsePrefix("10.0.1.0/24"), netip.MustParsePrefix("10.0.0.0/24"),
		netip.MustParsePrefix("10.0.0.128/25"), netip.MustParsePrefix("240.0.0.0/4"),
	})
	var got []string
	for _, e := range els {
		a, _ := netip.AddrFromSlice(e.Key)
		got = append(got, a.String()+map[bool]string{true: ")", false: "["}[e.IntervalEnd])
	}
	want := "10.0.0.0[ 10.0.2.0) 240.0.0.0["
	if strings.Join(got, " ") != want {
		t.Fatalf("elements = %v, want %s", got, want)
	}
}
