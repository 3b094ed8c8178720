package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	dto "github.com/prometheus/client_model/go"

	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// metricsURL is the agents' default metricsAddress, inside each node's
// network namespace (every namespace has its own loopback).
const metricsURL = "http://127.0.0.1:19080"

// kindnetStatus runs `kindnet status` for a node as an operator on that node
// would: inside its namespace, with its config. It returns the exit code
// and stdout.
func kindnetStatus(t *testing.T, l *lab.Lab, n *lab.Node, args ...string) (int, string) {
	t.Helper()
	argv := append([]string{"netns", "exec", n.NS, l.Opts.Kindnet, "status", "--config", n.ConfigPath()}, args...)
	cmd := exec.Command("ip", argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no KINDNET_* of the caller
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("kindnet status for %s: %v\n%s", n.Name, err, stderr.String())
	return -1, ""
}

func statusJSON(t *testing.T, l *lab.Lab, n *lab.Node) (int, status.Record) {
	t.Helper()
	code, out := kindnetStatus(t, l, n, "-o", "json")
	var rec status.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("kindnet status -o json for %s: %v\n%s", n.Name, err, out)
	}
	return code, rec
}

// dialInNS connects from inside the named network namespace: the socket is
// created on a thread switched into it, and keeps that namespace after the
// thread switches back.
func dialInNS(ctx context.Context, ns, network, addr string) (net.Conn, error) {
	var c net.Conn
	err := lab.InNetNS(ns, func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, network, addr)
		return err
	})
	return c, err
}

// nsGet fetches url from inside namespace ns.
func nsGet(ns, url string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return dialInNS(ctx, ns, network, addr)
		},
	}}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape reads a node's /metrics and parses it with the Prometheus text parser.
func scrape(n *lab.Node) (map[string]*dto.MetricFamily, error) {
	code, body, err := nsGet(n.NS, metricsURL+"/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("/metrics of %s: HTTP %d", n.Name, code)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

// sample is the value of the sample of family name with label=value ("" for
// an unlabelled metric).
func sample(fams map[string]*dto.MetricFamily, name, label, value string) (float64, error) {
	f, ok := fams[name]
	if !ok {
		return 0, fmt.Errorf("no metric %s", name)
	}
	for _, m := range f.Metric {
		match := label == ""
		for _, l := range m.Label {
			if l.GetName() == label && l.GetValue() == value {
				match = true
			}
		}
		if !match {
			continue
		}
		if m.Gauge != nil {
			return m.Gauge.GetValue(), nil
		}
		return m.Counter.GetValue(), nil
	}
	return 0, fmt.Errorf("no sample %s{%s=%q}", name, label, value)
}

// kindnetRouteCount counts the kindnet routes in a node's namespace.
func kindnetRouteCount(t *testing.T, n *lab.Node) int {
	t.Helper()
	return len(nodeRoutes(t, n))
}

// TestStatusTellsHealthyDegradedAndDownWithExitCodes walks one lab through
// the three verdicts: healthy on every node (exit 0, socket 0600, metrics
// matching the routing table), a hostile peer rejected everywhere (exit 1,
// its reason in status, log and metrics), and an agent stopped (exit 2, the
// host's routes, table and CNI config still reported).
func TestStatusTellsHealthyDegradedAndDownWithExitCodes(t *testing.T) {
	l := newLab(t, labOptions(t))
	peers := len(l.Nodes) - 1

	t.Run("healthy on every node", func(t *testing.T) {
		for _, n := range l.Nodes {
			var out string
			eventually(t, 10*time.Second, n.Name+" healthy", func() error {
				code, o := kindnetStatus(t, l, n)
				out = o
				if code != 0 {
					return fmt.Errorf("exit %d:\n%s", code, o)
				}
				return nil
			})
			if !strings.HasPrefix(out, "healthy\n") {
				t.Errorf("%s: header is not the verdict:\n%s", n.Name, out)
			}
			for _, other := range l.Nodes {
				if other != n && !strings.Contains(out, other.Name+"  routed") {
					t.Errorf("%s: %s not shown routed:\n%s", n.Name, other.Name, out)
				}
			}
			_, rec := statusJSON(t, l, n)
			if rec.SchemaVersion != status.SchemaVersion || !rec.Agent.Running || rec.Verdict.State != status.Healthy ||
				rec.Node.Name != n.Name || !rec.CNI.Present || !rec.Masquerade.Present || !rec.Ready {
				t.Errorf("%s: record %+v", n.Name, rec)
			}
			st, err := os.Stat(filepath.Join(n.Dir, "run", "kindnet.sock"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
				t.Errorf("%s: socket mode %v, want 0600", n.Name, st.Mode())
			}
		}
	})

	t.Run("a second agent for the same node refuses to start", func(t *testing.T) {
		n := l.Nodes[1]
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.NS, l.Opts.Kindnet, "agent", "--config", n.ConfigPath())
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		out, err := cmd.CombinedOutput()
		if err == nil || ctx.Err() != nil || !strings.Contains(string(out), "another kindnet agent answers") {
			t.Fatalf("second agent: %v\n%s", err, out)
		}
		if code, out := kindnetStatus(t, l, n); code != 0 {
			t.Errorf("the first agent no longer answers: exit %d\n%s", code, out)
		}
	})

	t.Run("metrics match the routing table", func(t *testing.T) {
		for _, n := range l.Nodes {
			fams, err := scrape(n)
			if err != nil {
				t.Fatal(err)
			}
			installed := kindnetRouteCount(t, n)
			checks := []struct {
				name, label, value string
				want               float64
			}{
				{"kindnet_peers", "state", "routed", float64(peers)},
				{"kindnet_peers", "state", "rejected", 0},
				{"kindnet_routes_installed", "", "", float64(installed)},
				{"kindnet_ready", "", "", 1},
				{"kindnet_cni_config_present", "", "", 1},
				{"kindnet_masquerade_table_present", "", "", 1},
				{"kindnet_source_healthy", "source", "nodes file", 1},
				{"kindnet_reconcile_errors_total", "reconciler", "routes", 0},
			}
			for _, c := range checks {
				got, err := sample(fams, c.name, c.label, c.value)
				if err != nil || got != c.want {
					t.Errorf("%s: %s{%s=%q} = %v (%v), want %v", n.Name, c.name, c.label, c.value, got, err, c.want)
				}
			}
			// Dual-stack: one route per family to each routed peer.
			if installed != 2*peers {
				t.Errorf("%s: %d kindnet routes, want %d", n.Name, installed, 2*peers)
			}
			if _, ok := fams["kindnet_reconcile_duration_seconds"]; !ok {
				t.Errorf("%s: no reconcile duration histogram", n.Name)
			}
			if ts, err := sample(fams, "kindnet_last_sync_timestamp_seconds", "", ""); err != nil || ts <= 0 {
				t.Errorf("%s: last sync %v %v", n.Name, ts, err)
			}
			if code, body, err := nsGet(n.NS, metricsURL+"/healthz"); err != nil || code != http.StatusOK {
				t.Errorf("%s: /healthz %d %q %v", n.Name, code, body, err)
			}
		}
	})

	t.Run("a rejected peer degrades every node with its reason", func(t *testing.T) {
		evil := lab.NodeObject{Name: "evil", Addresses: []string{"192.168.100.66"}, PodCIDRs: []string{"10.99.0.0/24"}}
		if err := l.WriteNodesFile(append(l.Objects(), evil)); err != nil {
			t.Fatal(err)
		}
		const reason = "podCIDR 10.99.0.0/24 is outside clusterCIDRs"
		for _, n := range l.Nodes {
			eventually(t, 10*time.Second, n.Name+" degraded", func() error {
				code, out := kindnetStatus(t, l, n)
				if code != 1 || !strings.HasPrefix(out, "degraded: 1 peer rejected (evil)") || !strings.Contains(out, reason) {
					return fmt.Errorf("exit %d:\n%s", code, out)
				}
				return nil
			})
			code, rec := statusJSON(t, l, n)
			found := false
			for _, p := range rec.Peers {
				found = found || (p.Name == "evil" && p.State == status.PeerRejected && strings.Contains(p.Reason, reason))
			}
			if code != 1 || !found {
				t.Errorf("%s: exit %d, peers %+v", n.Name, code, rec.Peers)
			}
			fams, err := scrape(n)
			if err != nil {
				t.Fatal(err)
			}
			if v, err := sample(fams, "kindnet_peers", "state", "rejected"); err != nil || v != 1 {
				t.Errorf("%s: kindnet_peers{state=rejected} = %v %v", n.Name, v, err)
			}
			if v, err := sample(fams, "kindnet_routes_installed", "", ""); err != nil || int(v) != kindnetRouteCount(t, n) || int(v) != 2*peers {
				t.Errorf("%s: routes installed %v %v: the hostile peer must add nothing", n.Name, v, err)
			}
			log, _ := os.ReadFile(n.LogPath())
			if !strings.Contains(string(log), "peer rejected") || !strings.Contains(string(log), reason) {
				t.Errorf("%s: the agent log does not carry the rejection reason", n.Name)
			}
		}
		if err := l.WriteNodesFile(nil); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("agent stopped: down, host facts still shown", func(t *testing.T) {
		n := l.Nodes[0]
		if err := l.StopAgent(n, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		code, out := kindnetStatus(t, l, n)
		if code != 2 {
			t.Fatalf("exit %d, want 2:\n%s", code, out)
		}
		want := []string{
			"down: agent not running (no socket at " + filepath.Join(n.Dir, "run", "kindnet.sock") + ")",
			fmt.Sprintf("%d kindnet routes on the host", 2*peers),
			"table inet kindnet present",
			n.CNIConfPath(),
		}
		for _, other := range l.Nodes[1:] {
			want = append(want, other.PodCIDR4.String()+" via "+other.IPv4.String()+" dev eth0")
		}
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("output lacks %q:\n%s", w, out)
			}
		}
		code, rec := statusJSON(t, l, n)
		if code != 2 || rec.Agent.Running || rec.Host == nil || len(rec.Host.Routes) != 2*peers || !rec.CNI.Present || !rec.Host.Cache.Present {
			t.Errorf("exit %d, record %+v host %+v", code, rec, rec.Host)
		}
		if code, _ := kindnetStatus(t, l, n, "-q"); code != 2 {
			t.Errorf("-q: exit %d", code)
		}
	})
}

// TestReadyzIsFalseBeforeTheFirstSyncAndTrueAfter starts an agent that has
// nothing to go on (its nodes file does not exist yet, and no cache): it is
// alive (/healthz) but not ready (/readyz) until the file appears.
func TestReadyzIsFalseBeforeTheFirstSyncAndTrueAfter(t *testing.T) {
	o := labOptions(t)
	o.Nodes, o.PodsPerNode = 2, 0
	l := newLab(t, o)
	n := l.Nodes[0]
	if err := l.StopAgent(n, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(n.Dir, "state", "cluster-view.json")); err != nil {
		t.Fatal(err)
	}
	late := filepath.Join(l.Dir, "late-nodes.yaml")
	logf, err := os.Create(filepath.Join(n.Dir, "late-agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("ip", "netns", "exec", n.NS, l.Opts.Kindnet, "agent", "--config", n.ConfigPath(), "--nodes-file", late)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM) // by PID: the agent we started
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("---- late agent log ----\n%s", tail(b, 40))
		}
	})

	eventually(t, 10*time.Second, "the agent alive", func() error {
		code, body, err := nsGet(n.NS, metricsURL+"/healthz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("/healthz %d %q %v", code, body, err)
		}
		return nil
	})
	code, body, err := nsGet(n.NS, metricsURL+"/readyz")
	if err != nil || code != http.StatusServiceUnavailable || !strings.Contains(body, "has not delivered a view yet") {
		t.Fatalf("/readyz before the first sync: %d %q %v", code, body, err)
	}
	fams, err := scrape(n)
	if err != nil {
		t.Fatal(err)
	}
	if v, err := sample(fams, "kindnet_ready", "", ""); err != nil || v != 0 {
		t.Errorf("kindnet_ready before sync = %v %v", v, err)
	}
	scode, out := kindnetStatus(t, l, n)
	if scode != 1 || !strings.Contains(out, "nodes file") || !strings.Contains(out, "no such file") {
		t.Errorf("status before the first sync: exit %d\n%s", scode, out)
	}

	b, err := os.ReadFile(l.NodesFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(late, b, 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "/readyz ok after the first sync", func() error {
		code, body, err := nsGet(n.NS, metricsURL+"/readyz")
		if err != nil || code != http.StatusOK {
			return fmt.Errorf("/readyz %d %q %v", code, body, err)
		}
		return nil
	})
	eventually(t, 10*time.Second, "healthy after the first sync", func() error {
		if code, out := kindnetStatus(t, l, n); code != 0 {
			return fmt.Errorf("exit %d\n%s", code, out)
		}
		return nil
	})
}
