package inspect

import (
	"context"
	"math"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

func TestCapacity(t *testing.T) {
	cases := []struct {
		cidr    string
		gateway bool
		want    uint64
	}{
		{"10.244.1.0/24", true, 253},  // network, gateway .1, broadcast
		{"10.244.1.0/24", false, 254}, // ptp: link-local gateway
		{"10.244.1.0/30", true, 1},
		{"10.244.1.0/31", true, 0},
		{"10.244.1.1/32", false, 0},
		{"fd00:10:244:1::/64", true, math.MaxUint64 - 1}, // 2^64 - network - gateway
		{"fd00:10:244:1::/64", false, math.MaxUint64},    // 2^64 - network
		{"fd00:10:244::/56", false, math.MaxUint64},      // saturates
		{"fd00::/120", true, 254},
	}
	for _, c := range cases {
		if got := Capacity(netip.MustParsePrefix(c.cidr), c.gateway); got != c.want {
			t.Errorf("Capacity(%s, gateway %v) = %d, want %d", c.cidr, c.gateway, got, c.want)
		}
	}
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIPAMUsageReadsBothStoreLayouts(t *testing.T) {
	ranges := []string{"10.244.1.0/24", "fd00:10:244:1::/64"}
	cases := []struct {
		name  string
		files map[string]string
		mode  string
		want  status.IPAM
	}{
		{"no store yet", nil, "ptp", status.IPAM{Note: "no IPAM store at DIR yet (no pod has been given an address)"}},
		{"host-local: a file per address, lock and markers ignored", map[string]string{
			"10.244.1.2": "c1\neth0", "10.244.1.3": "c2\neth0", "fd00:10:244:1::2": "c1\neth0", "10.99.0.5": "x",
			"lock": "", "last_reserved_ip.0": "10.244.1.3",
		}, "ptp", status.IPAM{Available: true, Ranges: []status.IPAMRange{
			{CIDR: "10.244.1.0/24", Used: 2, Capacity: 253}, {CIDR: "fd00:10:244:1::/64", Used: 1, Capacity: math.MaxUint64 - 1}}}},
		{"kindnet store, ptp: no gateway reserved", map[string]string{
			"allocations.json": `{"version":1,"last":{"10.244.1.0/24":"10.244.1.3"},"allocations":[
				{"containerID":"c1","ifname":"eth0","ips":["10.244.1.2","fd00:10:244:1::2"]},
				{"containerID":"c2","ifname":"eth0","ips":["10.244.1.3","fd00:10:244:1::3"]},
				{"containerID":"c3","ifname":"eth0","ips":["10.244.1.4"]}]}`,
			"lock": "",
		}, "ptp", status.IPAM{Available: true, Ranges: []status.IPAMRange{
			{CIDR: "10.244.1.0/24", Used: 3, Capacity: 254}, {CIDR: "fd00:10:244:1::/64", Used: 2, Capacity: math.MaxUint64}}}},
		{"kindnet store, bridge: gateway reserved", map[string]string{
			"allocations.json": `{"version":1,"allocations":[]}`,
		}, "bridge", status.IPAM{Available: true, Ranges: []status.IPAMRange{
			{CIDR: "10.244.1.0/24", Used: 0, Capacity: 253}, {CIDR: "fd00:10:244:1::/64", Used: 0, Capacity: math.MaxUint64 - 1}}}},
		{"kindnet store of a newer version", map[string]string{"allocations.json": `{"version":2}`}, "ptp",
			status.IPAM{Note: "IPAM state DIR/allocations.json has version 2; this kindnet reads version 1"}},
		{"corrupt kindnet store", map[string]string{"allocations.json": `{"version":`}, "ptp",
			status.IPAM{Note: "cannot read the IPAM state DIR/allocations.json: unexpected end of JSON input"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			store := filepath.Join(dir, "kindnet")
			if c.files != nil {
				writeFiles(t, store, c.files)
			}
			got := IPAMUsage(dir, "kindnet", ranges, c.mode)
			c.want.Dir = store
			c.want.Note = strings.ReplaceAll(c.want.Note, "DIR", store)
			if got.Dir != c.want.Dir || got.Available != c.want.Available || got.Note != c.want.Note || !slices.Equal(got.Ranges, c.want.Ranges) {
				t.Errorf("got  %+v\nwant %+v", got, c.want)
			}
		})
	}
}

func TestCNIFileReadsHashPluginAndMTU(t *testing.T) {
	path := filepath.Join(t.TempDir(), "10-kindnet.conflist")
	if c := CNIFile(path); c.Present || c.Path != path {
		t.Fatalf("absent: %+v", c)
	}
	for body, plugin := range map[string]string{
		`{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"ptp","mtu":1400},{"type":"portmap"}]}`:  "ptp",
		`{"cniVersion":"1.0.0","name":"kindnet","plugins":[{"type":"kindnet","mode":"bridge","mtu":1400}]}`: "bridge",
	} {
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c := CNIFile(path)
		if !c.Present || len(c.Hash) != 64 || c.Plugin != plugin || c.MTU != 1400 || c.Written.IsZero() {
			t.Fatalf("present: %+v, want plugin %s", c, plugin)
		}
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
	if _, err := mr.Reconcile(context.Background(), &model.Snapshot{}); err != nil {
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
	vc := &cache.File{Path: cfg.CachePath(), Node: "a"}
	if _, err := vc.Save(model.View{
		Self: model.Node{Name: "a", PodCIDRs: []string{"10.244.1.0/24"}},
		Peers: []model.Node{
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
