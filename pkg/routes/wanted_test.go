package routes

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

// nextDeleted waits for the next kindnet route deletion event.
func nextDeleted(t *testing.T, ch <-chan netlink.RouteUpdate) Deleted {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case u := <-ch:
			if u.Type != unix.RTM_DELROUTE {
				continue
			}
			d, ok := DeletedOf(u.Route)
			if !ok {
				continue
			}
			return d
		case <-timeout:
			t.Fatal("no route deletion event within 5 s")
		}
	}
}

// The netlink watch sees the reconcile's own deletions (a removed peer, the
// duplicate a replace leaves) as well as someone else's `ip route del`:
// only the latter may be Wanted, in both families.
func TestWantedIsTrueOnlyForDeletionsOfRoutesTheReconcileKeeps(t *testing.T) {
	ns := nodeNS(t)
	link, _ := ns.NL.LinkByName("eth0")
	// A stale kindnet duplicate to n2's podCIDR with another metric: the
	// reconcile replaces and then deletes it.
	dup := &netlink.Route{Dst: mustNet("10.244.2.0/24"), Gw: net.ParseIP("192.168.50.2"), LinkIndex: link.Attrs().Index,
		Protocol: Protocol, Priority: 5}
	if err := ns.NL.RouteAdd(dup); err != nil {
		t.Fatal(err)
	}
	ch := make(chan netlink.RouteUpdate, 256)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	if err := netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: &ns.Handle}); err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Handle: ns.NL}
	ctx := context.Background()
	n2 := peer("n2", []string{"192.168.50.2", "fd00:50::2"}, []string{"10.244.2.0/24", "fd00:10:244:2::/64"})
	n3 := peer("n3", []string{"192.168.50.3", "fd00:50::3"}, []string{"10.244.3.0/24", "fd00:10:244:3::/64"})
	res, err := r.Reconcile(ctx, &model.Snapshot{Peers: []model.Peer{n2, n3}})
	if err != nil {
		t.Fatal(err)
	}
	if d := nextDeleted(t, ch); d.Dst.String() != "10.244.2.0/24" || d.Priority != 5 || res.Wanted(d) {
		t.Fatalf("the duplicate's deletion %+v: Wanted %v, want the metric-5 route and false", d, res.Wanted(d))
	}
	// n3 leaves: its two routes are the reconcile's own deletions.
	res, err = r.Reconcile(ctx, &model.Snapshot{Peers: []model.Peer{n2}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Removed != 2 {
		t.Fatalf("removed %d routes, want n3's 2: %v", res.Removed, res.Changes)
	}
	for range 2 {
		if d := nextDeleted(t, ch); res.Wanted(d) {
			t.Errorf("own deletion of %s taken as wanted", d.Dst)
		}
	}
	// Someone else deletes n2's routes: both are wanted, so both need repair.
	for _, cidr := range []string{"10.244.2.0/24", "fd00:10:244:2::/64"} {
		if _, err := ns.Run("ip", "route", "del", cidr); err != nil {
			t.Fatal(err)
		}
		if d := nextDeleted(t, ch); d.Dst.String() != cidr || !res.Wanted(d) {
			t.Errorf("external deletion %+v of %s: Wanted %v, want true", d, cidr, res.Wanted(d))
		}
	}
	if !res.WantsDst(netip.MustParsePrefix("10.244.2.0/24")) || res.WantsDst(netip.MustParsePrefix("10.244.3.0/24")) {
		t.Error("WantsDst: want n2's podCIDR and not the departed n3's")
	}
	if res.WantsDst(netip.MustParsePrefix("10.244.9.0/24")) {
		t.Error("WantsDst is true for a destination no peer claims")
	}
}
