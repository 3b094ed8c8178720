package bench

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/nodesfile"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// synthPolicy is what the agent of a synthetic node validates against:
// its config's clusterCIDRs and the addresses and subnet of its one link.
func synthPolicy() model.Policy {
	s4, s6 := synthSelfAddrs()
	return model.Policy{ClusterCIDRs: []netip.Prefix{synthCluster4, synthCluster6},
		HostAddrs: []netip.Addr{s4, s6}, HostSubnets: []netip.Prefix{synthNet4, synthNet6}}
}

func TestSyntheticClusterIsAcceptedWholeByValidation(t *testing.T) {
	alt := map[int]bool{}
	for i := 1; i <= 1000; i += 3 {
		alt[i] = true
	}
	for _, c := range []struct {
		name  string
		peers int
		alt   map[int]bool
	}{
		{"1,000 peers", 1000, nil},
		{"1,000 peers, a third on their alternative address", 1000, alt},
		{"300 peers, past the first /24 boundaries", 300, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := model.Validate(synthView(c.peers, c.alt), synthPolicy())
			if len(s.Rejected) != 0 || len(s.Peers) != c.peers {
				t.Fatalf("%d peers accepted, %d rejected (first: %+v)", len(s.Peers), len(s.Rejected), s.Rejected)
			}
			seen := map[netip.Prefix]bool{}
			for _, p := range append(s.Peers, s.Self) {
				if len(p.PodCIDRs) != 2 {
					t.Fatalf("%s has podCIDRs %v, want one per family", p.Name, p.PodCIDRs)
				}
				for _, pc := range p.PodCIDRs {
					if seen[pc] {
						t.Fatalf("podCIDR %s used twice", pc)
					}
					seen[pc] = true
				}
			}
		})
	}
}

func TestSyntheticAddressesStayOnTheNodeLinkAndInTheClusterRanges(t *testing.T) {
	for _, idx := range []int{0, 1, 255, 256, 5001, synthMaxPeers} {
		for _, a := range []netip.Addr{synthAddr4(idx, false), synthAddr4(idx, true), synthAddr6(idx)} {
			if !synthNet4.Contains(a) && !synthNet6.Contains(a) {
				t.Errorf("node %d: address %s is not on the node link", idx, a)
			}
		}
		c4, c6 := synthPodCIDRs(idx)
		if !synthCluster4.Contains(c4.Addr()) || !synthCluster6.Contains(c6.Addr()) || c4.Masked() != c4 || c6.Masked() != c6 {
			t.Errorf("node %d: pod ranges %s %s are not network ranges inside the cluster ranges", idx, c4, c6)
		}
	}
	if synthAddr4(1, false) == synthAddr4(1, true) {
		t.Fatal("a peer's alternative address must differ from its address")
	}
}

func TestSyntheticNodesFileAndCacheReadBackAsTheSameView(t *testing.T) {
	dir := t.TempDir()
	want := synthView(50, map[int]bool{7: true})
	want.Normalize()

	nf := &lab.Lab{NodesFile: filepath.Join(dir, "nodes.yaml")}
	if err := nf.WriteNodesFile(nodeObjects(want)); err != nil {
		t.Fatal(err)
	}
	got, err := (&nodesfile.Source{Path: nf.NodesFile, Self: synthSelfName}).Read()
	if err != nil {
		t.Fatal(err)
	}
	got.Normalize()
	if !got.Equal(want) {
		t.Fatalf("nodes file read back as a different view:\n got %+v\nwant %+v", got.Peers[:2], want.Peers[:2])
	}

	c := &cache.File{Path: filepath.Join(dir, "state", "cluster-view.json"), Node: synthSelfName}
	if _, err := c.Save(want); err != nil {
		t.Fatal(err)
	}
	v, err := c.Load()
	if err != nil || v == nil || !v.Equal(want) {
		t.Fatalf("cache read back as %v, %v", v, err)
	}
}

func TestSyntheticAgentConfigLoadsWithEveryPathInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	for _, resync := range []string{"1h", ""} {
		if err := os.WriteFile(path, []byte(synthAgentConfig(dir, filepath.Join(dir, "absent.yaml"), "/usr/lib/kindnet", resync)), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(config.Sources{File: path, FileRequired: true})
		if err != nil {
			t.Fatalf("the agent would refuse the benchmark's config: %v", err)
		}
		for _, p := range []string{cfg.CachePath(), cfg.CNIConfPath(), cfg.SocketPath(), cfg.NodesFile} {
			if !strings.HasPrefix(p, dir+"/") {
				t.Errorf("%s is outside the node's directory %s", p, dir)
			}
		}
		h := &synthHost{dir: dir}
		if cfg.CachePath() != h.cachePath() || cfg.CNIConfPath() != h.conflistPath() {
			t.Errorf("the benchmark looks for the cache at %s and the conflist at %s; the agent uses %s and %s",
				h.cachePath(), h.conflistPath(), cfg.CachePath(), cfg.CNIConfPath())
		}
		if cfg.NodeName != synthSelfName || len(cfg.ClusterCIDRs) != 2 {
			t.Errorf("node %q, clusterCIDRs %v", cfg.NodeName, cfg.ClusterCIDRs)
		}
		if wantHour := resync == "1h"; wantHour != (cfg.ResyncInterval.Std() == time.Hour) {
			t.Errorf("resync %q gave an interval of %s", resync, cfg.ResyncInterval.Std())
		}
	}
}

func TestRouteBatchHoldsTheAgentsRoutes(t *testing.T) {
	got := strings.Split(strings.TrimSpace(routeBatch(300)), "\n")
	if len(got) != 600 {
		t.Fatalf("%d lines, want 600", len(got))
	}
	for _, want := range []string{
		"route add 10.0.1.0/24 via 172.16.0.2 proto 107",
		"route add fd00:10:0:1::/64 via fd00:172:16::2 proto 107",
		"route add 10.1.44.0/24 via 172.16.1.45 proto 107",
	} {
		if !slices.Contains(got, want) {
			t.Errorf("no line %q in %v…", want, got[:4])
		}
	}
}
