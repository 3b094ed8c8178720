package inspect

import (
	"context"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/cluster"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

func TestCapacity(t *testing.T) {
	for cidr, want := range map[string]uint64{
		"10.244.1.0/24":      253, // network, gateway .1, broadcast
		"10.244.1.0/30":      1,
		"10.244.1.0/31":      0,
		"10.244.1.1/32":      0,
		"fd00:10:244:1::/64": math.MaxUint64 - 1, // 2^64 - network - gateway
		"fd00:10:244::/56":   math.MaxUint64,     // saturates
		"fd00::/120":         254,
	} {
		if got := Capacity(netip.MustParsePrefix(cidr)); got != want {
			t.Errorf("Capacity(%s) = %d, want %d", cidr, got, want)
		}
	}
}

func TestIPAMUsageCountsAddressFilesPerRange(t *testing.T) {
	dir := t.TempDir()
	if u := IPAMUsage(dir, "kindnet", []string{"10.244.1.0/24"}); u.Available || u.Note == "" {
		t.Fatalf("missing store: %+v", u)
	}
	store := filepath.Join(dir, "kindnet")
	if err := os.MkdirAll(store, 0o755); err != nil {
		t.Fatal(err)
	}
	// host-local's layout: one file per address holding the container ID,
	// plus a lock and last-reserved markers that are not allocations.
	for _, f := range []string{"10.244.1.2", "10.244.1.3", "fd00:10:244:1::2", "10.99.0.5", "lock", "last_reserved_ip.0"} {
		if err := os.WriteFile(filepath.Join(store, f), []byte("c0ffee\neth0\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	u := IPAMUsage(dir, "kindnet", []string{"10.244.1.0/24", "fd00:10:244:1::/64"})
	want := []status.IPAMRange{{CIDR: "10.244.1.0/24", Used: 2, Capacity: 253}, {CIDR: "fd00:10:244:1::/64", Used: 1, Capacity: math.MaxUint64 - 1}}
	if !u.Available || u.Dir != store || !slices.Equal(u.Ranges, want) {
		t.Fatalf("usage %+v, want ranges %+v", u, want)
	}
}

func TestCNIFileReadsHashPluginAndMTU(t *testing.T) {
	path := filepath.Join(t.TempDir(), "10-kindnet.conflist")
	if c := CNIFile(path); c.Present || c.Path != path {
		t.Fatalf("absent: %+v", c)
	}
	if err := os.WriteFile(path, []byte(`{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"ptp","mtu":1400},{"type":"portmap"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := CNIFile(path)
	if !c.Present || len(c.Hash) != 64 || c.Plugin != "ptp" || c.MTU != 1400 || c.Written.IsZero() {
		t.Fatalf("present: %+v", c)
	}
}

// TestHostInspectionFindsKindnetRoutesTablesAndFiles builds, in a throwaway
// namespace, what an agent leaves behind (a kindnet route, the nft table,
// the conflist, the cache), then inspects it as `kindnet status` does with
// the agent down.
func TestHostInspectionFindsKindnetRoutesTablesAndFiles(t *testing.T) {
	ns := netnstest.New(t)
	link := ns.AddVeth(t, "eth0")
	addr, _ := netlink.ParseAddr("192.168.50.1/24")
	if err := ns.NL.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	_, dst, _ := net.ParseCIDR("10.244.2.0/24")
	if err := ns.NL.RouteAdd(&netlink.Route{Dst: dst, Gw: net.ParseIP("192.168.50.2"), LinkIndex: link.Attrs().Index,
		Protocol: routes.Protocol, Table: unix.RT_TABLE_MAIN}); err != nil {
		t.Fatal(err)
	}
	table := netnstest.UniqueName("kindnet_t")
	mr := &masq.Reconciler{Table: table, Enabled: true, NetNSFd: ns.Fd()}
	if _, err := mr.Reconcile(context.Background(), &cluster.Snapshot{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg, err := config.Load(config.Sources{Environ: []string{
		"KINDNET_NODE_NAME=a", "KINDNET_NODES_FILE=/nonexistent/nodes.yaml",
		"KINDNET_RUN_DIR=" + dir + "/run", "KINDNET_STATE_DIR=" + dir + "/state",
		"KINDNET_CNI_CONF_DIR=" + dir + "/cni", "KINDNET_MASQUERADE_TABLE=" + table,
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir+"/cni", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.CNIConfPath(), []byte(`{"plugins":[{"type":"ptp","mtu":1500}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := &cluster.Cache{Path: cfg.CachePath(), Node: "a"}
	if _, err := cache.Save(cluster.View{
		Self: cluster.Node{Name: "a", PodCIDRs: []string{"10.244.1.0/24"}},
		Peers: []cluster.Node{
			{Name: "b", Addresses: []string{"192.168.50.2"}, PodCIDRs: []string{"10.244.2.0/24"}},
			{Name: "c", Addresses: []string{"192.168.50.3"}, PodCIDRs: []string{"10.244.3.0/24"}},
		},
	}); err != nil {
		t.Fatal(err)
	}

	var rec status.Record
	if err := ns.Do(func() error { rec = Host(cfg, "no socket at "+cfg.SocketPath()); return nil }); err != nil {
		t.Fatal(err)
	}
	rec.Stamp(rec.CNI.Written)
	h := rec.Host
	if len(h.Problems) != 0 {
		t.Fatalf("problems: %v", h.Problems)
	}
	if !slices.Equal(h.Routes, []status.HostRoute{{Dst: "10.244.2.0/24", Via: "192.168.50.2", Dev: "eth0"}}) || rec.Routes.Installed != 1 {
		t.Errorf("routes %+v", h.Routes)
	}
	if !slices.Contains(h.NftTables, table) || !rec.Masquerade.Present {
		t.Errorf("nft tables %v, masquerade %+v", h.NftTables, rec.Masquerade)
	}
	if !rec.CNI.Present || rec.CNI.Plugin != "ptp" {
		t.Errorf("cni %+v", rec.CNI)
	}
	if !h.Cache.Present || h.Cache.Peers != 2 || !slices.Equal(rec.Node.PodCIDRs, []string{"10.244.1.0/24"}) {
		t.Errorf("cache %+v node %+v", h.Cache, rec.Node)
	}
	if len(rec.Peers) != 2 || rec.Peers[0].State != status.PeerRouted || rec.Peers[1].State != status.PeerUnknown {
		t.Errorf("peers %+v", rec.Peers)
	}
	if rec.Verdict.State != status.Down || rec.Verdict.ExitCode() != 2 {
		t.Errorf("verdict %v", rec.Verdict)
	}
}
