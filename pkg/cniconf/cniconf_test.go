package cniconf

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/cni"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

func params(version, mode string) Params {
	return Params{
		Mode:          mode,
		PodCIDRs:      []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:10:244:1::/64")},
		MTU:           1450,
		CNIVersion:    version,
		IPAMDir:       "/run/kindnet/ipam",
		HostPortTable: "kindnet_hostport",
	}
}

func TestRenderNamesKindnetsOwnPluginWithTheNodesSettings(t *testing.T) {
	b, err := Render(params("1.0.0", "bridge"))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CNIVersion string `json:"cniVersion"`
		Name       string `json:"name"`
		Plugins    []struct {
			Type          string          `json:"type"`
			Mode          string          `json:"mode"`
			MTU           int             `json:"mtu"`
			Ranges        []string        `json:"ranges"`
			IPAMDir       string          `json:"ipamDir"`
			HostPortTable string          `json:"hostPortTable"`
			Capabilities  map[string]bool `json:"capabilities"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.CNIVersion != "1.0.0" || got.Name != NetworkName || len(got.Plugins) != 1 {
		t.Fatalf("conflist %s", b)
	}
	p := got.Plugins[0]
	if p.Type != "kindnet" || p.Mode != "bridge" || p.MTU != 1450 || p.IPAMDir != "/run/kindnet/ipam" ||
		p.HostPortTable != "kindnet_hostport" || !p.Capabilities["portMappings"] ||
		!slices.Equal(p.Ranges, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}) {
		t.Errorf("plugin %+v", p)
	}
	if _, err := Render(Params{CNIVersion: "1.0.0"}); err == nil {
		t.Error("rendered a conflist without pod ranges")
	}
}

// The agent offers exactly the versions the plugin speaks, and the plugin
// accepts what the agent writes, for every version and mode, as libcni
// hands it over.
func TestPluginAcceptsWhatTheAgentWrites(t *testing.T) {
	if !slices.Equal(config.CNISpecVersions, cni.Supported) {
		t.Fatalf("config offers %v, the plugin speaks %v", config.CNISpecVersions, cni.Supported)
	}
	for _, v := range config.CNISpecVersions {
		for _, mode := range []string{"ptp", "bridge"} {
			b, err := Render(params(v, mode))
			if err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromBytes(b)
			if err != nil {
				t.Fatalf("%s %s: libcni rejects the conflist: %v", v, mode, err)
			}
			net, err := libcni.InjectConf(list.Plugins[0], map[string]any{"name": list.Name, "cniVersion": list.CNIVersion})
			if err != nil {
				t.Fatal(err)
			}
			c, perr := cni.Parse(net.Bytes)
			if perr != nil {
				t.Fatalf("%s %s: plugin rejects the agent's config: %v", v, mode, perr)
			}
			if string(c.Mode) != mode || c.MTU != 1450 || len(c.Ranges) != 2 || c.HostPortTable != "kindnet_hostport" {
				t.Errorf("%s %s: parsed %+v", v, mode, c)
			}
		}
	}
}

func snap(cidrs ...string) *model.Snapshot {
	s := &model.Snapshot{}
	for _, c := range cidrs {
		s.Self.PodCIDRs = append(s.Self.PodCIDRs, netip.MustParsePrefix(c))
	}
	return s
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
