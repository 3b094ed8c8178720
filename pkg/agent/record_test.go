package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/golden"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// knownView is node a of a dual-stack cluster with a routed peer, a
// pending one, an off-link one and two hostile ones.
func knownView() model.View {
	return model.View{
		Self: model.Node{Name: "a", Addresses: []string{"192.168.1.1", "fd00:1::1"}, PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
		Peers: []model.Node{
			{Name: "b", Addresses: []string{"192.168.1.2", "fd00:1::2"}, PodCIDRs: []string{"10.244.2.0/24", "fd00:10:244:2::/64"}},
			{Name: "c", Addresses: []string{"192.168.1.3"}},
			{Name: "d", Addresses: []string{"192.168.9.4"}, PodCIDRs: []string{"10.244.4.0/24"}},
			{Name: "evil", Addresses: []string{"192.168.1.66"}, PodCIDRs: []string{"10.99.0.0/24"}},
			{Name: "thief", Addresses: []string{"192.168.1.7"}, PodCIDRs: []string{"10.244.2.0/24"}},
		},
	}
}

// TestStatusRecordFromKnownViewMatchesGolden builds the record the way the
// agent does — validate the view, then the record functions with what the
// reconcilers report — and compares its JSON with testdata/status.golden.
func TestStatusRecordFromKnownViewMatchesGolden(t *testing.T) {
	snap := model.Validate(knownView(), model.Policy{
		ClusterCIDRs: prefixes("10.244.0.0/16", "fd00:10:244::/56"),
		HostAddrs:    []netip.Addr{netip.MustParseAddr("192.168.1.1"), netip.MustParseAddr("fd00:1::1")},
		HostSubnets:  prefixes("192.168.1.0/24", "fd00:1::/64"),
	})
	// What the routes reconciler reports for this snapshot on a host whose
	// only network is 192.168.1.0/24 (d's address is elsewhere).
	rr := routes.Result{Installed: 2, Peers: map[string]routes.PeerState{
		"b": {State: routes.StateRouted},
		"c": {State: routes.StatePending, Reason: "no podCIDR yet"},
		"d": {State: routes.StateOffLink, Reason: "192.168.9.4 is not on a directly connected network"},
	}}
	st := status.NewStore("1.2.3", t0)
	st.Update(func(r *status.Record) {
		r.Node.Name = "a"
		r.Agent = status.Agent{PID: 4321, Socket: "/run/kindnet/kindnet.sock", MetricsAddress: "127.0.0.1:19080"}
		r.Masquerade = status.Masq{Enabled: true, Table: "kindnet"}
		r.CNI = status.CNI{Path: "/etc/cni/net.d/10-kindnet.conflist", Plugin: "ptp"}
		sourceFailed(&r.Source, "nodes file", errors.New("nodes file: open /etc/kindnet/nodes.yaml: no such file or directory"), t0)
		sourceSynced(&r.Source, "nodes file", t0.Add(time.Second))
		r.Source.ViewFrom = "nodes file"
		r.SetRun(status.Run{Name: "sysctl", Last: t0, Duration: 200 * time.Microsecond, Changes: 2})
		r.SetRun(status.Run{Name: "routes", Last: t0.Add(time.Second), Duration: 500 * time.Microsecond, Changes: 2})
		recordSnapshot(r, snap, rr, true)
		r.SetRun(status.Run{Name: "masquerade", Last: t0.Add(time.Second), Duration: 2 * time.Millisecond, Changes: 1})
		recordMasq(&r.Masquerade, masq.Result{Changed: true, Present: true,
			Pods: prefixes("10.244.0.0/16", "fd00:10:244::/56"), NoMasquerade: prefixes("10.244.0.0/16", "fd00:10:244::/56")})
		r.SetRun(status.Run{Name: "cni", Last: t0.Add(time.Second), Duration: 90 * time.Microsecond, Changes: 1})
		recordCNI(&r.CNI, cniconf.Result{Path: r.CNI.Path, Written: true, Present: true, MTU: 1500, ModTime: t0.Add(time.Second),
			Hash: "f6f2c678618e1ee839ba53db0231c08e3f9921053d2ce2dd83a37838dbedc0f8"})
		r.Bootstrapped, r.Ready = true, true
	})
	rec := st.Get()
	rec.Agent.Running = true
	rec.IPAM = status.IPAM{Dir: "/run/kindnet/ipam/kindnet", Available: true, Ranges: []status.IPAMRange{
		{CIDR: "10.244.1.0/24", Used: 3, Capacity: 253}, {CIDR: "fd00:10:244:1::/64", Used: 3, Capacity: 1<<64 - 2}}}
	rec.Stamp(t0.Add(time.Minute))

	// Every rejection reaches the record with its reason.
	if len(snap.Rejected) != 2 {
		t.Fatalf("the known view should have two rejected peers, got %+v", snap.Rejected)
	}
	for _, rj := range snap.Rejected {
		if !hasPeer(rec.Peers, rj.Node.Name, status.PeerRejected, rj.Reason) {
			t.Errorf("rejected peer %s (%s) is not in the record: %+v", rj.Node.Name, rj.Reason, rec.Peers)
		}
	}
	if rec.Verdict.State != status.Degraded || rec.Verdict.ExitCode() != 1 {
		t.Errorf("verdict %v", rec.Verdict)
	}
	got, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "testdata/status.golden", append(got, '\n'))
}

func hasPeer(peers []status.Peer, name, state, reason string) bool {
	for _, p := range peers {
		if p.Name == name && p.State == state && p.Reason == reason {
			return true
		}
	}
	return false
}

func TestSourceHealthIsRecordedByKind(t *testing.T) {
	var s status.Source
	unreachable := &model.SourceError{Reason: model.SourceUnreachable, Err: errors.New("dial tcp 10.0.0.1:6443: connection refused")}
	forbidden := &model.SourceError{Reason: model.SourceForbidden, Permission: "list nodes (cluster scope)",
		Hint: "kindnet rbac | kubectl apply -f -", Err: errors.New(`nodes is forbidden: User "system:node:a" cannot list resource "nodes"`)}

	sourceFailed(&s, "kubernetes", fmt.Errorf("watch nodes: %w", unreachable), t0)
	if s.Reason != "unreachable" || !s.Since.Equal(t0) || s.Healthy || s.Errors != 1 {
		t.Fatalf("after unreachable: %+v", s)
	}
	sourceFailed(&s, "kubernetes", forbidden, t0.Add(time.Minute))
	if s.Reason != "forbidden" || s.MissingPermission != "list nodes (cluster scope)" || s.Hint == "" ||
		!s.Since.Equal(t0) || s.Errors != 2 || s.Events != 2 {
		t.Fatalf("after forbidden (since must stay at the first failure): %+v", s)
	}
	v := status.Judge(&status.Record{Agent: status.Agent{Running: true}, CNI: status.CNI{Present: true}, Bootstrapped: true, Source: s})
	if v.State != status.Degraded || v.Reasons[0] != "kubernetes forbidden (403): missing permission list nodes (cluster scope)" {
		t.Fatalf("verdict %v", v)
	}
	sourceSynced(&s, "kubernetes", t0.Add(2*time.Minute))
	if !s.Healthy || s.Reason != "" || s.Error != "" || s.MissingPermission != "" || !s.Since.IsZero() ||
		!s.LastSync.Equal(t0.Add(2*time.Minute)) || s.Events != 3 || s.Errors != 2 {
		t.Fatalf("after sync: %+v", s)
	}
	sourceFailed(&s, "kubernetes", errors.New("boom"), t0.Add(3*time.Minute))
	if s.Reason != "error" || !s.Since.Equal(t0.Add(3*time.Minute)) || !s.Synced {
		t.Fatalf("plain error after a sync: %+v", s)
	}
}
