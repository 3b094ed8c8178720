package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// routeAdded is a kindnet route appearing in a node's namespace.
type routeAdded struct {
	node string
	dst  netip.Prefix
	at   time.Time
}

// watchRouteAdds reports every kindnet route added in the lab nodes, as the
// kernel announces it (no polling delay in the measurement).
func watchRouteAdds(b *testing.B, nodes []*lab.Node) <-chan routeAdded {
	out := make(chan routeAdded, 4096)
	done := make(chan struct{})
	b.Cleanup(func() { close(done) })
	for _, n := range nodes {
		h, err := netns.GetFromName(n.NS)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { h.Close() })
		ch := make(chan netlink.RouteUpdate, 4096)
		if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &h}); err != nil {
			b.Fatalf("subscribe to routes of %s: %v", n.Name, err)
		}
		go func(name string) {
			for u := range ch {
				if u.Type != unix.RTM_NEWROUTE || u.Protocol != routes.Protocol || u.Dst == nil {
					continue
				}
				p, ok := netip.AddrFromSlice(u.Dst.IP)
				if !ok {
					continue
				}
				ones, _ := u.Dst.Mask.Size()
				select {
				case out <- routeAdded{node: name, dst: netip.PrefixFrom(p.Unmap(), ones), at: time.Now()}:
				case <-done:
					return
				}
			}
		}(n.Name)
	}
	return out
}

// BenchmarkKubeNodeCreateToRoute measures how long after a Node is created
// in the API server its route is present on every other lab node, over 100
// Nodes created one after another. Goal: p99 ≤ 100 ms.
//
//	make bench-kube
func BenchmarkKubeNodeCreateToRoute(b *testing.B) {
	const events = 100
	kl := newKubeLab(b, kubeLabOptions{rbac: true})
	kl.waitRoutes(b, 30*time.Second, "routed", nil)
	adds := watchRouteAdds(b, kl.Nodes)
	ctx := context.Background()
	var lat []time.Duration
	b.ResetTimer()
	for run := 0; run < b.N; run++ {
		for i := range events {
			name := fmt.Sprintf("bench-%d-%d", run, i)
			host := 100 + i
			dst := netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", host))
			start := time.Now()
			if err := createNode(ctx, kl.admin, name, []string{"192.168.100." + strconv.Itoa(host)}, []string{dst.String()}); err != nil {
				b.Fatal(err)
			}
			seen := map[string]time.Time{}
			timeout := time.After(10 * time.Second)
			for len(seen) < len(kl.Nodes) {
				select {
				case a := <-adds:
					if a.dst == dst {
						seen[a.node] = a.at
					}
				case <-timeout:
					b.Fatalf("route %s not on every node after 10s (seen on %v)", dst, seen)
				}
			}
			var last time.Time
			for _, at := range seen {
				if at.After(last) {
					last = at
				}
			}
			lat = append(lat, last.Sub(start))
			// Next event from a clean slate: the Node goes away again.
			if err := kl.admin.CoreV1().Nodes().Delete(ctx, name, deleteNow); err != nil {
				b.Fatal(err)
			}
			kl.waitRoutes(b, 10*time.Second, "bench Node removed", nil)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	b.ReportMetric(float64(pct(0.50).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.Logf("Node create → route on all %d nodes, %d events: p50 %s p99 %s max %s",
		len(kl.Nodes), len(lat), pct(0.50), pct(0.99), lat[len(lat)-1])
}

// BenchmarkKubeSync5000 measures one agent starting against an API server
// holding 5,000 Nodes: the time until its 4,999 routes are installed, and
// its resident memory afterwards. Goals: ≤ 2 s, ≤ 40 MiB.
//
//	make bench-kube
func BenchmarkKubeSync5000(b *testing.B) {
	const peers = 4999
	for run := 0; run < b.N; run++ {
		var ready time.Time
		kl := newKubeLab(b, kubeLabOptions{
			rbac: true, nodes: 1,
			// Room for 5,000 /24s, and an on-link network for their addresses.
			agentArgs: []string{"--cluster-cidrs", "10.0.0.0/8,fd00:10:244::/56"},
			beforeAgents: func(kl *kubeLab) error {
				n := kl.Nodes[0]
				if _, err := lab.Exec(context.Background(), n.NS, "ip", "addr", "add", "172.16.0.1/16", "dev", "eth0"); err != nil {
					return err
				}
				if err := createPeers(kl, peers); err != nil {
					return err
				}
				ready = time.Now()
				return nil
			},
		})
		n := kl.Nodes[0]
		h, err := netns.GetFromName(n.NS)
		if err != nil {
			b.Fatal(err)
		}
		nl, err := netlink.NewHandleAt(h)
		if err != nil {
			b.Fatal(err)
		}
		var synced time.Duration
		for {
			rs, err := routes.List(nl)
			if err != nil {
				b.Fatal(err)
			}
			if len(rs) >= peers {
				synced = time.Since(ready)
				break
			}
			if time.Since(ready) > 2*time.Minute {
				b.Fatalf("only %d of %d routes after 2 minutes", len(rs), peers)
			}
			time.Sleep(5 * time.Millisecond)
		}
		rss, hwm := memOf(n.AgentPID)
		time.Sleep(5 * time.Second)
		rssLater, _ := memOf(n.AgentPID)
		nl.Close()
		h.Close()
		b.ReportMetric(synced.Seconds(), "sync-s")
		b.ReportMetric(float64(rss)/1024, "rss-MiB")
		b.ReportMetric(float64(hwm)/1024, "peak-rss-MiB")
		b.ReportMetric(float64(rssLater)/1024, "rss-5s-later-MiB")
		b.Logf("%d routes installed %s after the agent started; RSS %d KiB right after (peak %d KiB), %d KiB 5 s later",
			peers, synced.Round(time.Millisecond), rss, hwm, rssLater)
	}
}

// createPeers creates n peer Nodes, 32 at a time: 172.16.x.y on the
// agent's on-link network, podCIDRs 10.x.y.0/24 from 10.1.0.0 on.
func createPeers(kl *kubeLab, n int) error {
	ctx := context.Background()
	jobs := make(chan int)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				k := i + 256 // skip 10.0.x and 172.16.0.x (the agent's own address)
				ip := fmt.Sprintf("172.16.%d.%d", k/256, k%256)
				cidr := fmt.Sprintf("10.%d.%d.0/24", k/256, k%256)
				if err := createNode(ctx, kl.admin, fmt.Sprintf("peer-%05d", i), []string{ip}, []string{cidr}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	start := time.Now()
	for i := range n {
		select {
		case jobs <- i:
		case err := <-errs:
			close(jobs)
			wg.Wait()
			return err
		}
	}
	close(jobs)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
	}
	fmt.Fprintf(os.Stderr, "created %d Nodes in %s\n", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// memOf returns VmRSS and VmHWM (peak) of a process in KiB.
func memOf(pid int) (rss, hwm int) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	return rss, hwm
}

var deleteNow = metav1.DeleteOptions{}
