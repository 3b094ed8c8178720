package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// peerState returns the state and reason node n's agent reports for name.
func peerState(t *testing.T, l *lab.Lab, n *lab.Node, name string) (string, string) {
	_, rec := statusJSON(t, l, n)
	for _, p := range rec.Peers {
		if p.Name == name {
			return p.State, p.Reason
		}
	}
	return "", ""
}

// Hostile or careless edits of the nodes file, on a running lab: none of
// them loses a route that carries traffic or hands it to someone else.
func TestHostileNodesFileNeverLosesOrHandsOverARoute(t *testing.T) {
	l := newLab(t, labOptions(t))
	good := l.Objects()
	converged(t, l, good, 10*time.Second)
	n1, n2 := l.Nodes[0], l.Nodes[1]
	write := func(objs []lab.NodeObject) {
		t.Helper()
		if err := l.WriteNodesFile(objs); err != nil {
			t.Fatal(err)
		}
	}

	// Item 1: a newcomer claiming node2's range is rejected, and stays
	// rejected across kill -9 + restart (the routes installed decide) and
	// across a reboot (no routes left: the cache decides).
	t.Run("podCIDR takeover across restarts", func(t *testing.T) {
		evil := lab.NodeObject{Name: "a-evil", Addresses: []string{"192.168.100.66"}, PodCIDRs: []string{n2.PodCIDR4.String()}}
		write(append(slices.Clone(good), evil))
		eventually(t, 10*time.Second, "a-evil rejected on node1", func() error {
			if st, why := peerState(t, l, n1, "a-evil"); st != status.PeerRejected {
				return fmt.Errorf("a-evil %s %s", st, why)
			}
			return nil
		})
		converged(t, l, good, 5*time.Second)
		for _, how := range []string{"kill -9 and restart", "reboot: routes gone, cache left"} {
			if err := l.StopAgent(n1, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(how, "reboot") {
				if out, err := lab.Exec(context.Background(), n1.NS, "ip", "route", "flush", "proto", "107"); err != nil {
					t.Fatalf("flush kindnet routes: %v %s", err, out)
				}
			}
			if err := l.StartAgent(n1); err != nil {
				t.Fatal(err)
			}
			if err := waitReady(n1, 30*time.Second); err != nil {
				t.Fatalf("%s: %v", how, err)
			}
			converged(t, l, good, 10*time.Second)
			if st, why := peerState(t, l, n1, "a-evil"); st != status.PeerRejected || !strings.Contains(why, "node2") {
				t.Fatalf("%s: a-evil is %s (%s), want rejected for node2's range", how, st, why)
			}
			if st, _ := peerState(t, l, n1, "node2"); st != status.PeerRouted {
				t.Fatalf("%s: node2 is %s, want routed", how, st)
			}
		}
		write(good)
	})

	// Item 2: a file without this node is not applied: every route stays,
	// status says degraded and why.
	t.Run("truncated or partial file", func(t *testing.T) {
		for name, body := range map[string]string{
			"0 bytes":       "",
			"comments only": "# being rewritten\n",
			"items: []":     "apiVersion: v1\nkind: List\nitems: []\n",
		} {
			if err := os.WriteFile(l.NodesFile, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, n := range l.Nodes {
				eventually(t, 10*time.Second, n.Name+" degraded by the "+name+" file", func() error {
					code, out := kindnetStatus(t, l, n)
					if code != 1 || !strings.Contains(out, "is not among its 0 nodes") {
						return fmt.Errorf("exit %d:\n%s", code, out)
					}
					return nil
				})
			}
			converged(t, l, good, time.Second)
		}
		write(good)
		converged(t, l, good, 10*time.Second)
	})

	// Item 3: a second entry named node1 does not replace node1's ranges
	// (node1 keeps its view); the other nodes reject both node1 entries.
	t.Run("this node named twice", func(t *testing.T) {
		conf, err := os.ReadFile(n1.CNIConfPath())
		if err != nil {
			t.Fatal(err)
		}
		twin := lab.NodeObject{Name: n1.Name, Addresses: []string{"192.168.100.67"}, PodCIDRs: []string{"10.244.67.0/24"}}
		write(append(slices.Clone(good), twin))
		eventually(t, 10*time.Second, "node1 degraded", func() error {
			code, out := kindnetStatus(t, l, n1)
			if code != 1 || !strings.Contains(out, `this node "node1" is named by 2 entries`) {
				return fmt.Errorf("exit %d:\n%s", code, out)
			}
			return nil
		})
		eventually(t, 10*time.Second, "node2 rejecting both node1 entries", func() error {
			if st, why := peerState(t, l, n2, n1.Name); st != status.PeerRejected || !strings.Contains(why, "duplicate node name: 2 entries") {
				return fmt.Errorf("node1 on node2: %s %s", st, why)
			}
			return nil
		})
		if now, _ := os.ReadFile(n1.CNIConfPath()); string(now) != string(conf) {
			t.Errorf("node1's CNI config changed:\n%s", now)
		}
		if got, want := nodeRoutes(t, n1), wantRoutes(n1, good); !slices.Equal(got, want) {
			t.Errorf("node1 routes %v, want %v", got, want)
		}
		write(good)
		converged(t, l, good, 10*time.Second)
	})

	// Item 4: a peer at the broadcast or network address of the nodes'
	// subnet is rejected with the reason, and the rest of the run, the
	// cache included, goes on.
	t.Run("peer at the subnet's broadcast address", func(t *testing.T) {
		cachePath := filepath.Join(n1.Dir, "state", "cluster-view.json")
		bcast := lab.NodeObject{Name: "bcast", Addresses: []string{"192.168.100.255"}, PodCIDRs: []string{"10.244.68.0/24"}}
		netw := lab.NodeObject{Name: "netaddr", Addresses: []string{"192.168.100.0"}, PodCIDRs: []string{"10.244.69.0/24"}}
		write(append(slices.Clone(good), bcast, netw))
		eventually(t, 10*time.Second, "bcast and netaddr rejected, cache written", func() error {
			if st, why := peerState(t, l, n1, "bcast"); st != status.PeerRejected || !strings.Contains(why, "broadcast address") {
				return fmt.Errorf("bcast: %s %s", st, why)
			}
			if st, why := peerState(t, l, n1, "netaddr"); st != status.PeerRejected || !strings.Contains(why, "network address") {
				return fmt.Errorf("netaddr: %s %s", st, why)
			}
			if b, err := os.ReadFile(cachePath); err != nil || !strings.Contains(string(b), `"bcast"`) {
				return fmt.Errorf("cache without the new view: %v", err)
			}
			return nil
		})
		converged(t, l, good, time.Second)
		write(good)
	})
}

// The forwarding sysctl is checked on every reconcile: switched off by
// hand, it is turned back on at the next run and the change is logged.
func TestHostileForwardingSwitchedOffIsTurnedBackOn(t *testing.T) {
	o := labOptions(t)
	o.AgentArgs = []string{"--resync-interval=1s"}
	l := newLab(t, o)
	converged(t, l, l.Objects(), 10*time.Second)
	n := l.Nodes[0]
	ctx := context.Background()
	if out, err := lab.Exec(ctx, n.NS, "sysctl", "-qw", "net.ipv4.ip_forward=0"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	eventually(t, 10*time.Second, "ip_forward back on", func() error {
		out, err := lab.Exec(ctx, n.NS, "sysctl", "-n", "net.ipv4.ip_forward")
		if err != nil || strings.TrimSpace(out) != "1" {
			return fmt.Errorf("ip_forward %q %v", out, err)
		}
		return nil
	})
	if logCount(n, "net.ipv4.ip_forward 0 -> 1") == 0 {
		t.Errorf("no log line says forwarding was turned back on")
	}
	requireMesh(t, l)
}
