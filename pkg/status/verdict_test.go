package status

import (
	"strings"
	"testing"
	"time"
)

// healthyRecord is a record of a working node; cases break one thing each.
func healthyRecord() Record {
	return Record{
		SchemaVersion: SchemaVersion,
		Agent:         Agent{Running: true, Socket: "/run/kindnet/kindnet.sock"},
		Node:          Node{Name: "a", PodCIDRs: []string{"10.244.1.0/24"}},
		Source:        Source{Name: "nodes file", ViewFrom: "nodes file", Healthy: true, Synced: true},
		Bootstrapped:  true, Ready: true,
		CNI:         CNI{Path: "/etc/cni/net.d/10-kindnet.conflist", Present: true, Hash: "ab"},
		Masquerade:  Masq{Enabled: true, Table: "kindnet", Present: true},
		Peers:       []Peer{{Name: "b", State: PeerRouted}, {Name: "c", State: PeerPending, Reason: "no podCIDR yet"}},
		Reconcilers: []Run{{Name: "routes"}, {Name: "masquerade"}, {Name: "cni"}},
	}
}

func TestJudge(t *testing.T) {
	since := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		name   string
		change func(r *Record)
		state  string
		exit   int
		want   []string // substrings of the reasons, in order
	}{
		{"healthy, a pending peer is normal", func(*Record) {}, Healthy, 0, nil},
		{"agent not running", func(r *Record) { r.Agent = Agent{Error: "no socket at /x.sock"} }, Down, 2,
			[]string{"agent not running (no socket at /x.sock)"}},
		{"no CNI config", func(r *Record) { r.CNI = CNI{Path: "/c.conflist", Waiting: "this node's podCIDR is not known yet"} }, Down, 2,
			[]string{"no CNI config at /c.conflist (this node's podCIDR is not known yet)"}},
		{"down lists only down reasons", func(r *Record) {
			r.Agent.Running = false
			r.Peers = append(r.Peers, Peer{Name: "x", State: PeerRejected})
		}, Down, 2, []string{"agent not running"}},
		{"rejected peers", func(r *Record) {
			r.Peers = append(r.Peers, Peer{Name: "x", State: PeerRejected}, Peer{Name: "y", State: PeerRejected})
		}, Degraded, 1, []string{"2 peers rejected (x, y)"}},
		{"off-link and conflict", func(r *Record) {
			r.Peers = append(r.Peers, Peer{Name: "o", State: PeerOffLink}, Peer{Name: "k", State: PeerConflict})
		}, Degraded, 1, []string{"1 peer off-link (o)", "1 peer conflict (k)"}},
		{"many names are cut", func(r *Record) {
			for _, n := range []string{"p1", "p2", "p3", "p4", "p5"} {
				r.Peers = append(r.Peers, Peer{Name: n, State: PeerRejected})
			}
		}, Degraded, 1, []string{"5 peers rejected (p1, p2, p3 and 2 more)"}},
		{"API unreachable", func(r *Record) {
			r.Source = Source{Name: "kubernetes", Reason: "unreachable", Error: "dial tcp: connection refused", Since: since, Synced: true}
		}, Degraded, 1, []string{"kubernetes unreachable since 2026-01-02T03:04:05Z"}},
		{"403 with the missing permission", func(r *Record) {
			r.Source = Source{Name: "kubernetes", Reason: "forbidden", Error: "nodes is forbidden", MissingPermission: "list nodes (cluster scope)"}
		}, Degraded, 1, []string{"kubernetes forbidden (403): missing permission list nodes (cluster scope)"}},
		{"plain source error", func(r *Record) {
			r.Source = Source{Name: "nodes file", Reason: "error", Error: "nodes file: open /n.yaml: no such file"}
		}, Degraded, 1, []string{"nodes file: nodes file: open /n.yaml"}},
		{"source never synced", func(r *Record) { r.Source.Synced = false; r.Ready = false }, Degraded, 1,
			[]string{"nodes file has not delivered a view yet"}},
		{"not bootstrapped", func(r *Record) { r.Bootstrapped = false }, Degraded, 1, []string{"bootstrap not applied yet"}},
		{"stale CNI config kept while podCIDR unusable", func(r *Record) {
			r.CNI.Waiting = "podCIDR 10.99.0.0/24 is outside clusterCIDRs"
		}, Degraded, 1, []string{"CNI config may be stale: podCIDR 10.99.0.0/24"}},
		{"CNI write failing", func(r *Record) { r.Reconcilers[2].Error = "write: read-only file system" }, Degraded, 1,
			[]string{"CNI config stale: write: read-only file system"}},
		{"routes failing", func(r *Record) { r.Reconcilers[0].Error = "add route: EPERM" }, Degraded, 1,
			[]string{"routes reconcile failing: add route: EPERM"}},
		{"a past error no longer counts", func(r *Record) { r.Reconcilers[0].LastError = "old" }, Healthy, 0, nil},
		{"masquerade table missing", func(r *Record) { r.Masquerade.Present = false }, Degraded, 1,
			[]string{"masquerade table inet kindnet missing"}},
		{"masquerade disabled is fine", func(r *Record) { r.Masquerade = Masq{Table: "kindnet"} }, Healthy, 0, nil},
		{"own podCIDR problem", func(r *Record) { r.Node.Problem = "podCIDR overlaps the host's network" }, Degraded, 1,
			[]string{"this node: podCIDR overlaps"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := healthyRecord()
			c.change(&r)
			v := Judge(&r)
			if v.State != c.state || v.ExitCode() != c.exit {
				t.Fatalf("verdict %q (exit %d), want %s (exit %d)", v, v.ExitCode(), c.state, c.exit)
			}
			if len(v.Reasons) != len(c.want) {
				t.Fatalf("reasons %q, want %d matching %q", v.Reasons, len(c.want), c.want)
			}
			for i, w := range c.want {
				if !strings.Contains(v.Reasons[i], w) {
					t.Errorf("reason %d = %q, want it to contain %q", i, v.Reasons[i], w)
				}
			}
			if !strings.HasPrefix(v.String(), c.state) {
				t.Errorf("header %q does not start with %q", v, c.state)
			}
		})
	}
}

func TestStampSetsUptimeAndVerdict(t *testing.T) {
	r := healthyRecord()
	r.Started = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.Peers = append(r.Peers, Peer{Name: "x", State: PeerRejected})
	r.Stamp(r.Started.Add(90 * time.Second))
	if r.UptimeSeconds != 90 || r.Verdict.State != Degraded {
		t.Fatalf("uptime %d verdict %v", r.UptimeSeconds, r.Verdict)
	}
}

func TestSetRunKeepsCountsAndLastError(t *testing.T) {
	var r Record
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r.SetRun(Run{Name: "routes", Last: t0, Changes: 2})
	r.SetRun(Run{Name: "routes", Last: t0.Add(time.Second), Error: "boom"})
	r.SetRun(Run{Name: "cni", Last: t0})
	r.SetRun(Run{Name: "routes", Last: t0.Add(2 * time.Second)})
	got := r.Reconcilers[0]
	if len(r.Reconcilers) != 2 || got.Runs != 3 || got.Errors != 1 || got.Error != "" ||
		got.LastError != "boom" || !got.LastErrorAt.Equal(t0.Add(time.Second)) {
		t.Fatalf("reconcilers %+v", r.Reconcilers)
	}
}
