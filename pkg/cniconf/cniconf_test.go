package cniconf

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/cluster"
)

func snap(cidrs ...string) *cluster.Snapshot {
	s := &cluster.Snapshot{}
	for _, c := range cidrs {
		s.Self.PodCIDRs = append(s.Self.PodCIDRs, netip.MustParsePrefix(c))
	}
	return s
}

func TestRenderDualStack(t *testing.T) {
	b, err := Render(Params{Mode: "ptp", PodCIDRs: snap("10.244.1.0/24", "fd00:10:244:1::/64").Self.PodCIDRs, MTU: 1450, CNIVersion: "1.0.0", IPAMDir: "/run/kindnet/ipam"})
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []map[string]any
	}
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	if list.Name != "kindnet" || list.CNIVersion != "1.0.0" || len(list.Plugins) != 2 {
		t.Fatalf("conflist = %s", b)
	}
	main := list.Plugins[0]
	ranges := main["ipam"].(map[string]any)["ranges"].([]any)
	if main["mtu"].(float64) != 1450 || len(ranges) != 2 {
		t.Fatalf("main plugin = %v", main)
	}
	if _, err := Render(Params{Mode: "ptp"}); err == nil {
		t.Fatal("render without ranges did not fail")
	}
}

func TestReconcileWritesOnlyWhenContentChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "net.d", "10-kindnet.conflist")
	r := &Reconciler{Path: path, Mode: "ptp", MTU: 1500, CNIVersion: "1.0.0", IPAMDir: "/run/kindnet/ipam"}
	ctx := context.Background()
	// no podCIDR yet: nothing written, and that is not an error
	res, err := r.Reconcile(ctx, snap())
	if err != nil || res.Written || res.Waiting == "" {
		t.Fatalf("without podCIDRs: %+v %v", res, err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatal("a config was written without podCIDRs")
	}
	if res, err = r.Reconcile(ctx, snap("10.244.1.0/24")); err != nil || !res.Written {
		t.Fatalf("first write: %+v %v", res, err)
	}
	st1, _ := os.Stat(path)
	if st1.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644 (runtimes read it)", st1.Mode().Perm())
	}
	time.Sleep(10 * time.Millisecond)
	if res, err = r.Reconcile(ctx, snap("10.244.1.0/24")); err != nil || res.Written {
		t.Fatalf("same content rewritten: %+v %v", res, err)
	}
	if st2, _ := os.Stat(path); !st2.ModTime().Equal(st1.ModTime()) {
		t.Fatal("mtime changed without a content change")
	}
	// podCIDRs unknown again (e.g. a source hiccup): the file stays
	if res, err = r.Reconcile(ctx, snap()); err != nil || !res.Present && res.Hash == "" {
		t.Fatalf("file not reported while waiting: %+v %v", res, err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatal("the config was removed while the podCIDR was unknown")
	}
}

func TestAutoMTUIsTheSmallestLinkOfAMultipathDefaultRoute(t *testing.T) {
	ns := netnstest.New(t)
	a := ns.AddVeth(t, "up1")
	b := ns.AddVeth(t, "up2")
	for l, mtu := range map[netlink.Link]int{a: 1500, b: 1400} {
		if err := ns.NL.LinkSetMTU(l, mtu); err != nil {
			t.Fatal(err)
		}
	}
	for l, addr := range map[netlink.Link]string{a: "10.1.0.1/24", b: "10.2.0.1/24"} {
		ad, _ := netlink.ParseAddr(addr)
		if err := ns.NL.AddrAdd(l, ad); err != nil {
			t.Fatal(err)
		}
	}
	def := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, MultiPath: []*netlink.NexthopInfo{
		{LinkIndex: a.Attrs().Index, Gw: net.ParseIP("10.1.0.254")},
		{LinkIndex: b.Attrs().Index, Gw: net.ParseIP("10.2.0.254")},
	}}
	if err := ns.NL.RouteAdd(def); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Path: filepath.Join(t.TempDir(), "c.conflist"), Mode: "ptp", CNIVersion: "1.0.0", Handle: ns.NL}
	res, err := r.Reconcile(context.Background(), snap("10.244.1.0/24"))
	if err != nil || res.MTU != 1400 {
		t.Fatalf("auto MTU = %d (err %v), want 1400 from the smaller next hop", res.MTU, err)
	}
	r.MTU = 9000 // the config wins
	if res, _ = r.Reconcile(context.Background(), snap("10.244.1.0/24")); res.MTU != 9000 || !res.Written {
		t.Fatalf("configured MTU: %+v", res)
	}
}
