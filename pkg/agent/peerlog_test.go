package agent

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
)

// Routine states (routed, gone) are debug lines, problems (off-link) info
// lines: at boot with thousands of peers only the problems reach the journal.
func TestPeerStateChangesAreLoggedOncePerCIDRWithPeerKeys(t *testing.T) {
	node2 := model.Peer{Name: "node2",
		Addrs:    []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd00:99::2")},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.2.0/24"), netip.MustParsePrefix("fd00:10:244:2::/64")}}
	routed := routes.Result{Peers: map[string]routes.PeerState{"node2": {State: routes.StateRouted}}}
	offLink := routes.Result{Peers: map[string]routes.PeerState{"node2": {State: routes.StateOffLink, Reason: "10.99.0.2 is not on-link"}}}
	steps := []struct {
		name string
		snap model.Snapshot
		res  routes.Result
		want []string
	}{
		{"first routed", model.Snapshot{Peers: []model.Peer{node2}}, routed, []string{
			`level=DEBUG msg="peer routed" peer=node2 cidr=10.244.2.0/24 reconciler=routes via=10.99.0.2`,
			`level=DEBUG msg="peer routed" peer=node2 cidr=fd00:10:244:2::/64 reconciler=routes via=fd00:99::2`,
		}},
		{"unchanged: silent", model.Snapshot{Peers: []model.Peer{node2}}, routed, nil},
		{"off-link with its reason", model.Snapshot{Peers: []model.Peer{node2}}, offLink, []string{
			`level=INFO msg="peer off-link" peer=node2 cidr=10.244.2.0/24 reconciler=routes via=10.99.0.2 reason="10.99.0.2 is not on-link"`,
			`level=INFO msg="peer off-link" peer=node2 cidr=fd00:10:244:2::/64 reconciler=routes via=fd00:99::2 reason="10.99.0.2 is not on-link"`,
		}},
		{"gone", model.Snapshot{}, routes.Result{}, []string{`level=DEBUG msg="peer no longer routed" peer=node2 reconciler=routes`}},
	}
	var buf bytes.Buffer
	a := &Agent{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
			if at.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return at
		}}))}
	for _, s := range steps {
		buf.Reset()
		a.logPeerStates(s.snap, s.res)
		got := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if buf.Len() == 0 {
			got = nil
		}
		if strings.Join(got, "\n") != strings.Join(s.want, "\n") {
			t.Errorf("%s: logged\n%s\nwant\n%s", s.name, strings.Join(got, "\n"), strings.Join(s.want, "\n"))
		}
	}
}
