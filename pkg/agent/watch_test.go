package agent

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
)

// Pods come and go all the time; the links and addresses they bring must
// not cost a reconcile each, while the node's own links and addresses must.
func TestPodHostEndsAndLinkLocalAddressesKickNoReconcile(t *testing.T) {
	veth := func(name string) netlink.LinkUpdate {
		return netlink.LinkUpdate{Link: &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}}}
	}
	for _, c := range []struct {
		what string
		u    netlink.LinkUpdate
		want string
	}{
		{"a pod's host end", veth("kn0123456789ab"), ""},
		{"a veth named like a host end but too long", veth("kn0123456789abc"), "link change"},
		{"a veth named kn but not hex", veth("kn0123456789zz"), "link change"},
		{"the node's veth uplink", veth("eth0"), "link change"},
		{"a device that is not a veth", netlink.LinkUpdate{Link: &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "kn0123456789ab"}}}, "link change"},
		{"the bridge of bridge mode", netlink.LinkUpdate{Link: &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "kindnet0"}}}, "link change"},
		{"an event without a link", netlink.LinkUpdate{}, "link change"},
	} {
		if got := linkKick(c.u); got != c.want {
			t.Errorf("%s: linkKick = %q, want %q", c.what, got, c.want)
		}
	}
	for _, c := range []struct {
		ip   string
		want string
	}{
		{"169.254.1.1", ""},
		{"fe80::1", ""},
		{"fe80::a8c1:abff:fe12:3456", ""},
		{"192.168.50.1", "address change"},
		{"fd00:50::1", "address change"},
		{"10.244.1.1", "address change"}, // bridge mode's gateway
	} {
		u := netlink.AddrUpdate{LinkAddress: net.IPNet{IP: net.ParseIP(c.ip)}}
		if got := addrKick(u); got != c.want {
			t.Errorf("address %s: addrKick = %q, want %q", c.ip, got, c.want)
		}
	}
}
