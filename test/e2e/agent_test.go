package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// nodeRoutes lists the kindnet routes of a lab node as "dst via gw",
// sorted; a destination listed twice would show up twice.
func nodeRoutes(t *testing.T, n *lab.Node) []string {
	t.Helper()
	h, err := netns.GetFromName(n.NS)
	if err != nil {
		t.Fatalf("open netns %s: %v", n.NS, err)
	}
	defer h.Close()
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	rs, err := routes.List(nl)
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

// wantRoutes is what node n must have: every other object's podCIDRs via
// its address of the same family.
func wantRoutes(n *lab.Node, objs []lab.NodeObject) []string {
	var out []string
	for _, o := range objs {
		if o.Name == n.Name {
			continue
		}
		for i, c := range o.PodCIDRs {
			out = append(out, c+" via "+o.Addresses[i])
		}
	}
	slices.Sort(out)
	return out
}

// converged waits until every node's kindnet routes equal what objs want.
func converged(t *testing.T, l *lab.Lab, objs []lab.NodeObject, d time.Duration) {
	t.Helper()
	for _, n := range l.Nodes {
		eventually(t, d, n.Name+" routes converged", func() error {
			got, want := nodeRoutes(t, n), wantRoutes(n, objs)
			if !slices.Equal(got, want) {
				return fmt.Errorf("routes %v, want %v", got, want)
			}
			return nil
		})
	}
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

func requireMesh(t *testing.T, l *lab.Lab) {
	t.Helper()
	m := l.PingMatrix(context.Background())
	if f := m.Failures(); len(f) > 0 {
		t.Fatalf("pods cannot reach each other:\n  %s", strings.Join(f, "\n  "))
	}
}

func TestThreeNodesGiveFullIPv4AndIPv6Mesh(t *testing.T) {
	o := labOptions(t)
	o.PodsPerNode = 2 // same-node and cross-node pairs
	l := newLab(t, o)
	converged(t, l, l.Objects(), 10*time.Second)
	requireMesh(t, l)
}

func TestTrafficLeavingTheClusterIsMasqueradedAndPodToPodIsNot(t *testing.T) {
	l := newLab(t, labOptions(t))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := l.Serve(ctx, l.Ext.NS); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		p := n.Pods[0]
		for _, c := range []struct{ dst, want string }{{lab.WorldIPv4.String(), n.IPv4.String()}, {lab.WorldIPv6.String(), n.IPv6.String()}} {
			seen, err := l.SourceSeen(ctx, p.NS, mustAddr(c.dst))
			if err != nil {
				t.Fatalf("%s/%s -> %s: %v", n.Name, p.Name, c.dst, err)
			}
			if seen.String() != c.want {
				t.Errorf("%s/%s -> %s seen as %s, want the node address %s", n.Name, p.Name, c.dst, seen, c.want)
			}
		}
	}
	a, b := l.Nodes[0].Pods[0], l.Nodes[1].Pods[0]
	if err := l.Serve(ctx, b.NS); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ dst, want string }{{b.IPv4.String(), a.IPv4.String()}, {b.IPv6.String(), a.IPv6.String()}} {
		seen, err := l.SourceSeen(ctx, a.NS, mustAddr(c.dst))
		if err != nil || seen.String() != c.want {
			t.Errorf("pod to pod %s: seen as %v (err %v), want the pod address %s", c.dst, seen, err, c.want)
		}
	}
}

// A node leaving costs each remaining node exactly one reconcile: the
// deletions of node3's routes that the reconcile makes itself must not kick
// a second one through the netlink watch.
func TestNodeRemovedFromNodesFileLosesItsRoutesOnEveryNodeInOneReconcile(t *testing.T) {
	o := labOptions(t)
	o.AgentArgs = []string{"--resync-interval=1h"} // no resync among the counted reconciles
	l := newLab(t, o)
	objs := l.Objects()
	converged(t, l, objs, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // let the convergence's own reconciles finish
	offsets := map[string]int64{}
	for _, n := range l.Nodes[:2] {
		if fi, err := os.Stat(n.LogPath()); err == nil {
			offsets[n.Name] = fi.Size()
		}
	}
	remaining := objs[:2] // node3 leaves the cluster
	if err := l.WriteNodesFile(remaining); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes[:2] {
		eventually(t, 10*time.Second, n.Name+" without node3's routes", func() error {
			if got, want := nodeRoutes(t, n), wantRoutes(n, remaining); !slices.Equal(got, want) {
				return fmt.Errorf("routes %v, want %v", got, want)
			}
			return nil
		})
	}
	time.Sleep(time.Second) // time for a wrongly kicked second reconcile to show in the log
	for _, n := range l.Nodes[:2] {
		b, _ := os.ReadFile(n.LogPath())
		var whys []string
		updates, repairs := 0, 0
		for _, line := range strings.Split(string(b[offsets[n.Name]:]), "\n") {
			if _, after, ok := strings.Cut(line, " msg=reconciled why="); ok {
				why, _, _ := strings.Cut(after, " summary=")
				whys = append(whys, why)
				switch {
				case why == `"source update"`:
					updates++
				case strings.HasPrefix(why, `"kindnet route removed`):
					repairs++
				}
			}
		}
		// Link and address changes of the lab's pod veths may still kick
		// reconciles of their own; those are not what is counted here.
		if updates != 1 || repairs != 0 {
			t.Errorf("%s: reconciles after node3 left: %q, want one for the source update and none for a route removal", n.Name, whys)
		}
	}
}

func TestKindnetRouteDeletedByHandComesBackWithoutWaitingForResync(t *testing.T) {
	o := labOptions(t)
	o.AgentArgs = []string{"--resync-interval=1h"} // only the netlink watch can bring it back
	l := newLab(t, o)
	converged(t, l, l.Objects(), 10*time.Second)
	n := l.Nodes[0]
	victim := l.Nodes[1].PodCIDR4.String()
	start := time.Now()
	if _, err := lab.Exec(context.Background(), n.NS, "ip", "route", "del", victim); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "route "+victim+" reinstalled", func() error {
		if !slices.Contains(nodeRoutes(t, n), victim+" via "+l.Nodes[1].IPv4.String()) {
			return fmt.Errorf("missing")
		}
		return nil
	})
	t.Logf("route %s reinstalled %s after deletion", victim, time.Since(start).Round(time.Millisecond))
	requireMesh(t, l)
}

func TestAgentKilledDuringChurnLeavesNoStaleOrDuplicateRoutes(t *testing.T) {
	l := newLab(t, labOptions(t))
	base := l.Objects()
	converged(t, l, base, 10*time.Second)
	churn := func(i int) []lab.NodeObject {
		objs := slices.Clone(base)
		// peers come and go, and node2 moves between two addresses
		for j := 0; j < i%4; j++ {
			objs = append(objs, lab.NodeObject{Name: fmt.Sprintf("extra%d", j),
				Addresses: []string{fmt.Sprintf("192.168.100.%d", 100+j), fmt.Sprintf("fd00:100::%d", 100+j)},
				PodCIDRs:  []string{fmt.Sprintf("10.244.%d.0/24", 100+j), fmt.Sprintf("fd00:10:244:%x::/64", 100+j)}})
		}
		if i%2 == 1 {
			objs[1].Addresses = []string{"192.168.100.22", "fd00:100::22"}
		}
		return objs
	}
	n := l.Nodes[0]
	for i := 1; i <= 5; i++ {
		if err := l.WriteNodesFile(churn(i)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i*37) * time.Millisecond) // land the kill at different points
		if err := l.RestartAgent(n, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	final := churn(5)
	if err := l.WriteNodesFile(final); err != nil {
		t.Fatal(err)
	}
	converged(t, l, final, 15*time.Second)
	// and back to the real cluster: every node's routes exact, pods reach each other
	if err := l.WriteNodesFile(base); err != nil {
		t.Fatal(err)
	}
	converged(t, l, base, 15*time.Second)
	requireMesh(t, l)
}

func TestAgentRestartedWithoutNodesFileRestoresRoutesFromCache(t *testing.T) {
	l := newLab(t, labOptions(t))
	converged(t, l, l.Objects(), 10*time.Second)
	n := l.Nodes[0]
	want := nodeRoutes(t, n)
	if err := l.StopAgent(n, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// The routes must come from the cache, so remove them and the file.
	if _, err := lab.Exec(context.Background(), n.NS, "ip", "route", "flush", "proto", "107"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(context.Background(), n.NS, "ip", "-6", "route", "flush", "proto", "107"); err != nil {
		t.Fatal(err)
	}
	if got := nodeRoutes(t, n); len(got) != 0 {
		t.Fatalf("flush left %v", got)
	}
	if err := os.Rename(l.NodesFile, l.NodesFile+".gone"); err != nil {
		t.Fatal(err)
	}
	if err := l.StartAgent(n); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "routes restored from the cache", func() error {
		if got := nodeRoutes(t, n); !slices.Equal(got, want) {
			return fmt.Errorf("routes %v, want %v", got, want)
		}
		return nil
	})
	eventually(t, 5*time.Second, "logged a bootstrap from the cache", func() error {
		if b, _ := os.ReadFile(n.LogPath()); !strings.Contains(string(b), "view=cache") {
			return fmt.Errorf("no \"view=cache\" in the agent log")
		}
		return nil
	})
	requireMesh(t, l)
}

func TestHostileNodesAreRejectedAndChangeNothing(t *testing.T) {
	l := newLab(t, labOptions(t))
	good := l.Objects()
	converged(t, l, good, 10*time.Second)
	before := map[string][]string{}
	for _, n := range l.Nodes {
		before[n.Name] = nodeRoutes(t, n)
	}
	hostile := []lab.NodeObject{
		{Name: "evil-default", Addresses: []string{"192.168.100.66"}, PodCIDRs: []string{"0.0.0.0/0"}},
		{Name: "evil-subnet", Addresses: []string{"192.168.100.67"}, PodCIDRs: []string{"192.168.100.0/24"}},
		{Name: "evil-outside", Addresses: []string{"192.168.100.68"}, PodCIDRs: []string{"10.99.0.0/24"}},
		{Name: "evil-steal", Addresses: []string{"192.168.100.69"}, PodCIDRs: []string{"10.244.2.0/24"}},
		{Name: "evil-self", Addresses: []string{"192.168.100.11"}, PodCIDRs: []string{"10.244.70.0/24"}},
		{Name: "evil-v6", Addresses: []string{"fd00:100::71"}, PodCIDRs: []string{"::/0"}},
	}
	if err := l.WriteNodesFile(append(slices.Clone(good), hostile...)); err != nil {
		t.Fatal(err)
	}
	for _, n := range l.Nodes {
		eventually(t, 10*time.Second, n.Name+" logged the rejections", func() error {
			b, _ := os.ReadFile(n.LogPath())
			for _, h := range hostile {
				if !strings.Contains(string(b), "peer="+h.Name) {
					return fmt.Errorf("no rejection logged for %s", h.Name)
				}
			}
			return nil
		})
	}
	// give the agents time to (wrongly) act, then check nothing changed
	time.Sleep(300 * time.Millisecond)
	for _, n := range l.Nodes {
		if got, want := nodeRoutes(t, n), before[n.Name]; !slices.Equal(got, want) {
			t.Errorf("%s routes changed: %v, want %v", n.Name, got, want)
		}
	}
	requireMesh(t, l)
}

func TestStopLeavesNetworkInPlaceAndCleanupRemovesOnlyKindnetState(t *testing.T) {
	l := newLab(t, labOptions(t))
	converged(t, l, l.Objects(), 10*time.Second)
	n := l.Nodes[0]
	ctx := context.Background()
	// someone else's route and table, which cleanup must not touch
	if _, err := lab.Exec(ctx, n.NS, "ip", "route", "add", "172.16.0.0/12", "via", "192.168.100.1", "proto", "static"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(ctx, n.NS, "nft", "add table inet other"); err != nil {
		t.Fatal(err)
	}
	routesBefore := nodeRoutes(t, n)
	if err := l.StopAgent(n, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := nodeRoutes(t, n); !slices.Equal(got, routesBefore) {
		t.Fatalf("stopping the agent changed routes: %v -> %v", routesBefore, got)
	}
	if _, err := os.Stat(n.CNIConfPath()); err != nil {
		t.Fatalf("stopping the agent removed the CNI config: %v", err)
	}
	requireMesh(t, l) // pods keep working with the agent stopped

	out, err := exec.Command("ip", "netns", "exec", n.NS, l.Opts.Kindnet, "cleanup", "--config", n.ConfigPath()).CombinedOutput()
	if err != nil {
		t.Fatalf("kindnet cleanup: %v\n%s", err, out)
	}
	t.Logf("kindnet cleanup:\n%s", out)
	if got := nodeRoutes(t, n); len(got) != 0 {
		t.Errorf("cleanup left kindnet routes %v", got)
	}
	tables, _ := lab.Exec(ctx, n.NS, "nft", "list", "tables")
	if strings.Contains(tables, "inet kindnet") || !strings.Contains(tables, "inet other") {
		t.Errorf("after cleanup the tables are:\n%s", tables)
	}
	all, _ := lab.Exec(ctx, n.NS, "ip", "route")
	if !strings.Contains(all, "172.16.0.0/12 via 192.168.100.1") || !strings.Contains(all, "default via 192.168.100.1") {
		t.Errorf("cleanup touched foreign routes:\n%s", all)
	}
	if _, err := os.Stat(n.CNIConfPath()); !os.IsNotExist(err) {
		t.Errorf("CNI config still present after cleanup (err %v)", err)
	}
}
