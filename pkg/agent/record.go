package agent

import (
	"errors"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// The functions here turn what the agent learned into the status record.
// They are pure (record in, record out) so a record built from a known view
// can be checked against a golden file.

// recordSnapshot writes the validated view and the route results: every
// accepted peer with the state the routes reconciler gave it, and every
// rejected peer with its validation reason.
func recordSnapshot(r *status.Record, snap model.Snapshot, rr routes.Result, routed bool) {
	peers := make([]status.Peer, 0, len(snap.Peers)+len(snap.Rejected))
	for _, p := range snap.Peers {
		sp := status.Peer{Name: p.Name, State: status.PeerPending, Addresses: strs(p.Addrs), PodCIDRs: strs(p.PodCIDRs)}
		if st, ok := rr.Peers[p.Name]; ok {
			sp.State, sp.Reason = st.State, st.Reason
		} else if !routed {
			sp.Reason = "no route reconcile yet"
		}
		peers = append(peers, sp)
	}
	for _, rj := range snap.Rejected {
		peers = append(peers, status.Peer{Name: rj.Node.Name, State: status.PeerRejected, Reason: rj.Reason,
			Addresses: rj.Node.Addresses, PodCIDRs: rj.Node.PodCIDRs})
	}
	r.Peers = peers
	if routed {
		r.Routes.Installed = rr.Installed
	}
	r.Node.PodCIDRs = strs(snap.Self.PodCIDRs)
	r.Node.Problem = snap.SelfProblem
}

func recordMasq(m *status.Masq, res masq.Result) {
	m.Present, m.Error = res.Present, ""
	m.PodRanges = strs(res.Pods)
	m.NoMasquerade = strs(res.NoMasquerade)
}

func recordCNI(c *status.CNI, res cniconf.Result) {
	c.Present, c.Hash, c.Written, c.Waiting = res.Hash != "", res.Hash, res.ModTime, res.Waiting
	if res.MTU > 0 {
		c.MTU = res.MTU
	}
}

// sourceFailed records a problem of the source. A model.SourceError
// carries its kind (unreachable, forbidden, …), the missing permission and
// a hint; any other error is reason "error". Since marks when the source
// stopped being healthy, not the latest error.
func sourceFailed(s *status.Source, name string, err error, now time.Time) {
	if s.Healthy || s.Error == "" {
		s.Since = now
	}
	s.Name, s.Healthy, s.Error = name, false, err.Error()
	s.Reason, s.MissingPermission, s.Hint = "error", "", ""
	var se *model.SourceError
	if errors.As(err, &se) {
		s.Reason, s.MissingPermission, s.Hint = se.Reason, se.Permission, se.Hint
	}
	s.LastEvent = now
	s.Events++
	s.Errors++
}

// sourceSynced records a complete view delivered by the source.
func sourceSynced(s *status.Source, name string, now time.Time) {
	s.Name, s.Healthy, s.Synced = name, true, true
	s.Error, s.Reason, s.MissingPermission, s.Hint, s.Since = "", "", "", "", time.Time{}
	s.LastEvent, s.LastSync = now, now
	s.Events++
}
