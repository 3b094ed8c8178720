package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// txPackets reads a link's transmitted packet count inside a namespace.
func txPackets(t *testing.T, ns, link string) uint64 {
	t.Helper()
	out, err := lab.Exec(context.Background(), ns, "ip", "-j", "-s", "link", "show", link)
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		Stats struct {
			TX struct {
				Packets uint64 `json:"packets"`
			} `json:"tx"`
		} `json:"stats64"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -j -s link show %s: %v: %s", link, err, out)
	}
	return links[0].Stats.TX.Packets
}

// The benchmarks compare kindnet with this overlay, so it must really
// carry pod traffic through VXLAN, in both families, and leave kindnet's
// routes alone.
func TestVXLANOverlayCarriesPodTrafficThroughTheTunnelBesideKindnet(t *testing.T) {
	o := labOptions(t)
	o.Nodes, o.PodsPerNode = 2, 1
	l := newLab(t, o)
	if err := l.VXLANSupported(); err != nil {
		t.Skipf("this kernel has no VXLAN: %v", err)
	}
	before, err := lab.KindnetRoutes(context.Background(), l.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	ov, err := l.AddVXLANOverlay()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := ov.AddPod(ctx, l.Nodes[0], "ov1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := ov.AddPod(ctx, l.Nodes[1], "ov1")
	if err != nil {
		t.Fatal(err)
	}
	n1 := l.Nodes[0].NS
	for _, c := range []struct {
		dst    netip.Addr
		device string
	}{{b.IPv4, "flannel.1"}, {b.IPv6, "flannel-v6.1"}} {
		if !lab.OverlayCIDR4.Contains(c.dst) && !lab.OverlayCIDR6.Contains(c.dst) {
			t.Fatalf("overlay pod got %s, outside the overlay ranges", c.dst)
		}
		if route, err := lab.Exec(ctx, n1, "ip", "route", "get", c.dst.String()); err != nil || !strings.Contains(route, "dev "+c.device) {
			t.Fatalf("node1 routes %s via %q (%v), want dev %s", c.dst, route, err, c.device)
		}
		tx := txPackets(t, n1, c.device)
		eventually(t, 10*time.Second, fmt.Sprintf("overlay pod on node1 reaching %s", c.dst), func() error {
			return lab.Ping(ctx, a.NS, c.dst)
		})
		if after := txPackets(t, n1, c.device); after <= tx {
			t.Fatalf("%s sent no packets while %s was pinged (%d then %d)", c.device, c.dst, tx, after)
		}
	}
	after, err := lab.KindnetRoutes(context.Background(), l.Nodes[0])
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("the overlay changed kindnet's routes:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	requireMesh(t, l)
}
