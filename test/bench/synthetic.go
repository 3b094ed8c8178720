package bench

import (
	"fmt"
	"net/netip"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// A synthetic cluster for the control-plane measures: the node under test
// ("self") and n peers, all dual-stack, every peer on-link on the node's
// one link. The node's link holds 172.16.0.0/12 and a /64, so up to a
// million peers fit; pod ranges are /24s in 10.0.0.0/8 and /64s in
// fd00:10::/48. Peer addresses have an alternative form (172.17.x.x) so a
// peer can change its address without colliding with another.
var (
	synthNet4      = netip.MustParsePrefix("172.16.0.0/12")
	synthNet6      = netip.MustParsePrefix("fd00:172:16::/64")
	synthCluster4  = netip.MustParsePrefix("10.0.0.0/8")
	synthCluster6  = netip.MustParsePrefix("fd00:10::/48")
	synthSelfName  = "self"
	synthMaxPeers  = 60000 // the /48 holds 65536 /64s; peers use index+1
	synthAltOffset = uint32(1 << 16)
)

// synthSelfAddrs are the addresses of the node under test.
func synthSelfAddrs() (netip.Addr, netip.Addr) { return synthAddr4(0, false), synthAddr6(0) }

// synthAddr4 is the IPv4 address of node idx (0 is self, peers 1..n);
// alt gives its alternative address.
func synthAddr4(idx int, alt bool) netip.Addr {
	v := uint32(172)<<24 | uint32(16)<<16 + uint32(idx) + 1
	if alt {
		v += synthAltOffset
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

func synthAddr6(idx int) netip.Addr {
	b := synthNet6.Addr().As16()
	v := uint32(idx) + 1
	b[12], b[13], b[14], b[15] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return netip.AddrFrom16(b)
}

// synthPodCIDRs are the pod ranges of node idx.
func synthPodCIDRs(idx int) (netip.Prefix, netip.Prefix) {
	v4 := netip.AddrFrom4([4]byte{10, byte(idx >> 8), byte(idx), 0})
	b := synthCluster6.Addr().As16()
	b[6], b[7] = byte(idx>>8), byte(idx)
	return netip.PrefixFrom(v4, 24), netip.PrefixFrom(netip.AddrFrom16(b), 64)
}

func synthNode(idx int, alt bool) model.Node {
	name := synthSelfName
	if idx > 0 {
		name = fmt.Sprintf("node-%05d", idx)
	}
	c4, c6 := synthPodCIDRs(idx)
	return model.Node{Name: name,
		Addresses: []string{synthAddr4(idx, alt).String(), synthAddr6(idx).String()},
		PodCIDRs:  []string{c4.String(), c6.String()}}
}

// synthView is self plus peers 1..n; peers listed in alt use their
// alternative IPv4 address.
func synthView(n int, alt map[int]bool) model.View {
	if n > synthMaxPeers {
		panic(fmt.Sprintf("synthetic cluster holds at most %d peers", synthMaxPeers))
	}
	v := model.View{Self: synthNode(0, false), Peers: make([]model.Node, 0, n)}
	for i := 1; i <= n; i++ {
		v.Peers = append(v.Peers, synthNode(i, alt[i]))
	}
	return v
}

// nodeObjects turns a view into nodes-file entries (self included).
func nodeObjects(v model.View) []lab.NodeObject {
	out := make([]lab.NodeObject, 0, len(v.Peers)+1)
	for _, n := range append([]model.Node{v.Self}, v.Peers...) {
		out = append(out, lab.NodeObject{Name: n.Name, Addresses: n.Addresses, PodCIDRs: n.PodCIDRs})
	}
	return out
}

// synthAgentConfig is the agent config of a synthetic node: every path in
// dir, the nodes file given (it may be absent on purpose), default
// masquerade, log level and resync interval unless resync is set.
func synthAgentConfig(dir, nodesFile, cniBinDir string, resync string) string {
	s := fmt.Sprintf(`# kindnet agent config of a benchmark node
nodeName: %s
nodesFile: %s
clusterCIDRs: [%s, %s]
cni:
  plugin: ptp
  confDir: %s/cni
  binDir: %s
stateDir: %s/state
runDir: %s/run
`, synthSelfName, nodesFile, synthCluster4, synthCluster6, dir, cniBinDir, dir, dir)
	if resync != "" {
		s += "resyncInterval: " + resync + "\n"
	}
	return s
}
