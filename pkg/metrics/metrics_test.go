package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/kindnet-dev/kindnet/pkg/status"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

func knownStore() *status.Store {
	st := status.NewStore("1.2.3", t0)
	st.Update(func(r *status.Record) {
		r.Source = status.Source{Name: "nodes file", Healthy: true, Synced: true, LastSync: t0.Add(time.Second), Events: 3, Errors: 1}
		r.Peers = []status.Peer{
			{Name: "b", State: status.PeerRouted}, {Name: "c", State: status.PeerRouted},
			{Name: "d", State: status.PeerOffLink, Reason: "not on link"},
			{Name: "e", State: status.PeerRejected, Reason: "podCIDR outside clusterCIDRs"},
		}
		r.Routes.Installed = 4
		r.CNI.Present = true
		r.Bootstrapped, r.Ready = true, true
		r.SetRun(status.Run{Name: "routes", Last: t0, Duration: time.Millisecond})
		r.SetRun(status.Run{Name: "routes", Last: t0, Duration: 3 * time.Millisecond, Error: "EPERM"})
	})
	return st
}

// scrape serves /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fams
}

// value finds the sample of family name whose labels include want.
func value(t *testing.T, fams map[string]*dto.MetricFamily, name string, want map[string]string) float64 {
	t.Helper()
	f, ok := fams[name]
	if !ok {
		t.Fatalf("no metric %s", name)
	}
next:
	for _, m := range f.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	t.Fatalf("no sample of %s with %v", name, want)
	return 0
}

func TestMetricsReflectTheRecord(t *testing.T) {
	st := knownStore()
	m := New(st, Build{Version: "1.2.3", Commit: "abc"})
	m.ObserveRun(status.Run{Name: "routes", Duration: time.Millisecond})
	m.ObserveRun(status.Run{Name: "routes", Duration: 3 * time.Millisecond})
	m.Refresh = func(r *status.Record) {
		r.IPAM.Ranges = []status.IPAMRange{{CIDR: "10.244.1.0/24", Used: 5, Capacity: 253}}
	}
	fams := scrape(t, m)
	cases := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"kindnet_peers", map[string]string{"state": "routed"}, 2},
		{"kindnet_peers", map[string]string{"state": "off-link"}, 1},
		{"kindnet_peers", map[string]string{"state": "rejected"}, 1},
		{"kindnet_peers", map[string]string{"state": "pending"}, 0},
		{"kindnet_peers", map[string]string{"state": "conflict"}, 0},
		{"kindnet_routes_installed", nil, 4},
		{"kindnet_reconcile_errors_total", map[string]string{"reconciler": "routes"}, 1},
		{"kindnet_reconcile_runs_total", map[string]string{"reconciler": "routes"}, 2},
		{"kindnet_reconcile_duration_seconds", map[string]string{"reconciler": "routes"}, 2},
		{"kindnet_source_events_total", map[string]string{"source": "nodes file"}, 3},
		{"kindnet_source_errors_total", map[string]string{"source": "nodes file"}, 1},
		{"kindnet_source_healthy", map[string]string{"source": "nodes file"}, 1},
		{"kindnet_last_sync_timestamp_seconds", nil, float64(t0.Add(time.Second).Unix())},
		{"kindnet_ready", nil, 1},
		{"kindnet_cni_config_present", nil, 1},
		{"kindnet_masquerade_table_present", nil, 0},
		{"kindnet_ipam_addresses_used", map[string]string{"range": "10.244.1.0/24"}, 5},
		{"kindnet_ipam_addresses_capacity", map[string]string{"range": "10.244.1.0/24"}, 253},
		{"kindnet_build_info", map[string]string{"version": "1.2.3", "commit": "abc"}, 1},
	}
	for _, c := range cases {
		if got := value(t, fams, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, std := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := fams[std]; !ok {
			t.Errorf("standard collector metric %s missing", std)
		}
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	b, _ := io.ReadAll(rec.Body)
	return rec.Code, string(b)
}

func TestHealthzFailsWhenTheHeartbeatIsStale(t *testing.T) {
	st := status.NewStore("1", t0)
	m := New(st, Build{})
	now := t0
	m.now = func() time.Time { return now }
	cases := []struct {
		name  string
		beat  time.Time
		at    time.Time
		code  int
		human string
	}{
		{"no beat yet", time.Time{}, t0, 503, "has not started"},
		{"fresh", t0, t0.Add(5 * time.Second), 200, "ok"},
		{"stale", t0, t0.Add(DefaultStaleAfter + time.Second), 503, "main loop stalled: last heartbeat 31s ago"},
	}
	for _, c := range cases {
		if !c.beat.IsZero() {
			st.Beat(c.beat)
		}
		now = c.at
		code, body := get(t, m.Handler(), "/healthz")
		if code != c.code || !strings.Contains(body, c.human) {
			t.Errorf("%s: %d %q, want %d %q", c.name, code, body, c.code, c.human)
		}
	}
}

func TestReadyzWaitsForBootstrapAndFirstSync(t *testing.T) {
	st := status.NewStore("1", t0)
	st.Update(func(r *status.Record) {
		r.Source = status.Source{Name: "nodes file", Error: "open /n.yaml: no such file or directory"}
	})
	m := New(st, Build{})
	code, body := get(t, m.Handler(), "/readyz")
	if code != 503 || !strings.Contains(body, "bootstrap state not applied") || !strings.Contains(body, "no such file") {
		t.Errorf("before bootstrap: %d %q", code, body)
	}
	st.Update(func(r *status.Record) { r.Bootstrapped = true })
	if code, body = get(t, m.Handler(), "/readyz"); code != 503 || strings.Contains(body, "bootstrap") {
		t.Errorf("bootstrapped, not synced: %d %q", code, body)
	}
	st.Update(func(r *status.Record) { r.Source.Synced, r.Ready = true, true })
	if code, body = get(t, m.Handler(), "/readyz"); code != 200 {
		t.Errorf("ready: %d %q", code, body)
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:19080": true, "[::1]:19080": true, "localhost:19080": true, "127.0.0.2:1": true,
		":19080": false, "0.0.0.0:19080": false, "[::]:19080": false, "10.0.0.1:19080": false, "node1:19080": false, "bad": false,
	} {
		if got := IsLoopback(addr); got != want {
			t.Errorf("IsLoopback(%q) = %v, want %v", addr, got, want)
		}
	}
}

func TestRuntimeMetrics(t *testing.T) {
	const ep = "unix:///run/containerd/containerd.sock"
	written := t0.Add(time.Minute)
	cases := []struct {
		name                   string
		rt                     status.Runtime
		up, ready, disagreeing float64 // -1: absent
	}{
		{"ready", status.Runtime{Endpoint: ep, State: status.RuntimeReady, NetworkReady: true, Checked: written.Add(time.Hour)}, 1, 1, 0},
		{"disagrees", status.Runtime{Endpoint: ep, State: status.RuntimeNotReady, Checked: written.Add(time.Hour)}, 1, 0, 1},
		{"not ready yet, just after the write", status.Runtime{Endpoint: ep, State: status.RuntimeNotReady, Checked: written.Add(time.Second)}, 1, 0, 0},
		{"not answering", status.Runtime{Endpoint: ep, State: status.RuntimeUnanswered, Checked: written.Add(time.Hour)}, 0, -1, -1},
		{"none found", status.Runtime{Auto: true, State: status.RuntimeNotFound}, -1, -1, -1},
		{"off", status.Runtime{State: status.RuntimeDisabled}, -1, -1, -1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := knownStore()
			st.Update(func(r *status.Record) { r.CNI.Written = written })
			m := New(st, Build{})
			m.Refresh = func(r *status.Record) { r.Runtime = c.rt }
			fams := scrape(t, m)
			for name, want := range map[string]float64{"kindnet_runtime_up": c.up,
				"kindnet_runtime_network_ready": c.ready, "kindnet_runtime_network_disagreement": c.disagreeing} {
				if want < 0 {
					if _, ok := fams[name]; ok {
						t.Errorf("%s present, want absent", name)
					}
					continue
				}
				if got := value(t, fams, name, map[string]string{"endpoint": ep}); got != want {
					t.Errorf("%s = %v, want %v", name, got, want)
				}
			}
		})
	}
}
