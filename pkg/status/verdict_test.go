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

// runtimeAnswer is containerd's answer checked at checked; the CNI config
// of the cases is written at written.
func runtimeAnswer(state string, checked time.Time) Runtime {
	rt := Runtime{Endpoint: "unix:///run/containerd/containerd.sock", Auto: true, State: state, Name: "containerd",
		Version: "v2.4.2", Checked: checked, Since: checked}
	if state == RuntimeReady {
		rt.NetworkReady = true
	} else {
		rt.Reason, rt.Message = "NetworkPluginNotReady", "Network plugin returns error: cni plugin not initialized"
	}
	return rt
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
		{"runtime agrees", func(r *Record) { r.Runtime = runtimeAnswer(RuntimeReady, since.Add(time.Hour)) }, Healthy, 0, nil},
		{"runtime not ready long after the CNI config was written", func(r *Record) {
			r.Runtime = runtimeAnswer(RuntimeNotReady, since.Add(2*time.Minute))
		}, Down, 2, []string{"CNI config written 2m ago but containerd reports NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized"}},
		{"runtime not ready just after the CNI config was written", func(r *Record) {
			r.Runtime = runtimeAnswer(RuntimeNotReady, since.Add(3*time.Second))
		}, Degraded, 1, []string{"CNI config written 2m ago, containerd does not report the network ready yet (NetworkReady=false: NetworkPluginNotReady"}},
		{"a runtime answer older than the CNI config is no disagreement", func(r *Record) {
			r.Runtime = runtimeAnswer(RuntimeNotReady, since.Add(-time.Second))
		}, Healthy, 0, nil},
		{"runtime not ready and no CNI config: down once, for the config", func(r *Record) {
			r.CNI = CNI{Path: "/c.conflist"}
			r.Runtime = runtimeAnswer(RuntimeNotReady, since.Add(time.Hour))
		}, Down, 2, []string{"no CNI config at /c.conflist"}},
		{"runtime unanswered", func(r *Record) {
			r.Runtime = Runtime{State: RuntimeUnanswered, Endpoint: "unix:///run/containerd/containerd.sock", Error: "no answer within 2s", Checked: since}
		}, Degraded, 1, []string{"the runtime at unix:///run/containerd/containerd.sock does not answer: no answer within 2s"}},
		{"configured runtime socket missing", func(r *Record) {
			r.Runtime = Runtime{State: RuntimeNoSocket, Endpoint: "unix:///run/x.sock", Error: "/run/x.sock does not exist", Checked: since}
		}, Degraded, 1, []string{"no container runtime socket at unix:///run/x.sock (cri.endpoint)"}},
		{"no runtime found by auto is fine", func(r *Record) {
			r.Runtime = Runtime{State: RuntimeNotFound, Auto: true, Checked: since}
		}, Healthy, 0, nil},
		{"runtime check off is fine", func(r *Record) { r.Runtime = Runtime{State: RuntimeDisabled} }, Healthy, 0, nil},
		{"another firewall drops pod traffic", func(r *Record) {
			r.Firewall = Firewall{Checked: since, Drops: []FirewallDrop{{Owner: "docker", Table: "ip filter", Chain: "FORWARD", What: "policy drop",
				Fix: "iptables -I DOCKER-USER -s 10.244.0.0/16 -j ACCEPT; iptables -I DOCKER-USER -d 10.244.0.0/16 -j ACCEPT"}}}
		}, Degraded, 1, []string{"docker drops forwarded pod traffic (ip filter FORWARD: policy drop); fix: iptables -I DOCKER-USER -s 10.244.0.0/16 -j ACCEPT; iptables -I DOCKER-USER -d 10.244.0.0/16 -j ACCEPT"}},
		{"a firewall that could not be read is no verdict", func(r *Record) { r.Firewall = Firewall{Checked: since, Error: "netlink: EPERM"} }, Healthy, 0, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := healthyRecord()
			// The CNI config was written at since; "now" is 2m later.
			r.CNI.Written, r.Now = since, since.Add(2*time.Minute)
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

func TestRuntimeObserveKeepsSinceWhileTheStateLasts(t *testing.T) {
	var rt Runtime
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := runtimeAnswer(RuntimeNotReady, t1)
	a.Since = time.Time{}
	if !rt.Observe(a) || !rt.Since.Equal(t1) {
		t.Fatalf("first answer: %+v", rt)
	}
	b := runtimeAnswer(RuntimeNotReady, t1.Add(time.Minute))
	if rt.Observe(b) || !rt.Since.Equal(t1) || !rt.Checked.Equal(t1.Add(time.Minute)) {
		t.Fatalf("same answer later: changed, or Since moved: %+v", rt)
	}
	c := b
	c.Message, c.Checked = "Network plugin returns error: kindnet cannot allocate pod addresses", t1.Add(2*time.Minute)
	if !rt.Observe(c) || !rt.Since.Equal(t1) {
		t.Fatalf("new message, same state: want changed with Since kept: %+v", rt)
	}
	d := Runtime{Endpoint: a.Endpoint, State: RuntimeUnanswered, Error: "no answer within 2s", Checked: t1.Add(3 * time.Minute)}
	if !rt.Observe(d) || !rt.Since.Equal(d.Checked) || rt.Name != "containerd" {
		t.Fatalf("unanswered: want Since reset and the runtime's name kept: %+v", rt)
	}
}

func TestSummarySaysWhenTheRuntimeDisagrees(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name   string
		change func(r *Record)
		want   string
	}{
		{"runtime not asked", func(*Record) {}, "1 peers routed, 1 pending, CNI config ready, nodes file"},
		{"runtime agrees", func(r *Record) { r.Runtime = runtimeAnswer(RuntimeReady, t1) },
			"1 peers routed, 1 pending, CNI config ready, containerd network ready, nodes file"},
		{"runtime disagrees", func(r *Record) { r.Runtime = runtimeAnswer(RuntimeNotReady, t1) },
			"1 peers routed, 1 pending, CNI config written but containerd reports NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized, nodes file"},
		{"both say not ready", func(r *Record) {
			r.CNI.Present = false
			r.Runtime = runtimeAnswer(RuntimeNotReady, t1)
		}, "1 peers routed, 1 pending, no CNI config, containerd NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized, nodes file"},
		{"runtime not answering", func(r *Record) {
			r.Runtime = Runtime{State: RuntimeUnanswered, Endpoint: "unix:///run/crio/crio.sock", Checked: t1}
		}, "1 peers routed, 1 pending, CNI config ready, the runtime at unix:///run/crio/crio.sock not answering, nodes file"},
		{"runtime socket missing", func(r *Record) {
			r.Runtime = Runtime{State: RuntimeNoSocket, Endpoint: "unix:///run/x.sock", Checked: t1}
		}, "1 peers routed, 1 pending, CNI config ready, no runtime socket at unix:///run/x.sock, nodes file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := healthyRecord()
			c.change(&r)
			if got := r.Summary(); got != c.want {
				t.Errorf("Summary() = %q\nwant         %q", got, c.want)
			}
		})
	}
}
