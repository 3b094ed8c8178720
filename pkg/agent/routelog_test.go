package agent

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
)

// routedNS is a namespace with "eth0" on 192.168.50.0/24 and fd00:50::/64.
func routedNS(t *testing.T) *netnstest.NS {
	ns := netnstest.New(t)
	ns.AddAddrs(t, ns.AddVeth(t, "eth0"), "192.168.50.1/24", "fd00:50::1/64")
	return ns
}

func testLogger(buf *bytes.Buffer, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: level,
		ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
			if at.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return at
		}}))
}

func lines(buf *bytes.Buffer) []string {
	if buf.Len() == 0 {
		return nil
	}
	return strings.Split(strings.TrimSpace(buf.String()), "\n")
}

// At info level a boot logs no line per route, only the summary with the
// counts; a route someone else removed is detected from its deletion event,
// repaired, and that repair is the one info line; the reconcile's own
// deletions (a peer leaving) kick nothing.
func TestRouteLogIsOneSummaryAtInfoAndRepairsAreKickedAndLogged(t *testing.T) {
	ns := routedNS(t)
	ctx := context.Background()
	var buf bytes.Buffer
	a := &Agent{log: testLogger(&buf, slog.LevelInfo)}
	rr := &routes.Reconciler{Handle: ns.NL}
	peer := func(name, v4, v6, c4, c6 string) model.Peer {
		return model.Peer{Name: name, Addrs: []netip.Addr{netip.MustParseAddr(v4), netip.MustParseAddr(v6)},
			PodCIDRs: []netip.Prefix{netip.MustParsePrefix(c4), netip.MustParsePrefix(c6)}}
	}
	n2 := peer("n2", "192.168.50.2", "fd00:50::2", "10.244.2.0/24", "fd00:10:244:2::/64")
	n3 := peer("n3", "192.168.50.3", "fd00:50::3", "10.244.3.0/24", "fd00:10:244:3::/64")
	both := &model.Snapshot{Peers: []model.Peer{n2, n3}}

	// Boot: four routes added, not one line for them at info.
	res, err := rr.Reconcile(ctx, both)
	if err != nil {
		t.Fatal(err)
	}
	a.logRouteChanges(ctx, res)
	if got := lines(&buf); got != nil {
		t.Fatalf("per-route lines at info level: %q", got)
	}
	a.logSummary(ctx, "bootstrap", time.Now(), summaryReports(res, true, true))
	got := lines(&buf)
	if len(got) != 1 || !strings.HasPrefix(got[0], "level=INFO msg=reconciled why=bootstrap ") ||
		!strings.Contains(got[0], " routes.added=4 routes.replaced=0 routes.removed=0 routes.unchanged=0 routes.installed=4 masquerade.changed=true cni.written=true") {
		t.Fatalf("summary lines %q, want one info line with the counts", got)
	}
	a.lastRoutes = res

	// Someone removes n2's IPv4 route; its deletion event kicks a reconcile,
	// which repairs it and says so at info.
	buf.Reset()
	if _, err := ns.Run("ip", "route", "del", "10.244.2.0/24"); err != nil {
		t.Fatal(err)
	}
	gone := routes.Deleted{Dst: netip.MustParsePrefix("10.244.2.0/24"), Table: 254, Priority: 0}
	if why := a.routesGone([]routes.Deleted{gone}); why != "kindnet route removed: 10.244.2.0/24" {
		t.Fatalf("deletion of a wanted route: why %q, want a kick naming it", why)
	}
	res, err = rr.Reconcile(ctx, both)
	if err != nil {
		t.Fatal(err)
	}
	a.logRouteChanges(ctx, res)
	want := `level=INFO msg="route repaired: it was removed outside kindnet" reconciler=routes cidr=10.244.2.0/24 via=192.168.50.2 peer=n2`
	if got := lines(&buf); len(got) != 1 || got[0] != want {
		t.Fatalf("repair logged as %q, want\n%s", got, want)
	}
	a.lastRoutes = res

	// A run that changes nothing closes with a debug line only.
	buf.Reset()
	res, err = rr.Reconcile(ctx, both)
	if err != nil {
		t.Fatal(err)
	}
	a.logSummary(ctx, "resync", time.Now(), summaryReports(res, false, false))
	if got := lines(&buf); got != nil {
		t.Fatalf("a run without changes logged at info: %q", got)
	}
	a.lastRoutes = res

	// n3 leaves: the reconcile's own two deletions kick nothing; at debug
	// level each is one line with the reconciler and cidr keys.
	a.log = testLogger(&buf, slog.LevelDebug)
	res, err = rr.Reconcile(ctx, &model.Snapshot{Peers: []model.Peer{n2}})
	if err != nil {
		t.Fatal(err)
	}
	a.logRouteChanges(ctx, res)
	a.lastRoutes = res
	own := []routes.Deleted{
		{Dst: netip.MustParsePrefix("10.244.3.0/24"), Table: 254, Priority: 0},
		{Dst: netip.MustParsePrefix("fd00:10:244:3::/64"), Table: 254, Priority: 1024},
	}
	if why := a.routesGone(own); why != "" {
		t.Errorf("the reconcile's own deletions kicked another reconcile: %q", why)
	}
	wantDebug := []string{
		`level=DEBUG msg="delete 10.244.3.0/24 via 192.168.50.3" reconciler=routes cidr=10.244.3.0/24`,
		`level=DEBUG msg="delete fd00:10:244:3::/64 via fd00:50::3" reconciler=routes cidr=fd00:10:244:3::/64`,
	}
	if got := lines(&buf); strings.Join(got, "\n") != strings.Join(wantDebug, "\n") {
		t.Errorf("debug lines\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantDebug, "\n"))
	}
}

// summaryReports are the reports the routes, masquerade and CNI steps give
// for a routes result and whether the table and the config were written.
func summaryReports(res routes.Result, masqChanged, cniWritten bool) []Report {
	return []Report{
		{Name: "routes", Changes: len(res.Changes), Details: routeDetails(res)},
		{Name: "masquerade", Changes: btoi(masqChanged), Details: []any{"changed", masqChanged}},
		{Name: "cni", Changes: btoi(cniWritten), Details: []any{"written", cniWritten}},
		{Name: "cache", Changes: 1}, // no details: not in the line, and its change alone is no news
	}
}
