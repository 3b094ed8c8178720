package e2e

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

const hostPort = 30080

// fetch asks the whoami server behind addr:port, from namespace ns, which
// source address it saw.
func fetch(ctx context.Context, l *lab.Lab, ns string, addr netip.Addr, port uint16) (netip.Addr, error) {
	out, err := lab.Exec(ctx, ns, l.Opts.LabTool, "fetch", "--timeout", "2s", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		return netip.Addr{}, err
	}
	return netip.ParseAddr(strings.TrimSpace(out))
}

// A pod's hostPort, wired by kindnet's plugin through the agent-written
// conflist, answers on the node's IPv4 and IPv6 addresses: from another
// node (which sees its own address arrive: no SNAT), from the node itself,
// from the pod itself (hairpin) and from a neighbour pod; DEL removes it.
func TestHostPortReachedFromAnotherNodeTheNodeAndThePodItself(t *testing.T) {
	for _, mode := range []string{"ptp", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			o := labOptions(t)
			o.Nodes, o.PodsPerNode, o.CNIPlugin = 2, 0, mode
			l := newLab(t, o)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			n1, n2 := l.Nodes[0], l.Nodes[1]
			pod, err := l.AddPod(ctx, n1, "web", lab.PortMapping{HostPort: hostPort, ContainerPort: lab.WhoamiPort, Protocol: "tcp"})
			if err != nil {
				t.Fatal(err)
			}
			neighbour, err := l.AddPod(ctx, n1, "client")
			if err != nil {
				t.Fatal(err)
			}
			if err := l.Serve(ctx, pod.NS); err != nil {
				t.Fatal(err)
			}
			for _, nodeAddr := range []netip.Addr{n1.IPv4, n1.IPv6} {
				v6 := nodeAddr.Is6()
				pick := func(a, b netip.Addr) netip.Addr {
					if v6 {
						return b
					}
					return a
				}
				cases := []struct {
					from, fromNS string
					seen         netip.Addr // zero: any answer will do
				}{
					{"another node", n2.NS, pick(n2.IPv4, n2.IPv6)},
					{"the node itself", n1.NS, nodeAddr},
					{"the pod itself (hairpin)", pod.NS, netip.Addr{}},
					{"a neighbour pod", neighbour.NS, netip.Addr{}},
				}
				for _, c := range cases {
					var seen netip.Addr
					eventually(t, 10*time.Second, "reachable from "+c.from, func() error {
						seen, err = fetch(ctx, l, c.fromNS, nodeAddr, hostPort)
						return err
					})
					if c.seen.IsValid() && seen != c.seen {
						t.Errorf("%s -> %s:%d: the pod saw %s, want %s", c.from, nodeAddr, hostPort, seen, c.seen)
					}
					if c.from == "the pod itself (hairpin)" && seen == pick(pod.IPv4, pod.IPv6) {
						t.Errorf("hairpin traffic reached the pod with its own address %s: not masqueraded", seen)
					}
				}
			}
			rules, err := lab.Exec(ctx, n1.NS, "nft", "list", "table", "inet", "kindnet_hostport")
			if err != nil || !strings.Contains(rules, "kindnet/"+pod.NS+"/eth0 dnat v4") {
				t.Fatalf("hostPort rules of the pod: %v\n%s", err, rules)
			}
			if err := l.DelPod(ctx, pod); err != nil {
				t.Fatal(err)
			}
			rules, _ = lab.Exec(ctx, n1.NS, "nft", "list", "table", "inet", "kindnet_hostport")
			if strings.Contains(rules, "comment") {
				t.Errorf("hostPort rules left after DEL:\n%s", rules)
			}
			if _, err := fetch(ctx, l, n2.NS, n1.IPv4, hostPort); err == nil {
				t.Error("the hostPort still answers after DEL")
			}
		})
	}
}

// The scenario of the upstream conformance test "HostPort validates that
// there is no conflict between pods with same hostPort but different
// hostIP and protocol", through the agent-written conflist and libcni: one
// pod's hostPort on 127.0.0.1, another's on the node's address, same port,
// both reached from the node; the first sees a masqueraded source, never
// a loopback one. CHECK passes, route_localnet stays off on all, default
// and the node's external interface, and DEL of one pod leaves the other.
func TestHostPortOnLocalhostBesideTheNodeAddress(t *testing.T) {
	for _, mode := range []string{"ptp", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			o := labOptions(t)
			o.Nodes, o.PodsPerNode, o.CNIPlugin = 1, 0, mode
			l := newLab(t, o)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			n1 := l.Nodes[0]
			const port = 30081
			onLo, err := l.AddPod(ctx, n1, "onlo", lab.PortMapping{HostPort: port, ContainerPort: lab.WhoamiPort, Protocol: "tcp", HostIP: "127.0.0.1"})
			if err != nil {
				t.Fatal(err)
			}
			onNode, err := l.AddPod(ctx, n1, "onnode", lab.PortMapping{HostPort: port, ContainerPort: lab.WhoamiPort, Protocol: "tcp", HostIP: n1.IPv4.String()})
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []*lab.Pod{onLo, onNode} {
				if err := l.Serve(ctx, p.NS); err != nil {
					t.Fatal(err)
				}
			}
			localhost := netip.MustParseAddr("127.0.0.1")
			var seen netip.Addr
			eventually(t, 10*time.Second, "127.0.0.1 hostPort from the node", func() error {
				seen, err = fetch(ctx, l, n1.NS, localhost, port)
				return err
			})
			if !seen.IsValid() || seen.IsLoopback() {
				t.Errorf("the pod behind 127.0.0.1:%d saw source %s: loopback traffic must be masqueraded", port, seen)
			}
			if seen, err := fetch(ctx, l, n1.NS, n1.IPv4, port); err != nil || seen != n1.IPv4 {
				t.Errorf("%s:%d from the node: saw %s, %v; want the node's own address", n1.IPv4, port, seen, err)
			}
			if _, err := l.CNI(ctx, n1, "check", onLo); err != nil {
				t.Errorf("CHECK of the pod on 127.0.0.1: %v", err)
			}
			for _, key := range []string{"all", "default", "eth0"} {
				out, err := lab.Exec(ctx, n1.NS, "sysctl", "-n", "net.ipv4.conf."+key+".route_localnet")
				if err != nil || strings.TrimSpace(out) != "0" {
					t.Errorf("net.ipv4.conf.%s.route_localnet on the node = %q (%v), want 0", key, strings.TrimSpace(out), err)
				}
			}
			if err := l.DelPod(ctx, onLo); err != nil {
				t.Fatal(err)
			}
			if _, err := fetch(ctx, l, n1.NS, localhost, port); err == nil {
				t.Errorf("127.0.0.1:%d still answers after DEL of its pod", port)
			}
			if _, err := fetch(ctx, l, n1.NS, n1.IPv4, port); err != nil {
				t.Errorf("%s:%d stopped answering when the other pod went: %v", n1.IPv4, port, err)
			}
			if err := l.DelPod(ctx, onNode); err != nil {
				t.Fatal(err)
			}
		})
	}
}
