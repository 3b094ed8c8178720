// Package agent wires sources to reconcilers: it brings the node's pod
// network up from local state before kubelet starts (sysctls, then routes,
// masquerade and CNI config from the nodes file or the cache), tells systemd
// it is ready, then follows the source and keeps the host converged on every
// change, on a periodic resync, and whenever one of its routes is removed.
//
// It owns no host resource itself: every change to the host goes through a
// reconciler package. On shutdown it leaves everything in place so pods keep
// working across restarts and upgrades.
//
// Every reconciler run ends in a Report (name, changes, duration, error,
// log details and the reconciler's own part of the status record); the
// status record's list of runs, the metrics and the reconcile summary line
// iterate over reports and never name a reconciler's result type. To add a
// reconciler:
//
//  1. build it in New and keep it in a field of Agent;
//  2. write its step, a method func(ctx, *model.Snapshot) Report, that
//     calls it, logs its individual changes, and turns its result into a
//     Report: Changes, Err (Partial when the error concerns single items
//     and the rest converged), Details for the summary line, and a Record
//     func when it has a part of the status record beyond its run;
//  3. add one entry to the table in steps, with its phase.
//
// With no other change its runs then appear in `kindnet status -o wide`
// and -o json, its errors in the verdict ("<name> reconcile failing"), in
// kindnet_reconcile_{runs,errors}_total and
// kindnet_reconcile_duration_seconds, and in the summary line; a failure
// of a converge step holds back the cache and NetworkReady.
package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/buildinfo"
	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/kube"
	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/metrics"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/nodesfile"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/pkg/sysctl"
)

// debounce groups bursts of changes (a file rewritten, many Node events)
// into one reconcile, without adding noticeable latency to a single change.
const debounce = 20 * time.Millisecond

// heartbeatInterval is how often the idle main loop proves it is alive
// (/healthz fails after metrics.DefaultStaleAfter without a beat).
const heartbeatInterval = 5 * time.Second

// Notifier tells the service manager about the agent (sd_notify).
type Notifier interface {
	Ready()
	Status(line string)
	Watchdog()
	Stopping()
}

// Options are the agent's collaborators; zero values get working defaults.
type Options struct {
	Version string
	Log     *slog.Logger
	// Source follows the cluster; nil picks one from the config.
	Source model.Source
	// Notifier reports to systemd; nil means not under systemd.
	Notifier Notifier
	// Status receives the live record; nil makes a private one.
	Status *status.Store
	// SysctlRoot is /proc/sys unless a test says otherwise.
	SysctlRoot string
}

// Agent is one node agent.
type Agent struct {
	cfg   *config.Loaded
	opts  Options
	log   *slog.Logger
	nl    *netlink.Handle
	store *status.Store
	cache *cache.File
	// metrics is fed where the record is updated (see finish).
	metrics *metrics.Metrics

	source  model.Source
	routes  *routes.Reconciler
	masq    *masq.Reconciler
	cni     *cniconf.Reconciler
	sysctls *sysctl.Reconciler
	// runtime asks the container runtime about the pod network, off the
	// main loop (nil in tests that build an Agent by hand).
	runtime *runtimeWatch

	view       model.View
	haveView   bool // a real view (source or cache) is known: routes may be reconciled
	viewOrigin string
	prev       *model.Snapshot
	// held and incumbents say who held which range before this process
	// started (the routes found installed, the peers the cache names as
	// accepted); they order validation until the first snapshot exists.
	held       map[netip.Prefix]netip.Addr
	incumbents []string
	// retry spaces out the retries of failed or skipped reconciles.
	retry      backoff
	rejected   map[string]string // last logged rejection reason per peer
	lastStatus string            // last STATUS= line sent to systemd
	peerStates map[string]string // last logged route state per peer
	// fileWarnings are the trusted files others than root can change,
	// as last logged (see checkFiles).
	fileWarnings []string
	// lastRoutes is the last route reconcile's result: which routes it
	// wanted in place, to tell a repair from kindnet's own changes.
	lastRoutes routes.Result
}

// New builds an agent for the config. It touches nothing on the host.
func New(cfg *config.Loaded, opts Options) (*Agent, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.Status == nil {
		opts.Status = status.NewStore(opts.Version, time.Now())
	}
	// Routes, links and addresses only: a handle of every family would
	// also open XFRM and NETFILTER sockets it never uses (and which
	// qemu-user refuses, so foreign builds could not be tested).
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	a := &Agent{
		cfg: cfg, opts: opts, log: opts.Log, nl: nl, store: opts.Status,
		cache:    &cache.File{Path: cfg.CachePath(), Node: cfg.NodeName},
		source:   opts.Source,
		routes:   &routes.Reconciler{Handle: nl},
		masq:     &masq.Reconciler{Table: cfg.Masquerade.Table, Enabled: cfg.Masquerade.Enabled, NoMasquerade: cfg.NoMasqueradePrefixes()},
		cni:      &cniconf.Reconciler{Path: cfg.CNIConfPath(), Mode: cfg.CNI.Plugin, MTU: cfg.CNI.MTU, CNIVersion: cfg.CNI.SpecVersion, IPAMDir: cfg.IPAMDir(), HostPortTable: cfg.HostPortTable(), Handle: nl, BinDir: cfg.CNI.BinDir},
		sysctls:  &sysctl.Reconciler{Root: opts.SysctlRoot, Settings: sysctl.Settings(usesIPv6(cfg))},
		rejected: map[string]string{},
		metrics:  metrics.New(opts.Status, metrics.Build{Version: opts.Version, Commit: buildinfo.Commit}),
	}
	endpoints, auto := cfg.CRIEndpoints()
	a.runtime = newRuntimeWatch(endpoints, auto, a.store, opts.Log)
	if a.source == nil {
		policy := kubenode.AddressPolicy{AllowExternalIP: cfg.AllowExternalIP}
		if cfg.NodesFile != "" {
			a.source = &nodesfile.Source{Path: cfg.NodesFile, Self: cfg.NodeName, Policy: policy}
		} else {
			a.source = kube.New(kube.Options{Kubeconfig: cfg.Kubeconfig, NodeName: cfg.NodeName, Policy: policy,
				UserAgent: "kindnet/" + opts.Version, Log: opts.Log})
		}
	}
	a.store.Update(func(r *status.Record) {
		r.Node.Name = cfg.NodeName
		r.Source.Name = a.source.Name()
		r.Masquerade = status.Masq{Enabled: cfg.Masquerade.Enabled, Table: cfg.Masquerade.Table}
		r.CNI.Path = cfg.CNIConfPath()
		r.CNI.Plugin = cfg.CNI.Plugin
		r.Agent = status.Agent{PID: os.Getpid(), Socket: cfg.SocketPath(), MetricsAddress: cfg.MetricsAddress}
	})
	return a, nil
}

func usesIPv6(cfg *config.Loaded) bool {
	for _, p := range append(cfg.ClusterPrefixes(), cfg.PodPrefixes()...) {
		if p.Addr().Is6() {
			return true
		}
	}
	// Without configured ranges the cluster's families are unknown; IPv6
	// forwarding is harmless only when the host has IPv6 at all.
	return len(cfg.ClusterCIDRs) == 0 && len(cfg.PodCIDRs) == 0 && hostHasIPv6()
}

// Run brings the node up and keeps it converged until ctx ends. It returns
// nil on a clean stop; what it installed stays in place.
func (a *Agent) Run(ctx context.Context) error {
	defer a.nl.Close()
	a.store.Beat(time.Now())
	stopServing, err := a.serve(ctx)
	if err != nil {
		return err
	}
	defer stopServing()
	// The runtime is asked in the background from the start; neither the
	// bootstrap nor READY=1 waits for it.
	rctx, stopRuntime := context.WithCancel(ctx)
	var runtimeDone sync.WaitGroup
	runtimeDone.Go(func() { a.runtime.run(rctx) })
	defer func() { stopRuntime(); runtimeDone.Wait() }()
	a.bootstrap()
	a.seedHolders()
	ok := a.reconcile(ctx, "bootstrap")
	a.store.Update(func(r *status.Record) { r.Bootstrapped, r.Ready = true, r.Source.Synced })
	a.notify().Ready()
	a.log.Info("bootstrap state applied", "node", a.cfg.NodeName, "view", a.viewOrigin)

	updates := make(chan model.Update, 16)
	kicks := make(chan string, 1)
	gone := make(chan []routes.Deleted)
	srcDone := make(chan error, 1)
	go func() { srcDone <- a.source.Run(ctx, updates) }()
	go a.watchNetlink(ctx, kicks, gone)
	return a.loop(ctx, updates, kicks, gone, srcDone, ok)
}

// seedHolders records, before the first validation, who held which range:
// the kindnet routes the kernel has (after a kill -9 or a restart) and the
// peers the cache names as accepted (after a reboot). Without them the
// first validation would decide conflicts by name, and a newcomer whose
// name sorts first would take over a range that carries traffic.
func (a *Agent) seedHolders() {
	if rs, err := routes.List(a.nl); err != nil {
		a.log.Warn("cannot list the installed kindnet routes; conflicts are decided from the cache alone", "err", err)
	} else {
		a.held = map[netip.Prefix]netip.Addr{}
		for _, rt := range rs {
			dst, ok1 := netip.AddrFromSlice(rt.Dst.IP)
			via, ok2 := netip.AddrFromSlice(rt.Gw)
			if ok1 && ok2 {
				ones, _ := rt.Dst.Mask.Size()
				a.held[netip.PrefixFrom(dst.Unmap(), ones).Masked()] = via.Unmap()
			}
		}
	}
	if e, err := a.cache.Read(); err == nil && e != nil {
		a.incumbents = e.Accepted
	}
}

// loop is the single goroutine that owns the agent's state.
func (a *Agent) loop(ctx context.Context, updates <-chan model.Update, kicks <-chan string, gone <-chan []routes.Deleted, srcDone <-chan error, bootOK bool) error {
	resync := time.NewTicker(a.cfg.ResyncInterval.Std())
	defer resync.Stop()
	watchdog := watchdogTicker()
	defer watchdog.Stop()
	heartbeat := time.NewTicker(heartbeatInterval)
	defer heartbeat.Stop()
	a.store.Beat(time.Now())
	var pending string // why a reconcile is due; "" when none
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	schedule := func(why string) {
		if pending == "" {
			timer.Reset(debounce)
		}
		pending = why
	}
	// A failed or skipped run is retried with capped backoff, not left
	// to the next resync; any other reconcile in between counts as the retry.
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	a.retry = backoff{min: retryMin, max: min(retryMax, a.cfg.ResyncInterval.Std())}
	after := func(ok bool) {
		retry.Stop()
		if ok {
			a.retry.reset()
			return
		}
		d := a.retry.next()
		a.log.Info("reconcile incomplete; retrying", "in", d)
		retry.Reset(d)
	}
	after(bootOK)
	for {
		select {
		case <-ctx.Done():
			a.notify().Stopping()
			a.log.Info("stopping; routes, rules and CNI config stay in place")
			return nil
		case u := <-updates:
			if a.apply(u) {
				schedule("source update")
			}
		case why := <-kicks:
			schedule(why)
		case rs := <-gone:
			if why := a.routesGone(rs); why != "" {
				schedule(why)
			}
		case <-resync.C:
			schedule("resync")
		case <-timer.C:
			why := pending
			pending = ""
			after(a.reconcile(ctx, why))
		case <-retry.C:
			schedule("retry after a failed run")
		case err := <-srcDone:
			if ctx.Err() != nil {
				continue
			}
			return fmt.Errorf("source %s stopped: %w", a.source.Name(), err)
		case <-watchdog.C:
			a.notify().Watchdog()
		case now := <-heartbeat.C:
			a.store.Beat(now) // /healthz: the loop is alive
		case <-a.runtime.changes():
			a.publishStatus() // the runtime's answer is part of STATUS=
		}
	}
}

// bootstrap picks the first view without any network: the nodes file when
// it can be read, else the cache written by the last successful run.
func (a *Agent) bootstrap() {
	if nf, ok := a.source.(*nodesfile.Source); ok {
		v, err := nf.Read()
		if err == nil {
			a.setView(v, "nodes file")
			return
		}
		a.log.Warn("cannot read the nodes file at start; trying the cache", "err", err)
	}
	start := time.Now()
	v, err := a.cache.Load()
	switch {
	case err != nil:
		a.log.Warn("ignoring the cache", "err", err)
		// In status until a save replaces the cache: a restart now would
		// start with no cluster view.
		a.finish(Report{Name: "cache", Start: start, Duration: time.Since(start), Err: fmt.Errorf("unusable, ignored: %w", err)})
	case v != nil:
		a.setView(*v, "cache")
		return
	}
	a.log.Info("no cluster view yet: installed routes are kept until the source reports", "node", a.cfg.NodeName)
}

func (a *Agent) setView(v model.View, origin string) {
	v.Normalize()
	a.view, a.haveView, a.viewOrigin = v, true, origin
	a.store.Update(func(r *status.Record) { r.Source.ViewFrom = origin })
}

// apply takes a source update; it reports whether the view changed.
func (a *Agent) apply(u model.Update) bool {
	now := time.Now()
	if u.Err != nil {
		a.log.Error("source problem; keeping the last good view", "source", a.source.Name(), "err", u.Err)
		a.store.Update(func(r *status.Record) { sourceFailed(&r.Source, a.source.Name(), u.Err, now) })
		a.publishStatus()
		return false
	}
	if u.PeersUnknown {
		return a.applySelf(u.View.Self, now)
	}
	a.store.Update(func(r *status.Record) {
		sourceSynced(&r.Source, a.source.Name(), now)
		r.Ready = r.Bootstrapped
	})
	a.publishStatus()
	if a.haveView && a.viewOrigin == a.source.Name() && a.view.Equal(normalized(*u.View)) {
		return false
	}
	a.setView(*u.View, a.source.Name())
	return true
}

// applySelf takes this node from a source that cannot list the other nodes
// yet: the peers (from the cache or the last good view) stay as they are, and
// with no view at all none is invented, so no route is removed for lack of a
// list. It reports whether this node changed.
func (a *Agent) applySelf(self model.Node, now time.Time) bool {
	a.store.Update(func(r *status.Record) { r.Source.LastEvent = now; r.Source.Events++ })
	if nodeEqual(a.view.Self, self) {
		return false
	}
	a.view.Self = self
	return true
}

func nodeEqual(a, b model.Node) bool {
	return (model.View{Self: a}).Equal(model.View{Self: b})
}

func normalized(v model.View) model.View { v.Normalize(); return v }

func (a *Agent) notify() Notifier {
	if a.opts.Notifier == nil {
		return nopNotifier{}
	}
	return a.opts.Notifier
}

type nopNotifier struct{}

func (nopNotifier) Ready()        {}
func (nopNotifier) Status(string) {}
func (nopNotifier) Watchdog()     {}
func (nopNotifier) Stopping()     {}
