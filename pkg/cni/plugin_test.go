package cni

import (
	"encoding/json"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"go4.org/netipx"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

func TestAddCheckDelDualStackEveryVersionBothModes(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []Mode{ModePTP, ModeBridge} {
		for _, v := range Supported {
			t.Run(string(mode)+"/"+v, func(t *testing.T) {
				n := newNode(t)
				pod := netnstest.New(t)
				conf := n.conf(v, mode, nil)
				res := n.add(v, conf, "c1", pod)

				ips := checkPodWiring(t, mode, pod, res)
				checkHostWiring(t, mode, n, res, ips)
				ping(t, pod, nodeV4)
				ping(t, pod, nodeV6)
				ping(t, n.ns, ips[0])
				ping(t, n.ns, ips[1])

				check := call{verb: "CHECK", id: "c1", netns: pod.Path(), ifname: "eth0", conf: withPrev(t, conf, v, res)}
				if _, e := n.run(check); v < "0.4.0" {
					if e == nil || e.Code != types.ErrIncompatibleCNIVersion {
						t.Errorf("CHECK with cniVersion %s: %v, want error 1 (CHECK came with 0.4.0)", v, e)
					}
				} else if e != nil {
					t.Errorf("CHECK right after ADD: %d %s", e.Code, e.Error())
				}

				n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: withPrev(t, conf, v, res)})
				if _, err := pod.NL.LinkByName("eth0"); err == nil {
					t.Error("eth0 still in the pod after DEL")
				}
				n.assertNothingLeft("after DEL")
			})
		}
	}
}

// checkPodWiring looks inside the pod: eth0 up with the MTU, one address
// of each family as the result says, default routes via the gateways, DAD
// off, and in ptp mode permanent neighbour entries for the gateways.
func checkPodWiring(t *testing.T, mode Mode, pod *netnstest.NS, res *types100.Result) []netip.Addr {
	t.Helper()
	l, err := pod.NL.LinkByName("eth0")
	if err != nil {
		t.Fatalf("no eth0 in the pod: %v", err)
	}
	if l.Attrs().MTU != 1400 || l.Attrs().Flags&net.FlagUp == 0 || l.Type() != "veth" {
		t.Errorf("pod eth0: type %s, MTU %d, flags %v", l.Type(), l.Attrs().MTU, l.Attrs().Flags)
	}
	var ips []netip.Addr
	var want []netip.Prefix
	for _, ipc := range res.IPs {
		p, _ := netipx.FromStdIPNet(&ipc.Address)
		want = append(want, p)
		ips = append(ips, p.Addr())
		gw, _ := netip.AddrFromSlice(ipc.Gateway)
		wantBits, wantGW := p.Addr().BitLen(), gatewayV4
		if p.Addr().Is6() {
			wantGW = gatewayV6
		}
		if mode == ModeBridge {
			r := netip.MustParsePrefix(range4)
			if p.Addr().Is6() {
				r = netip.MustParsePrefix(range6)
			}
			wantBits, wantGW = r.Bits(), r.Addr().Next()
		}
		if p.Bits() != wantBits || gw.Unmap() != wantGW {
			t.Errorf("result address %s gateway %s, want /%d via %s", p, gw, wantBits, wantGW)
		}
		if res.Interfaces[*ipc.Interface].Name != "eth0" || res.Interfaces[*ipc.Interface].Sandbox != pod.Path() {
			t.Errorf("result address %s is on interface %+v", p, res.Interfaces[*ipc.Interface])
		}
	}
	if len(ips) != 2 || !ips[0].Is4() || !ips[1].Is6() ||
		!netip.MustParsePrefix(range4).Contains(ips[0]) || !netip.MustParsePrefix(range6).Contains(ips[1]) {
		t.Fatalf("result addresses %v, want one from %s and one from %s", ips, range4, range6)
	}
	have := addrsOf(t, pod.NL, "eth0")
	slices.SortFunc(have, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	if !slices.Equal(have, want) {
		t.Errorf("eth0 holds %v, the result says %v", have, want)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, _ := pod.NL.RouteList(l, fam)
		if !slices.ContainsFunc(routes, func(r netlink.Route) bool { return isDefault(r.Dst) && r.Gw != nil }) {
			t.Errorf("no default route of family %d in the pod: %v", fam, routes)
		}
	}
	if got := readSysctl(t, pod, "ipv6/conf/eth0/accept_dad"); got != "0" {
		t.Errorf("accept_dad on the pod's eth0 = %s, want 0", got)
	}
	if mode == ModePTP {
		neighs, _ := pod.NL.NeighList(l.Attrs().Index, netlink.FAMILY_ALL)
		for _, gw := range []netip.Addr{gatewayV4, gatewayV6} {
			if !slices.ContainsFunc(neighs, func(n netlink.Neigh) bool {
				return n.IP.Equal(gw.AsSlice()) && n.State == netlink.NUD_PERMANENT
			}) {
				t.Errorf("no permanent neighbour entry for %s in the pod: %v", gw, neighs)
			}
		}
	}
	return ips
}

// checkHostWiring looks at the node: the host end (named in the result,
// up, MTU, DAD off), host routes (ptp) or the bridge port (bridge), and
// the IPAM record.
func checkHostWiring(t *testing.T, mode Mode, n *node, res *types100.Result, ips []netip.Addr) {
	t.Helper()
	hostIf := HostIfName("kindnet/c1/eth0")
	if !slices.ContainsFunc(res.Interfaces, func(i *types100.Interface) bool { return i.Name == hostIf && i.Sandbox == "" }) {
		t.Errorf("result interfaces %v lack the host end %s", res.Interfaces, hostIf)
	}
	host, err := n.ns.NL.LinkByName(hostIf)
	if err != nil {
		t.Fatalf("host end %s: %v", hostIf, err)
	}
	if host.Attrs().MTU != 1400 || host.Attrs().Flags&net.FlagUp == 0 || host.Attrs().Alias != "kindnet:kindnet/c1/eth0" {
		t.Errorf("host end: MTU %d, flags %v, alias %q", host.Attrs().MTU, host.Attrs().Flags, host.Attrs().Alias)
	}
	if got := readSysctl(t, n.ns, "ipv6/conf/"+hostIf+"/accept_dad"); got != "0" {
		t.Errorf("accept_dad on %s = %s, want 0", hostIf, got)
	}
	if mode == ModePTP {
		if got := readSysctl(t, n.ns, "ipv4/conf/"+hostIf+"/proxy_arp"); got != "1" {
			t.Errorf("proxy_arp on %s = %s, want 1", hostIf, got)
		}
		for _, ip := range ips {
			routes, _ := n.ns.NL.RouteList(host, family(ip))
			if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
				p, ok := netipx.FromStdIPNet(orZero(r.Dst))
				return ok && p == netip.PrefixFrom(ip, ip.BitLen())
			}) {
				t.Errorf("no host route to %s on %s: %v", ip, hostIf, routes)
			}
		}
	} else {
		br, err := n.ns.NL.LinkByName(DefaultBridge)
		if err != nil {
			t.Fatalf("bridge: %v", err)
		}
		// The mark `kindnet cleanup` deletes it by (issue 14 item 8).
		if !OwnsBridge(br) {
			t.Errorf("bridge %s made by the plugin has alias %q, want %q", DefaultBridge, br.Attrs().Alias, BridgeAlias)
		}
		if host.Attrs().MasterIndex != br.Attrs().Index {
			t.Errorf("%s is not a port of %s", hostIf, DefaultBridge)
		}
		if hp := strings.TrimSpace(n.ns.Exec(t, "cat", "/sys/class/net/"+hostIf+"/brport/hairpin_mode")); hp != "1" {
			t.Errorf("hairpin_mode on %s = %s, want 1", hostIf, hp)
		}
		have := addrsOf(t, n.ns.NL, DefaultBridge)
		for _, r := range []string{range4, range6} {
			pr := netip.MustParsePrefix(r)
			if gw := netip.PrefixFrom(pr.Addr().Next(), pr.Bits()); !slices.Contains(have, gw) {
				t.Errorf("bridge lacks gateway %s: %v", gw, have)
			}
		}
	}
	all := n.allocations()
	if len(all) != 1 || all[0].ContainerID != "c1" || !slices.Equal(all[0].IPs, ips) {
		t.Errorf("IPAM store %+v, want c1 with %v", all, ips)
	}
}

func TestDelTwiceSucceeds(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	pod := netnstest.New(t)
	conf := n.conf("1.0.0", ModePTP, nil)
	n.add("1.0.0", conf, "c1", pod)
	for range 2 {
		n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
	}
	n.assertNothingLeft("after two DELs")
	// DEL of an attachment the plugin never saw, on a node where the IPAM
	// directory does not even exist yet.
	fresh := newNode(t)
	fresh.must(call{verb: "DEL", id: "never", ifname: "eth0", conf: fresh.conf("1.1.0", ModeBridge, nil)})
}

// A runtime repeats the ADD's runtime config on every DEL, also when ADD
// refused it (containerd logged 24 failed DELs per conformance run when
// ADD refused hostIP 127.0.0.1): DEL must not validate it. And whatever
// the runtime config says, DEL removes what an earlier ADD made.
func TestDelSucceedsWhateverTheRuntimeConfigSays(t *testing.T) {
	netnstest.RequireRoot(t)
	ports := func(pms ...map[string]any) map[string]any {
		return map[string]any{"runtimeConfig": map[string]any{"portMappings": pms}}
	}
	refused := []struct {
		name    string
		pm      map[string]any
		mention string
	}{
		{"IPv6 loopback hostIP", map[string]any{"hostPort": 8080, "containerPort": 80, "hostIP": "::1"}, "::1"},
		{"hostIP that is no address", map[string]any{"hostPort": 8080, "containerPort": 80, "hostIP": "not-an-ip"}, "hostIP"},
		{"hostPort 0", map[string]any{"hostPort": 0, "containerPort": 80}, "hostPort"},
	}
	for _, mode := range []Mode{ModePTP, ModeBridge} {
		for _, c := range refused {
			t.Run(string(mode)+"/ADD refused: "+c.name, func(t *testing.T) {
				n := newNode(t)
				pod := netnstest.New(t)
				conf := n.conf("1.0.0", mode, ports(c.pm))
				_, e := n.run(call{verb: "ADD", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
				if e == nil || e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Error(), c.mention) {
					t.Fatalf("ADD: %v, want error 7 naming %q", e, c.mention)
				}
				for range 2 { // the runtime retries; every DEL must succeed
					n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
				}
				n.assertNothingLeft("after DELs of a refused ADD")
			})
		}
		malformed := []struct {
			name string
			rc   any
		}{
			{"hostPort of the wrong type", map[string]any{"portMappings": []map[string]any{{"hostPort": "eighty", "containerPort": 80}}}},
			{"refused hostIP", map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "hostIP": "::1"}}}},
			{"runtimeConfig not an object", []int{1}},
			{"no runtimeConfig", nil},
		}
		for _, c := range malformed {
			t.Run(string(mode)+"/DEL after a good ADD, "+c.name, func(t *testing.T) {
				n := newNode(t)
				pod := netnstest.New(t)
				n.add("1.0.0", n.conf("1.0.0", mode, ports(map[string]any{"hostPort": 8080, "containerPort": 80})), "c1", pod)
				if len(n.hostPortRules()) == 0 || len(n.hostLinks()) != 1 || len(n.allocations()) != 1 {
					t.Fatal("ADD left no rules, veth or allocation to remove")
				}
				extra := map[string]any{}
				if c.rc != nil {
					extra["runtimeConfig"] = c.rc
				}
				n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: n.conf("1.0.0", mode, extra)})
				n.assertNothingLeft("after DEL")
				if _, err := pod.NL.LinkByName("eth0"); err == nil {
					t.Error("eth0 still in the pod after DEL")
				}
			})
		}
	}
}

// CHECK reads the port mappings as ADD does: a malformed one is error 7
// (or 6) naming it, not a claim that the attachment is broken.
func TestCheckRefusesMalformedPortMappingsWithTheirCode(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	pod := netnstest.New(t)
	good := n.conf("1.1.0", ModePTP, map[string]any{"runtimeConfig": map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}})
	res := n.add("1.1.0", good, "c1", pod)
	bad := n.conf("1.1.0", ModePTP, map[string]any{"runtimeConfig": map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 0}}}})
	_, e := n.run(call{verb: "CHECK", id: "c1", netns: pod.Path(), ifname: "eth0", conf: withPrev(t, bad, "1.1.0", res)})
	if e == nil || e.Code != types.ErrInvalidNetworkConfig || !strings.Contains(e.Error(), "containerPort") {
		t.Errorf("CHECK with containerPort 0: %v, want error 7 naming containerPort", e)
	}
	n.must(call{verb: "CHECK", id: "c1", netns: pod.Path(), ifname: "eth0", conf: withPrev(t, good, "1.1.0", res)})
	n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: bad})
	n.assertNothingLeft("after DEL")
}

func TestDelAfterPodNetnsIsGoneReleasesEverything(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []Mode{ModePTP, ModeBridge} {
		t.Run(string(mode), func(t *testing.T) {
			n := newNode(t)
			pod := netnstest.New(t)
			conf := n.conf("1.0.0", mode, map[string]any{"runtimeConfig": map[string]any{
				"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}})
			n.add("1.0.0", conf, "c1", pod)
			path := pod.Path()
			pod.Close()
			// Without runtimeConfig: the record says there were hostPorts.
			n.must(call{verb: "DEL", id: "c1", netns: path, ifname: "eth0", conf: n.conf("1.0.0", mode, nil)})
			n.assertNothingLeft("after DEL of a pod whose netns is gone")
		})
	}
}

func TestCheckFailsAfterLinkRemovedByHand(t *testing.T) {
	netnstest.RequireRoot(t)
	cases := []struct {
		name    string
		break_  func(t *testing.T, n *node, pod *netnstest.NS)
		mention string
	}{
		{"pod address", func(t *testing.T, n *node, pod *netnstest.NS) {
			pod.Exec(t, "ip", "-6", "addr", "flush", "dev", "eth0", "scope", "global")
		}, "lacks address"},
		{"pod default route", func(t *testing.T, n *node, pod *netnstest.NS) {
			pod.Exec(t, "ip", "route", "del", "default")
		}, "no default route via 169.254.1.1"},
		{"host route", func(t *testing.T, n *node, pod *netnstest.NS) {
			n.ns.Exec(t, "ip", "route", "del", "10.244.1.1/32")
		}, "no host route 10.244.1.1/32"},
		{"veth pair", func(t *testing.T, n *node, pod *netnstest.NS) {
			n.ns.Exec(t, "ip", "link", "del", HostIfName("kindnet/c1/eth0"))
		}, "host end"},
		{"hostPort rule", func(t *testing.T, n *node, pod *netnstest.NS) {
			n.ns.Exec(t, "nft", "flush", "chain", "inet", "kindnet_hostport", "hostports")
		}, "hostPort rules"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := newNode(t)
			pod := netnstest.New(t)
			conf := n.conf("1.1.0", ModePTP, map[string]any{"runtimeConfig": map[string]any{
				"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}})
			res := n.add("1.1.0", conf, "c1", pod)
			check := call{verb: "CHECK", id: "c1", netns: pod.Path(), ifname: "eth0", conf: withPrev(t, conf, "1.1.0", res)}
			n.must(check)
			c.break_(t, n, pod)
			_, e := n.run(check)
			if e == nil || e.Code != ErrCheckFailed || !strings.Contains(e.Error(), c.mention) {
				t.Fatalf("CHECK after breaking the %s: %v, want error %d mentioning %q", c.name, e, ErrCheckFailed, c.mention)
			}
			n.must(call{verb: "DEL", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
			n.assertNothingLeft("after DEL")
		})
	}
}

func TestBadInputGetsTheSpecsErrorCodeAndChangesNothing(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	pod := netnstest.New(t)
	taken := netnstest.New(t)
	taken.AddVeth(t, "eth0")
	good := n.conf("1.0.0", ModePTP, nil)
	cases := []struct {
		name    string
		c       call
		code    uint
		mention string
	}{
		{"malformed JSON", call{"ADD", "c1", pod.Path(), "eth0", []byte(`{"cniVersion":"1.0.0","name":"kindnet",`)}, types.ErrDecodingFailure, "unmarshal"},
		{"unknown mode", call{"ADD", "c1", pod.Path(), "eth0", n.conf("1.0.0", "macvlan", nil)}, types.ErrInvalidNetworkConfig, `mode "macvlan"`},
		{"ranges that do not parse", call{"ADD", "c1", pod.Path(), "eth0", n.conf("1.0.0", ModePTP, map[string]any{"ranges": []string{"10.244.1.0/33"}})}, types.ErrInvalidNetworkConfig, "10.244.1.0/33"},
		{"ifname too long", call{"ADD", "c1", pod.Path(), "eth0-much-too-long", good}, types.ErrInvalidEnvironmentVariables, `CNI_IFNAME="eth0-much-too-long" is refused`},
		{"netns does not exist", call{"ADD", "c1", "/run/netns/kindnet-test-no-such-ns", "eth0", good}, types.ErrInvalidEnvironmentVariables, "CNI_NETNS=/run/netns/kindnet-test-no-such-ns: no such network namespace"},
		{"netns is not a netns", call{"ADD", "c1", "/proc/self/status", "eth0", good}, types.ErrInvalidEnvironmentVariables, "not a network namespace"},
		{"netns is the plugin's own", call{"ADD", "c1", "/proc/self/ns/net", "eth0", good}, types.ErrInvalidEnvironmentVariables, "CNI_NETNS=/proc/self/ns/net: this is the plugin's own network namespace"},
		{"interface exists", call{"ADD", "c1", taken.Path(), "eth0", good}, types.ErrInvalidEnvironmentVariables, "CNI_IFNAME=eth0: an interface of that name already exists"},
		{"unsupported version", call{"ADD", "c1", pod.Path(), "eth0", n.conf("0.2.0", ModePTP, nil)}, types.ErrIncompatibleCNIVersion, "incompatible"},
		{"no container ID", call{"ADD", "", pod.Path(), "eth0", good}, types.ErrInvalidEnvironmentVariables, "CNI_CONTAINERID"},
		{"GC without a list", call{"GC", "", "", "", n.conf("1.1.0", ModePTP, nil)}, types.ErrInvalidNetworkConfig, "valid-attachments"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, e := n.run(c.c)
			if e == nil {
				t.Fatal("accepted")
			}
			if e.Code != c.code || !strings.Contains(e.Error(), c.mention) {
				t.Errorf("error %d %q, want %d mentioning %q", e.Code, e.Error(), c.code, c.mention)
			}
			n.assertNothingLeft("after a refused " + c.c.verb)
		})
	}
	if _, err := taken.NL.LinkByName("eth0p"); err != nil {
		t.Error("the refused ADD touched the existing eth0 pair")
	}
}

func TestFailedAddRollsBackEverything(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []Mode{ModePTP, ModeBridge} {
		t.Run(string(mode), func(t *testing.T) {
			n := newNode(t)
			// A pod that already has a default route: the ADD fails at its
			// last pod step, after addresses, links and hostPort intents.
			pod := netnstest.New(t)
			pod.AddVeth(t, "other")
			pod.Exec(t, "ip", "addr", "add", "192.0.2.2/24", "dev", "other")
			pod.Exec(t, "ip", "route", "add", "default", "via", "192.0.2.1")
			conf := n.conf("1.0.0", mode, map[string]any{"runtimeConfig": map[string]any{
				"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}})
			_, e := n.run(call{verb: "ADD", id: "c1", netns: pod.Path(), ifname: "eth0", conf: conf})
			if e == nil || !strings.Contains(e.Error(), "already has a default route") {
				t.Fatalf("ADD into a pod with a default route: %v", e)
			}
			n.assertNothingLeft("after a failed ADD")
			if _, err := pod.NL.LinkByName("eth0"); err == nil {
				t.Error("eth0 left in the pod")
			}
			// The pod's own route is untouched.
			pod.Exec(t, "ip", "route", "show", "default", "via", "192.0.2.1")
		})
	}
}

func TestVersionReportsEverySupportedVersion(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	out := n.must(call{verb: "VERSION", conf: []byte(`{"cniVersion":"1.1.0"}`)})
	var v struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &v); err != nil || !slices.Equal(v.Supported, Supported) {
		t.Fatalf("VERSION printed %s", out)
	}
}

func TestStatusFailsWith50WhenItCannotAllocate(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	status := func(conf []byte) *types.Error {
		_, e := n.run(call{verb: "STATUS", conf: conf})
		return e
	}
	small := n.conf("1.1.0", ModePTP, map[string]any{"ranges": []string{"10.244.9.0/30"}})
	if e := status(small); e != nil {
		t.Fatalf("STATUS of a fresh node: %v", e)
	}
	for i := range 2 {
		n.add("1.1.0", small, id("full", i), netnstest.New(t))
	}
	if e := status(small); e == nil || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Error(), "all 2 usable addresses are allocated") {
		t.Errorf("STATUS with the range full: %v, want 50", e)
	}
	if e := status(n.conf("1.1.0", ModePTP, map[string]any{"ranges": []string{}})); e == nil || e.Code != types.ErrPluginNotAvailable {
		t.Errorf("STATUS without ranges: %v, want 50", e)
	}
	blocked := n.conf("1.1.0", ModePTP, map[string]any{"ipamDir": "/proc/version"})
	if e := status(blocked); e == nil || e.Code != types.ErrPluginNotAvailable || !strings.Contains(e.Error(), "/proc/version") {
		t.Errorf("STATUS with an unusable store: %v, want 50 naming it", e)
	}
	if e := status(n.conf("1.0.0", ModePTP, nil)); e == nil || e.Code != types.ErrIncompatibleCNIVersion {
		t.Errorf("STATUS with cniVersion 1.0.0: %v, want 1 (STATUS came with 1.1.0)", e)
	}
}

func TestGCReleasesEveryAttachmentNotValid(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	ports := map[string]any{"runtimeConfig": map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}}
	pods := map[string]*netnstest.NS{}
	for _, c := range []string{"keep", "gone1", "gone2"} {
		pods[c] = netnstest.New(t)
		n.add("1.1.0", n.conf("1.1.0", ModePTP, ports), c, pods[c])
	}
	// gone2's netns leaked: its veth still exists and GC removes it too.
	pods["gone1"].Close()
	gc := n.conf("1.1.0", ModePTP, map[string]any{
		"cni.dev/valid-attachments": []map[string]string{{"containerID": "keep", "ifname": "eth0"}, {"containerID": "other", "ifname": "eth0"}}})
	n.must(call{verb: "GC", conf: gc})
	all := n.allocations()
	if len(all) != 1 || all[0].ContainerID != "keep" {
		t.Errorf("after GC: %+v, want only keep", all)
	}
	if l := n.hostLinks(); !slices.Equal(l, []string{HostIfName("kindnet/keep/eth0")}) {
		t.Errorf("host links after GC: %v", l)
	}
	for _, r := range n.hostPortRules() {
		if !strings.HasPrefix(r, "kindnet/keep/eth0 ") {
			t.Errorf("hostPort rule of a stale attachment survived GC: %s", r)
		}
	}
	if len(n.hostPortRules()) == 0 {
		t.Error("GC removed the valid attachment's hostPort rules")
	}
	// GC of another network leaves this one alone.
	other := n.conf("1.1.0", ModePTP, map[string]any{"name": "other", "cni.dev/valid-attachments": []any{}})
	n.must(call{verb: "GC", conf: other})
	if len(n.allocations()) != 1 || len(n.hostLinks()) != 1 {
		t.Error("GC of network \"other\" touched network kindnet")
	}
	n.must(call{verb: "GC", conf: n.conf("1.1.0", ModePTP, map[string]any{"cni.dev/valid-attachments": []any{}})})
	n.assertNothingLeft("after GC with no valid attachment")
}
