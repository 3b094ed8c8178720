package routes

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// tableOf builds the in-memory view of a routing table the way readTable does.
func tableOf(rs ...netlink.Route) *table {
	t := &table{own: map[netip.Prefix][]netlink.Route{}, foreign: map[netip.Prefix]netlink.Route{}}
	t.lpm = [2]map[int]map[netip.Prefix]netlink.Route{{}, {}}
	for _, rt := range rs {
		dst, _ := routeDst(rt)
		if rt.Protocol == Protocol {
			t.own[dst] = append(t.own[dst], rt)
			continue
		}
		t.foreign[dst] = rt
		fam := familyIndex(dst.Addr())
		if t.lpm[fam][dst.Bits()] == nil {
			t.lpm[fam][dst.Bits()] = map[netip.Prefix]netlink.Route{}
		}
		t.lpm[fam][dst.Bits()][dst] = rt
	}
	return t
}

func rt(dst, gw string, link int, typ int) netlink.Route {
	_, n, _ := net.ParseCIDR(dst)
	r := netlink.Route{Dst: n, LinkIndex: link, Type: typ, Protocol: unix.RTPROT_KERNEL}
	if gw != "" {
		r.Gw = net.ParseIP(gw)
	}
	return r
}

func TestOnLinkUsesTheMostSpecificRoute(t *testing.T) {
	tb := tableOf(
		rt("0.0.0.0/0", "192.168.1.1", 2, unix.RTN_UNICAST),
		rt("192.168.1.0/24", "", 2, unix.RTN_UNICAST),
		rt("192.168.1.128/25", "192.168.1.1", 2, unix.RTN_UNICAST), // more specific, via a gateway
		rt("10.0.0.0/8", "", 3, unix.RTN_UNREACHABLE),
		rt("fd00:1::/64", "", 4, unix.RTN_UNICAST),
	)
	cases := []struct {
		addr string
		link int
		why  string
	}{
		{"192.168.1.20", 2, ""},
		{"192.168.1.200", 0, "via a gateway"},
		{"8.8.8.8", 0, "via a gateway"},
		{"10.1.2.3", 0, "unreachable"},
		{"fd00:1::7", 4, ""},
		{"fd00:2::7", 0, "has no route"},
	}
	for _, c := range cases {
		link, why := tb.onLink(netip.MustParseAddr(c.addr))
		if link != c.link || (c.why == "") != (why == "") || !strings.Contains(why, c.why) {
			t.Errorf("%s: link %d why %q, want link %d why ~%q", c.addr, link, why, c.link, c.why)
		}
	}
}
