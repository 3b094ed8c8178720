// Package metrics serves the agent's Prometheus metrics and its probes over
// HTTP on metricsAddress: /metrics (a private registry: peers by state,
// routes installed, reconcile durations and errors, source events and
// errors, last sync, what the container runtime reports about the pod
// network, build info, Go and process collectors), /healthz (the
// agent's main loop is alive) and /readyz (bootstrap applied and the source
// synced once).
//
// Almost every metric is read from the status record at scrape time, so
// metrics, `kindnet status` and the log can never disagree; only the
// reconcile duration histogram is fed as runs happen. It never touches the
// host's network beyond its own listening socket.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kindnet-dev/kindnet/pkg/status"
)

// DefaultStaleAfter is how old the main loop's heartbeat may be before
// /healthz fails. The loop beats every few seconds even when idle, so only
// a loop stuck in one step for this long fails it.
const DefaultStaleAfter = 30 * time.Second

// Build identifies the binary in kindnet_build_info.
type Build struct {
	Version, Commit string
}

// Metrics is the agent's registry and probes.
type Metrics struct {
	store    *status.Store
	reg      *prometheus.Registry
	duration *prometheus.HistogramVec
	// Refresh completes a record with facts read at scrape time (IPAM).
	Refresh func(r *status.Record)
	// StaleAfter bounds the heartbeat age /healthz accepts.
	StaleAfter time.Duration
	now        func() time.Time
}

// New builds the registry for the agent whose record is store.
func New(store *status.Store, b Build) *Metrics {
	m := &Metrics{
		store: store, reg: prometheus.NewRegistry(), StaleAfter: DefaultStaleAfter, now: time.Now,
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kindnet_reconcile_duration_seconds",
			Help: "How long each run of a reconciler took.",
			// Reconciles take from tens of microseconds (nothing to do) to
			// seconds (thousands of routes).
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"reconciler"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.duration,
		&recordCollector{m: m, build: b},
	)
	return m
}

// Registry is the private registry (tests gather from it directly).
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveRun feeds one reconciler run into the duration histogram. The
// agent calls it where it records the run in the status record.
func (m *Metrics) ObserveRun(run status.Run) {
	if m == nil {
		return
	}
	m.duration.WithLabelValues(run.Name).Observe(run.Duration.Seconds())
}

var (
	descPeers       = prometheus.NewDesc("kindnet_peers", "Peers by state: routed, pending, off-link, conflict, rejected (reasons are in `kindnet status`).", []string{"state"}, nil)
	descRoutes      = prometheus.NewDesc("kindnet_routes_installed", "kindnet routes present after the last routes reconcile, or found on the host when none ran (no cluster view) or it failed before counting.", nil, nil)
	descRecErrors   = prometheus.NewDesc("kindnet_reconcile_errors_total", "Failed runs of each reconciler.", []string{"reconciler"}, nil)
	descRecRuns     = prometheus.NewDesc("kindnet_reconcile_runs_total", "Runs of each reconciler.", []string{"reconciler"}, nil)
	descSrcEvents   = prometheus.NewDesc("kindnet_source_events_total", "Updates received from the source (views and errors).", []string{"source"}, nil)
	descSrcErrors   = prometheus.NewDesc("kindnet_source_errors_total", "Errors reported by the source.", []string{"source"}, nil)
	descSrcHealthy  = prometheus.NewDesc("kindnet_source_healthy", "1 while the source sees the cluster.", []string{"source"}, nil)
	descLastSync    = prometheus.NewDesc("kindnet_last_sync_timestamp_seconds", "When the source last delivered a complete view (0: never).", nil, nil)
	descReady       = prometheus.NewDesc("kindnet_ready", "1 once bootstrap is applied and the source has synced (what /readyz says).", nil, nil)
	descCNI         = prometheus.NewDesc("kindnet_cni_config_present", "1 when the CNI config file exists.", nil, nil)
	descMasq        = prometheus.NewDesc("kindnet_masquerade_table_present", "1 when the masquerade nftables table exists.", nil, nil)
	descIPAMUsed    = prometheus.NewDesc("kindnet_ipam_addresses_used", "Pod addresses allocated in each range.", []string{"range"}, nil)
	descIPAMCap     = prometheus.NewDesc("kindnet_ipam_addresses_capacity", "Pod addresses available in each range.", []string{"range"}, nil)
	descRuntimeUp   = prometheus.NewDesc("kindnet_runtime_up", "1 when the container runtime answered the last check over CRI, 0 when it did not (absent when no runtime is asked).", []string{"endpoint"}, nil)
	descRuntimeNet  = prometheus.NewDesc("kindnet_runtime_network_ready", "The container runtime's NetworkReady condition: 1 true, 0 false (only while it answers).", []string{"endpoint"}, nil)
	descRuntimeDis  = prometheus.NewDesc("kindnet_runtime_network_disagreement", "1 when kindnet's CNI config is written and the runtime, asked well after, reports NetworkReady=false.", []string{"endpoint"}, nil)
	descHeartbeat   = prometheus.NewDesc("kindnet_heartbeat_timestamp_seconds", "When the agent's main loop last proved alive.", nil, nil)
	descBuild       = prometheus.NewDesc("kindnet_build_info", "The running kindnet build (value 1).", []string{"version", "commit", "goversion"}, nil)
	agentPeerStates = []string{status.PeerRouted, status.PeerPending, status.PeerOffLink, status.PeerConflict, status.PeerRejected}
)

// recordCollector turns the status record into metrics at scrape time.
type recordCollector struct {
	m     *Metrics
	build Build
}

func (c *recordCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPeers, descRoutes, descRecErrors, descRecRuns, descSrcEvents, descSrcErrors,
		descSrcHealthy, descLastSync, descReady, descCNI, descMasq, descIPAMUsed, descIPAMCap,
		descRuntimeUp, descRuntimeNet, descRuntimeDis, descHeartbeat, descBuild} {
		ch <- d
	}
}

func (c *recordCollector) Collect(ch chan<- prometheus.Metric) {
	r := c.m.store.Get()
	if c.m.Refresh != nil {
		c.m.Refresh(&r)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counts := r.Counts()
	for _, st := range agentPeerStates {
		gauge(descPeers, float64(counts[st]), st)
	}
	gauge(descRoutes, float64(r.Routes.Installed))
	for _, run := range r.Reconcilers {
		counter(descRecErrors, run.Errors, run.Name)
		counter(descRecRuns, run.Runs, run.Name)
	}
	src := r.Source.Name
	counter(descSrcEvents, r.Source.Events, src)
	counter(descSrcErrors, r.Source.Errors, src)
	gauge(descSrcHealthy, b2f(r.Source.Healthy), src)
	gauge(descLastSync, unixSeconds(r.Source.LastSync))
	gauge(descReady, b2f(r.Ready))
	gauge(descCNI, b2f(r.CNI.Present))
	gauge(descMasq, b2f(r.Masquerade.Present))
	for _, rg := range r.IPAM.Ranges {
		gauge(descIPAMUsed, float64(rg.Used), rg.CIDR)
		gauge(descIPAMCap, float64(rg.Capacity), rg.CIDR)
	}
	switch rt := r.Runtime; rt.State {
	case status.RuntimeReady, status.RuntimeNotReady:
		gauge(descRuntimeUp, 1, rt.Endpoint)
		gauge(descRuntimeNet, b2f(rt.NetworkReady), rt.Endpoint)
		_, lasting := status.RuntimeDisagrees(&r)
		gauge(descRuntimeDis, b2f(lasting), rt.Endpoint)
	case status.RuntimeUnanswered, status.RuntimeNoSocket:
		gauge(descRuntimeUp, 0, rt.Endpoint)
	}
	gauge(descHeartbeat, unixSeconds(r.Agent.LastHeartbeat))
	gauge(descBuild, 1, c.build.Version, c.build.Commit, runtime.Version())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// Handler serves /metrics, /healthz and /readyz.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	mux.HandleFunc("GET /healthz", m.healthz)
	mux.HandleFunc("GET /readyz", m.readyz)
	return mux
}

// healthz fails when the main loop's heartbeat is stale: the agent is
// stuck, and a supervisor should restart it.
func (m *Metrics) healthz(w http.ResponseWriter, _ *http.Request) {
	last := m.store.LastBeat()
	age := m.now().Sub(last)
	if last.IsZero() || age > m.StaleAfter {
		w.WriteHeader(http.StatusServiceUnavailable)
		if last.IsZero() {
			fmt.Fprintln(w, "main loop has not started")
			return
		}
		fmt.Fprintf(w, "main loop stalled: last heartbeat %s ago (limit %s)\n", age.Round(time.Second), m.StaleAfter)
		return
	}
	fmt.Fprintln(w, "ok")
}

// readyz succeeds once the bootstrap state is applied and the source has
// delivered a first view.
func (m *Metrics) readyz(w http.ResponseWriter, _ *http.Request) {
	r := m.store.Get()
	if r.Ready {
		fmt.Fprintln(w, "ok")
		return
	}
	var why []string
	if !r.Bootstrapped {
		why = append(why, "bootstrap state not applied yet")
	}
	if !r.Source.Synced {
		s := "source " + r.Source.Name + " has not delivered a view yet"
		if r.Source.Error != "" {
			s += ": " + r.Source.Error
		}
		why = append(why, s)
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, "not ready: "+strings.Join(why, "; "))
}

// Listen opens the metrics address. It reports whether the address is
// reachable from other hosts (not loopback), so the caller can warn: the
// metrics name every node and range of the cluster.
func Listen(addr string) (ln net.Listener, exposed bool, err error) {
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		return nil, false, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	return ln, !IsLoopback(addr), nil
}

// IsLoopback reports whether host:port binds only loopback addresses. An
// empty host or a wildcard binds every address, so it is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Serve answers on ln until ctx ends.
func (m *Metrics) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: m.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
