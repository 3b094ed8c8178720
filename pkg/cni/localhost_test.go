package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/hostport"
)

const (
	loHostPort  = 54323 // the port of the upstream conformance test
	podPort     = 8080
	localSvc    = 9911 // a node service on 127.0.0.1 only
	wildcardSvc = 9912 // a node service on every address
)

// The upstream conformance test "HostPort validates that there is no
// conflict between pods with same hostPort but different hostIP and
// protocol": one pod on 127.0.0.1:54323, another on the node's address,
// same port, TCP and UDP, reached from the node. Around it, what
// route_localnet on the pod's link must not open (CVE-2020-8558): a
// neighbour on the node's external link, and the pods themselves, must not
// reach the node's 127.0.0.1, nor send with a loopback source.
func TestLocalhostHostPortWorksBesideTheNodeAddressAndKeepsLoopbackLocal(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []Mode{ModePTP, ModeBridge} {
		t.Run(string(mode), func(t *testing.T) {
			n := newNode(t)
			// Deterministic source validation: 0 is the kernel's default and
			// the weakest, where a spoofed 127.0.0.2 is not a martian.
			n.ns.Exec(t, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
			neigh := n.neighbour(t)

			ports := func(hostIP string) map[string]any {
				var pms []map[string]any
				for _, proto := range []string{"tcp", "udp"} {
					pms = append(pms, map[string]any{"hostPort": loHostPort, "containerPort": podPort, "protocol": proto, "hostIP": hostIP})
				}
				return map[string]any{"runtimeConfig": map[string]any{"portMappings": pms}}
			}
			loConf := n.conf("1.1.0", mode, ports("127.0.0.1"))
			nodeConf := n.conf("1.1.0", mode, ports(nodeV4.String()))
			loPod, nodePod := netnstest.New(t), netnstest.New(t)
			loRes := n.add("1.1.0", loConf, "on-lo", loPod)
			n.add("1.1.0", nodeConf, "on-node", nodePod)
			serve(t, loPod, "on-lo")
			serve(t, nodePod, "on-node")

			lo := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), loHostPort)
			node := netip.AddrPortFrom(nodeV4, loHostPort)
			for _, proto := range []string{"tcp", "udp"} {
				name, seen := n.ask(t, proto, lo)
				if name != "on-lo" || seen.IsLoopback() {
					t.Errorf("%s %s from the node: answered by %q seeing source %s, want on-lo seeing a non-loopback source", proto, lo, name, seen)
				}
				if name, _ := n.ask(t, proto, node); name != "on-node" {
					t.Errorf("%s %s from the node: answered by %q, want on-node", proto, node, name)
				}
			}
			check := call{verb: "CHECK", id: "on-lo", netns: loPod.Path(), ifname: "eth0", conf: withPrev(t, loConf, "1.1.0", loRes)}
			n.must(check)

			// route_localnet: on the link the pod's traffic crosses, nowhere else.
			loLink, nodeLink := HostIfName("kindnet/on-lo/eth0"), HostIfName("kindnet/on-node/eth0")
			if mode == ModeBridge {
				loLink, nodeLink = DefaultBridge, ""
			}
			want := map[string]string{"all": "0", "default": "0", "ext0": "0", "lo": "0", loLink: "1"}
			if nodeLink != "" {
				want[nodeLink] = "0"
			}
			for link, v := range want {
				if got := readSysctl(t, n.ns, "ipv4/conf/"+link+"/route_localnet"); got != v {
					t.Errorf("net.ipv4.conf.%s.route_localnet = %s, want %s", link, got, v)
				}
			}

			gw, _ := netip.AddrFromSlice(loRes.IPs[0].Gateway)
			gw = gw.Unmap()
			probes := []struct {
				what     string
				from     *netnstest.NS
				setup    func()
				src, dst netip.AddrPort
			}{
				{what: "a neighbour on the external link", from: neigh,
					setup: func() { sendLoopbackVia(t, neigh, netip.MustParseAddr("192.168.50.1"), "ext0p") }},
				{what: "a neighbour, with route_localnet=1 on the external link by someone else", from: neigh,
					setup: func() { n.ns.Exec(t, "sysctl", "-qw", "net.ipv4.conf.ext0.route_localnet=1") }},
				{what: "a pod spoofing source 127.0.0.2", from: loPod,
					setup: func() { loPod.Exec(t, "sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1") },
					src:   netip.MustParseAddrPort("127.0.0.2:0"), dst: netip.AddrPortFrom(nodeV4, wildcardSvc)},
				{what: "the pod whose hostPort is on 127.0.0.1", from: loPod,
					setup: func() { sendLoopbackVia(t, loPod, gw, "eth0") }},
				{what: "a pod whose hostPort is on the node's address", from: nodePod,
					setup: func() { sendLoopbackVia(t, nodePod, gw, "eth0") }},
			}
			for _, p := range probes {
				p.setup()
				if !p.dst.IsValid() {
					p.dst = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localSvc)
				}
				// The same sender reaches the node's ordinary address: the
				// path works, so silence below is the guard's doing.
				if got := n.udpReceives(t, p.from, netip.AddrPort{}, netip.AddrPortFrom(nodeV4, wildcardSvc)); !got {
					t.Fatalf("%s cannot reach %s:%d at all: the probe proves nothing", p.what, nodeV4, wildcardSvc)
				}
				before := n.guardDrops(t)
				if n.udpReceives(t, p.from, p.src, p.dst) {
					t.Errorf("%s reached the node's %s", p.what, p.dst)
				}
				if after := n.guardDrops(t); after <= before {
					t.Errorf("%s: the guard counted no drop (%d -> %d): the packet never reached it", p.what, before, after)
				}
			}

			// CHECK notices route_localnet turned off under the pod.
			n.ns.Exec(t, "sysctl", "-qw", "net.ipv4.conf."+loLink+".route_localnet=0")
			if _, e := n.run(check); e == nil || !strings.Contains(e.Error(), "route_localnet") {
				t.Errorf("CHECK with route_localnet=0 on %s: %v, want an error naming it", loLink, e)
			}
			n.ns.Exec(t, "sysctl", "-qw", "net.ipv4.conf."+loLink+".route_localnet=1")

			n.must(call{verb: "DEL", id: "on-lo", netns: loPod.Path(), ifname: "eth0", conf: loConf})
			if _, err := n.dial("tcp", lo); err == nil {
				t.Errorf("%s still answers after DEL", lo)
			}
			if name, _ := n.ask(t, "tcp", node); name != "on-node" {
				t.Errorf("%s after the other pod's DEL: answered by %q", node, name)
			}
			for _, r := range n.hostPortRules() {
				if strings.HasPrefix(r, "kindnet/on-lo/") {
					t.Errorf("rule left after DEL: %s", r)
				}
			}
			if mode == ModeBridge {
				// Left on the bridge by design; the guard still holds.
				if got := readSysctl(t, n.ns, "ipv4/conf/"+DefaultBridge+"/route_localnet"); got != "1" {
					t.Errorf("route_localnet on %s after DEL = %s; docs/security.md says it stays", DefaultBridge, got)
				}
				if n.udpReceives(t, nodePod, netip.AddrPort{}, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), localSvc)) {
					t.Error("after DEL of the loopback pod, a pod on the bridge reached the node's 127.0.0.1")
				}
			}
			n.must(call{verb: "DEL", id: "on-node", netns: nodePod.Path(), ifname: "eth0", conf: nodeConf})
			n.assertNothingLeft("after both DELs")
		})
	}
}

// neighbour is a host on the node's external link ext0 (192.168.50.0/24).
func (n *node) neighbour(t *testing.T) *netnstest.NS {
	t.Helper()
	nb := netnstest.New(t)
	n.ns.AddVeth(t, "ext0")
	n.ns.Exec(t, "ip", "link", "set", "ext0p", "netns", nb.Name)
	n.ns.Exec(t, "ip", "addr", "add", "192.168.50.1/24", "dev", "ext0")
	nb.Exec(t, "ip", "link", "set", "ext0p", "up")
	nb.Exec(t, "ip", "addr", "add", "192.168.50.2/24", "dev", "ext0p")
	nb.Exec(t, "ip", "route", "add", nodeV4.String()+"/32", "via", "192.168.50.1")
	return nb
}

// sendLoopbackVia makes ns send what it addresses to 127.0.0.0/8 to gw
// instead of its own lo, as a hostile neighbour or pod can: the local
// routes go, a route via gw comes. (Binding to 127.0.0.2 is no longer
// possible afterwards.)
func sendLoopbackVia(t *testing.T, ns *netnstest.NS, gw netip.Addr, dev string) {
	t.Helper()
	ns.Exec(t, "ip", "route", "del", "local", "127.0.0.1", "dev", "lo", "table", "local")
	ns.Exec(t, "ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local")
	ns.Exec(t, "ip", "route", "add", "127.0.0.0/8", "via", gw.String(), "dev", dev, "onlink")
}

// serve answers on podPort, TCP and UDP, with the pod's name and the
// source address it saw.
func serve(t *testing.T, pod *netnstest.NS, name string) {
	t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := pod.Do(func() (err error) {
		if ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", podPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", fmt.Sprintf(":%d", podPort))
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", pod.Name, err)
	}
	t.Cleanup(func() { ln.Close(); pc.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", name, ap.Addr().Unmap())
			c.Close()
		}
	}()
	go func() {
		buf := make([]byte, 64)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			ap, _ := netip.ParseAddrPort(from.String())
			_, _ = pc.WriteTo([]byte(fmt.Sprintf("%s %s\n", name, ap.Addr().Unmap())), from)
		}
	}()
}

// dial connects from the node's namespace (UDP: sends one datagram) and
// returns the answer.
func (n *node) dial(proto string, dst netip.AddrPort) (string, error) {
	var answer string
	err := n.ns.Do(func() error {
		c, err := net.DialTimeout(proto, dst.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if proto == "udp" {
			if _, err := c.Write([]byte("who")); err != nil {
				return err
			}
		}
		buf := make([]byte, 64)
		k, err := c.Read(buf)
		answer = strings.TrimSpace(string(buf[:k]))
		return err
	})
	return answer, err
}

// ask returns who answered at dst from the node and which source it saw.
func (n *node) ask(t *testing.T, proto string, dst netip.AddrPort) (string, netip.Addr) {
	t.Helper()
	answer, err := n.dial(proto, dst)
	if err != nil {
		t.Errorf("%s %s from the node: %v", proto, dst, err)
		return "", netip.Addr{}
	}
	name, src, _ := strings.Cut(answer, " ")
	seen, _ := netip.ParseAddr(src)
	return name, seen
}

// udpReceives listens on dst in the node's namespace and says whether a
// datagram from ns (bound to src when valid) arrives within a second.
func (n *node) udpReceives(t *testing.T, ns *netnstest.NS, src, dst netip.AddrPort) bool {
	t.Helper()
	var pc net.PacketConn
	if err := n.ns.Do(func() (err error) { pc, err = net.ListenPacket("udp4", dst.String()); return err }); err != nil {
		t.Fatalf("listen on %s in the node: %v", dst, err)
	}
	defer pc.Close()
	err := ns.Do(func() error {
		var laddr *net.UDPAddr
		if src.IsValid() {
			laddr = net.UDPAddrFromAddrPort(src)
		}
		c, err := net.DialUDP("udp4", laddr, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("probe"))
		return err
	})
	if err != nil {
		t.Fatalf("send from %s to %s: %v", ns.Name, dst, err)
	}
	_ = pc.SetReadDeadline(time.Now().Add(time.Second))
	_, _, err = pc.ReadFrom(make([]byte, 16))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if err != nil {
		t.Fatalf("read on %s in the node: %v", dst, err)
	}
	return true
}

// guardDrops sums the packet counters of the guard's rules.
func (n *node) guardDrops(t *testing.T) uint64 {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(n.ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Name: hostport.DefaultTable, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: "localnet_guard", Table: tbl})
	if err != nil {
		t.Fatalf("guard chain: %v", err)
	}
	var sum uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				sum += ctr.Packets
			}
		}
	}
	return sum
}

// An ADD whose only refused mapping is on ::1 leaves no route_localnet
// and no rule behind, and says why.
func TestIPv6LoopbackHostIPIsRefusedOnAddOnly(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	pod := netnstest.New(t)
	conf := n.conf("1.1.0", ModePTP, map[string]any{"runtimeConfig": map[string]any{"portMappings": []map[string]any{
		{"hostPort": 80, "containerPort": 80, "hostIP": "127.0.0.1"},
		{"hostPort": 80, "containerPort": 80, "hostIP": "::1"}}}})
	_, e := n.run(call{verb: "ADD", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
	if e == nil || !strings.Contains(e.Error(), "::1") || !strings.Contains(e.Error(), "IPv6 has no route_localnet") {
		t.Fatalf("ADD with hostIP ::1: %v, want a refusal saying why", e)
	}
	n.assertNothingLeft("after the refused ADD")
	if got := readSysctl(t, n.ns, "ipv4/conf/all/route_localnet"); got != "0" {
		t.Errorf("net.ipv4.conf.all.route_localnet = %s after a refused ADD", got)
	}
	n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
	n.assertNothingLeft("after DEL")
}
