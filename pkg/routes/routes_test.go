package routes

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// nodeNS is a namespace with one link "eth0" on 192.168.50.0/24 and
// fd00:50::/64, like a node on the lab switch.
func nodeNS(t *testing.T) *netnstest.NS {
	ns := netnstest.New(t)
	ns.AddAddrs(t, ns.AddVeth(t, "eth0"), "192.168.50.1/24", "fd00:50::1/64")
	return ns
}

func peer(name string, addrs []string, cidrs []string) model.Peer {
	p := model.Peer{Name: name}
	for _, a := range addrs {
		p.Addrs = append(p.Addrs, netip.MustParseAddr(a))
	}
	for _, c := range cidrs {
		p.PodCIDRs = append(p.PodCIDRs, netip.MustParsePrefix(c))
	}
	return p
}

func kindnetRoutes(t *testing.T, h *netlink.Handle) []string {
	t.Helper()
	rs, err := List(h)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rs {
		out = append(out, r.Dst.String()+" via "+r.Gw.String())
	}
	slices.Sort(out)
	return out
}

func TestReconcileInstallsOnLinkPeersAndIsIdempotent(t *testing.T) {
	ns := nodeNS(t)
	r := &Reconciler{Handle: ns.NL}
	snap := &model.Snapshot{Peers: []model.Peer{
		peer("n2", []string{"192.168.50.2", "fd00:50::2"}, []string{"10.244.2.0/24", "fd00:10:244:2::/64"}),
		peer("n3", []string{"192.168.50.3"}, []string{"10.244.3.0/24"}),
		peer("n4", nil, nil),
	}}
	res, err := r.Reconcile(context.Background(), snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Changes) != 3 || res.Installed != 3 {
		t.Fatalf("first run: want 3 additions, got %v (installed %d)", res.Changes, res.Installed)
	}
	want := []string{"10.244.2.0/24 via 192.168.50.2", "10.244.3.0/24 via 192.168.50.3", "fd00:10:244:2::/64 via fd00:50::2"}
	if got := kindnetRoutes(t, ns.NL); !slices.Equal(got, want) {
		t.Fatalf("routes = %v, want %v", got, want)
	}
	if res.Peers["n2"].State != StateRouted || res.Peers["n4"].State != StatePending {
		t.Fatalf("peer states = %v", res.Peers)
	}
	res, err = r.Reconcile(context.Background(), snap)
	if err != nil || len(res.Changes) != 0 {
		t.Fatalf("second run changed %v (err %v), want nothing", res.Changes, err)
	}
}

func TestReconcileRemovesStaleAndFollowsAddressChanges(t *testing.T) {
	ns := nodeNS(t)
	r := &Reconciler{Handle: ns.NL}
	ctx := context.Background()
	first := &model.Snapshot{Peers: []model.Peer{
		peer("n2", []string{"192.168.50.2"}, []string{"10.244.2.0/24"}),
		peer("n3", []string{"192.168.50.3"}, []string{"10.244.3.0/24"}),
	}}
	if _, err := r.Reconcile(ctx, first); err != nil {
		t.Fatal(err)
	}
	// n3 deleted; n2 re-addressed; n5 reuses n3's podCIDR.
	second := &model.Snapshot{Peers: []model.Peer{
		peer("n2", []string{"192.168.50.22"}, []string{"10.244.2.0/24"}),
		peer("n5", []string{"192.168.50.5"}, []string{"10.244.3.0/24"}),
	}}
	if _, err := r.Reconcile(ctx, second); err != nil {
		t.Fatal(err)
	}
	want := []string{"10.244.2.0/24 via 192.168.50.22", "10.244.3.0/24 via 192.168.50.5"}
	if got := kindnetRoutes(t, ns.NL); !slices.Equal(got, want) {
		t.Fatalf("routes = %v, want %v", got, want)
	}
	if _, err := r.Reconcile(ctx, &model.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	if got := kindnetRoutes(t, ns.NL); len(got) != 0 {
		t.Fatalf("empty snapshot left routes %v", got)
	}
}

func TestReconcileNeverTouchesForeignRoutes(t *testing.T) {
	ns := nodeNS(t)
	link, _ := ns.NL.LinkByName("eth0")
	// An administrator's static route to what a peer claims as its podCIDR,
	// a route elsewhere, and a gateway that makes 10.9.0.0/16 off-link.
	foreign := []*netlink.Route{
		{Dst: mustNet("10.244.7.0/24"), Gw: net.ParseIP("192.168.50.77"), LinkIndex: link.Attrs().Index, Protocol: 4},
		{Dst: mustNet("172.16.0.0/12"), Gw: net.ParseIP("192.168.50.254"), LinkIndex: link.Attrs().Index, Protocol: 4},
		{Dst: mustNet("10.9.0.0/16"), Gw: net.ParseIP("192.168.50.254"), LinkIndex: link.Attrs().Index, Protocol: 4},
	}
	for _, rt := range foreign {
		if err := ns.NL.RouteAdd(rt); err != nil {
			t.Fatal(err)
		}
	}
	r := &Reconciler{Handle: ns.NL}
	snap := &model.Snapshot{Peers: []model.Peer{
		peer("n7", []string{"192.168.50.7"}, []string{"10.244.7.0/24"}),
		peer("far", []string{"10.9.0.9"}, []string{"10.244.9.0/24"}),
	}}
	for range 2 {
		res, err := r.Reconcile(context.Background(), snap)
		if err != nil {
			t.Fatal(err)
		}
		if res.Peers["n7"].State != StateConflict || res.Peers["far"].State != StateOffLink {
			t.Fatalf("states = %+v", res.Peers)
		}
	}
	if got := kindnetRoutes(t, ns.NL); len(got) != 0 {
		t.Fatalf("kindnet installed %v despite conflict/off-link", got)
	}
	all, _ := ns.NL.RouteList(nil, netlink.FAMILY_V4)
	for _, want := range foreign {
		if !slices.ContainsFunc(all, func(r netlink.Route) bool {
			return r.Dst != nil && r.Dst.String() == want.Dst.String() && r.Gw.Equal(want.Gw)
		}) {
			t.Fatalf("foreign route %s was changed", want.Dst)
		}
	}
	if n, err := Cleanup(ns.NL); err != nil || n != 0 {
		t.Fatalf("cleanup removed %d routes (err %v), want 0 foreign routes touched", n, err)
	}
}

func mustNet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}
