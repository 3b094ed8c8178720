package agent

import (
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// An update that knows this node but not the others (the Kubernetes source
// without the right to list Nodes) must never replace the peers: not those
// from the cache, and with no view at all it must not invent an empty one.
func TestPeersUnknownUpdateTakesSelfAndKeepsPeers(t *testing.T) {
	self := model.Node{Name: "a", Addresses: []string{"192.168.1.1"}, PodCIDRs: []string{"10.244.1.0/24"}}
	partial := model.Update{View: &model.View{Self: self}, PeersUnknown: true}
	cached := knownView()
	cached.Self = model.Node{Name: "a", Addresses: []string{"192.168.1.1"}}

	for _, tc := range []struct {
		name      string
		cache     *model.View
		wantView  bool
		wantPeers int
	}{
		{"no view yet", nil, false, 0},
		{"bootstrapped from the cache", &cached, true, len(cached.Peers)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &Agent{log: slog.New(slog.NewTextHandler(io.Discard, nil)), store: status.NewStore("test", t0), source: namedSource("kubernetes")}
			if tc.cache != nil {
				a.setView(*tc.cache, "cache")
			}
			a.apply(model.Update{Err: errors.New("forbidden")})
			if !a.apply(partial) {
				t.Fatal("this node's new podCIDR was not taken as a change")
			}
			if a.haveView != tc.wantView || len(a.view.Peers) != tc.wantPeers {
				t.Errorf("haveView %v with %d peers, want %v with %d", a.haveView, len(a.view.Peers), tc.wantView, tc.wantPeers)
			}
			if a.view.Self.PodCIDRs[0] != "10.244.1.0/24" {
				t.Errorf("self not taken: %+v", a.view.Self)
			}
			if tc.cache != nil && a.viewOrigin != "cache" {
				t.Errorf("view origin %q: the peers still come from the cache", a.viewOrigin)
			}
			if r := a.store.Get(); r.Source.Healthy || r.Source.Synced {
				t.Errorf("a partial update made the source look healthy: %+v", r.Source)
			}
			if a.apply(partial) {
				t.Error("the same partial update counted as a change twice")
			}
		})
	}
}
