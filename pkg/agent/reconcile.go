package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/cni"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/hostnet"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// reconcile validates the current view against the host and runs every
// step of the table (see steps): a failing reconciler is recorded and
// retried; it never stops the others. It reports whether everything
// converged: false asks the loop for a retry with backoff.
func (a *Agent) reconcile(ctx context.Context, why string) bool {
	pre := a.runPhase(ctx, beforeSnapshot, nil)
	a.checkFiles()
	snap, err := a.snapshot()
	if err != nil {
		a.log.Error("cannot read the host's addresses; skipping this run", "err", err)
		return false
	}
	a.logPeers(snap)
	if why == "bootstrap" || why == "resync" {
		a.checkFirewalls(snap)
	}
	began := time.Now()
	reps := a.runPhase(ctx, converge, &snap)
	// A failed step stops what needs a converged host (the cache,
	// NetworkReady); a partial one (a route refused for one peer) only
	// asks for a retry.
	failed := anyFailed(reps)
	a.reportNetworkReady(failed)
	if !failed {
		reps = append(reps, a.runPhase(ctx, afterConverged, &snap)...)
	}
	a.prev = &snap
	a.held, a.incumbents = nil, nil // prev now says who holds what
	a.publishStatus()
	a.logSummary(ctx, why, began, reps)
	return !anyErr(pre) && !anyErr(reps)
}

// sysctlStep sets the kernel parameters that differ. It runs on every
// reconcile, not only at boot: someone turning forwarding off later is
// turned back, logged and counted.
func (a *Agent) sysctlStep(ctx context.Context, _ *model.Snapshot) Report {
	changes, err := a.sysctls.Reconcile(ctx)
	for _, c := range changes {
		a.log.Info("sysctl set", "reconciler", "sysctl", "change", c.String())
	}
	return Report{Changes: len(changes), Err: err}
}

// routesStep converges the routes to the peers' pod CIDRs and records
// every peer with the state the routes reconciler gave it. Without a
// cluster view (no source yet, no usable cache) the routes are left as
// they are, and status says what they are.
func (a *Agent) routesStep(ctx context.Context, snap *model.Snapshot) Report {
	if !a.haveView {
		n, err := a.hostRoutes()
		return Report{Skipped: true, Details: routeDetails(routes.Result{}), Record: func(r *status.Record) {
			r.Routes.Installed, r.Routes.Error = n, errString(err)
			recordSnapshot(r, *snap, routes.Result{}, false)
		}}
	}
	res, err := a.routes.Reconcile(ctx, snap)
	a.logRouteChanges(ctx, res)
	a.lastRoutes = res
	a.logPeerStates(*snap, res)
	partial := err != nil && routes.OnlyPeerErrors(err)
	counted, listErr := res, error(nil)
	if err != nil && !partial {
		// The run stopped before counting: report what the host has.
		counted.Installed, listErr = a.hostRoutes()
	}
	return Report{Changes: len(res.Changes), Err: err, Partial: partial, Details: routeDetails(counted),
		Record: func(r *status.Record) {
			recordSnapshot(r, *snap, counted, true)
			r.Routes.Error = errString(listErr)
		}}
}

func routeDetails(rr routes.Result) []any {
	return []any{"added", rr.Added, "replaced", rr.Replaced, "removed", rr.Removed,
		"unchanged", rr.Unchanged, "installed", rr.Installed}
}

// masqStep converges the masquerade table. Without a cluster view the
// table is left as it is, and status says whether it exists.
func (a *Agent) masqStep(ctx context.Context, snap *model.Snapshot) Report {
	if !a.haveView {
		present, err := masq.Exists(a.cfg.Masquerade.Table, a.masq.NetNSFd)
		return Report{Skipped: true, Details: []any{"changed", false}, Record: func(r *status.Record) {
			r.Masquerade.Present, r.Masquerade.Error = present, errString(err)
		}}
	}
	res, err := a.masq.Reconcile(ctx, snap)
	if res.Changed {
		a.log.Info("masquerade table written", "reconciler", "masquerade", "table", a.cfg.Masquerade.Table, "enabled", a.cfg.Masquerade.Enabled)
	}
	var present bool
	var existsErr error
	if err != nil { // the result's Present is what the run wanted
		present, existsErr = masq.Exists(a.cfg.Masquerade.Table, a.masq.NetNSFd)
	}
	return Report{Changes: btoi(res.Changed), Err: err, Details: []any{"changed", res.Changed},
		Record: func(r *status.Record) {
			recordMasq(&r.Masquerade, res)
			if err != nil {
				r.Masquerade.Present, r.Masquerade.Error = present, errString(existsErr)
			}
		}}
}

// cniStep writes the CNI config when this node's pod CIDRs are known, and
// asks the runtime watch to check whether the runtime loads it.
func (a *Agent) cniStep(ctx context.Context, snap *model.Snapshot) Report {
	res, err := a.cni.Reconcile(ctx, snap)
	if res.Written {
		a.log.Info("CNI config written", "reconciler", "cni", "path", res.Path, "mtu", res.MTU, "podCIDRs", strs(snap.Self.PodCIDRs))
		// The check waits runtimeReloadDelay, long after finish put the
		// new config in the record.
		a.runtime.cniWritten()
	}
	return Report{Changes: btoi(res.Written), Err: err, Details: []any{"written", res.Written},
		Record: func(r *status.Record) { recordCNI(&r.CNI, res) }}
}

// cacheStep saves the view once the host converged to it. A view whose
// own node was refused is not "good": the cache keeps the last one that
// was, so a restart does not lose this node's podCIDRs.
func (a *Agent) cacheStep(_ context.Context, snap *model.Snapshot) Report {
	if !a.haveView || a.viewOrigin == "cache" || snap.SelfProblem != "" {
		return Report{Skipped: true}
	}
	changed, err := a.cache.SaveEntry(cache.Entry{View: a.view, Accepted: acceptedNames(*snap)})
	if err != nil {
		err = fmt.Errorf("not saved: %w", err)
	} else if changed {
		a.log.Debug("cache saved", "path", a.cache.Path)
	}
	return Report{Changes: btoi(changed), Err: err}
}

// hostRoutes counts the kindnet routes on the host, or says why they
// could not be listed.
func (a *Agent) hostRoutes() (int, error) {
	rs, err := routes.List(a.nl)
	return len(rs), err
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func acceptedNames(s model.Snapshot) []string {
	out := make([]string, len(s.Peers))
	for i, p := range s.Peers {
		out[i] = p.Name
	}
	return out
}

// publishStatus sends systemd the record's one-line summary (STATUS=) when
// it changed, so `systemctl status kindnet` is current also when only the
// source's health changed and nothing was reconciled.
func (a *Agent) publishStatus() {
	rec := a.store.Get()
	line := rec.Summary()
	if line == a.lastStatus {
		return
	}
	a.lastStatus = line
	a.notify().Status(line)
}

// networkReadyReporter is a source that can tell the cluster this node's
// routes are in place (the Kubernetes source sets NetworkUnavailable=False).
type networkReadyReporter interface{ NetworkReady() }

// reportNetworkReady tells such a source once a reconcile of a view from the
// source itself (not the cache) installed everything without an error.
func (a *Agent) reportNetworkReady(failed bool) {
	r, ok := a.source.(networkReadyReporter)
	if ok && !failed && a.haveView && a.viewOrigin == a.source.Name() {
		r.NetworkReady()
	}
}

// sourceProtected returns addresses the source depends on (the Kubernetes
// source: the API server), which no podCIDR may cover.
func (a *Agent) sourceProtected() []netip.Addr {
	if p, ok := a.source.(interface{ ProtectedAddrs() []netip.Addr }); ok {
		return p.ProtectedAddrs()
	}
	return nil
}

// snapshot validates the view against what the host looks like now.
func (a *Agent) snapshot() (model.Snapshot, error) {
	facts, err := hostnet.Read(a.nl)
	if err != nil {
		return model.Snapshot{}, err
	}
	v := a.view
	v.Self.Name = a.cfg.NodeName
	return model.Validate(v, model.Policy{
		ClusterCIDRs: a.cfg.ClusterPrefixes(),
		SelfPodCIDRs: a.cfg.PodPrefixes(),
		HostAddrs:    facts.Addrs,
		HostSubnets:  facts.Subnets,
		Protected:    slices.Concat(facts.Gateways, a.sourceProtected()),
		// bridge mode puts each own range's first address on the bridge
		GatewayOnHost: a.cfg.CNI.Plugin == config.PluginBridge,
		Previous:      a.prev,
		Incumbents:    a.incumbents,
		Held:          a.held,
	}), nil
}

// logPeers logs each rejection and each state change once, not on every run.
func (a *Agent) logPeers(snap model.Snapshot) {
	now := map[string]string{}
	for _, r := range snap.Rejected {
		now[r.Node.Name] = r.Reason
		if a.rejected[r.Node.Name] != r.Reason {
			a.log.Warn("peer rejected: nothing installed for it", "peer", r.Node.Name, "reason", r.Reason,
				"addresses", r.Node.Addresses, "podCIDRs", r.Node.PodCIDRs)
		}
	}
	for name := range a.rejected {
		if _, still := now[name]; !still {
			a.log.Info("peer no longer rejected", "peer", name)
		}
	}
	a.rejected = now
}

// logPeerStates logs each accepted peer's route state when it changes,
// one line per pod CIDR with the peer, cidr and via keys, so that under
// journald `journalctl -u kindnet PEER=node2` (or CIDR=…) tells one peer's
// story. A peer becoming routed, pending or gone is the normal course of
// things and is logged at debug level (at boot with thousands of peers it
// is thousands of lines); a peer that cannot be routed (off-link, conflict)
// is a problem someone must look at and stays at info level.
func (a *Agent) logPeerStates(snap model.Snapshot, rr routes.Result) {
	now := map[string]string{}
	for _, p := range snap.Peers {
		st, ok := rr.Peers[p.Name]
		if !ok {
			continue
		}
		key := st.State + "\x00" + st.Reason + "\x00" + strings.Join(strs(p.PodCIDRs), ",")
		now[p.Name] = key
		if a.peerStates[p.Name] == key {
			continue
		}
		for _, cidr := range p.PodCIDRs {
			args := []any{"peer", p.Name, "cidr", cidr.String(), "reconciler", "routes"}
			if via, ok := p.Via(cidr); ok {
				args = append(args, "via", via.String())
			}
			if st.Reason != "" {
				args = append(args, "reason", st.Reason)
			}
			a.log.Log(context.Background(), peerStateLevel(st.State), "peer "+st.State, args...)
		}
	}
	for name := range a.peerStates {
		if _, still := now[name]; !still {
			a.log.Debug("peer no longer routed", "peer", name, "reconciler", "routes")
		}
	}
	a.peerStates = now
}

func peerStateLevel(state string) slog.Level {
	switch state {
	case routes.StateRouted, routes.StatePending:
		return slog.LevelDebug
	}
	return slog.LevelInfo
}

// logRouteChanges logs each route change at debug level (the messages are
// only formatted when debug is on), except a repair: a route the previous
// reconcile installed or kept that had to be added again, because something
// outside kindnet removed it. That is logged at info level, since it should
// not happen and someone may want to know who did it.
func (a *Agent) logRouteChanges(ctx context.Context, res routes.Result) {
	debug := a.log.Enabled(ctx, slog.LevelDebug)
	for _, c := range res.Changes {
		repaired := c.Verb == routes.VerbAdd && a.lastRoutes.WantsDst(c.Dst)
		switch {
		case repaired:
			a.log.Info("route repaired: it was removed outside kindnet", "reconciler", "routes",
				"cidr", c.Dst.String(), "via", c.Via.String(), "peer", c.Peer)
		case debug:
			args := []any{"reconciler", "routes", "cidr", c.Dst.String()}
			if c.Peer != "" {
				args = append(args, "peer", c.Peer)
			}
			a.log.Debug(c.String(), args...)
		}
	}
}

// watchNetlink kicks a reconcile when links or addresses change (a peer may
// have become on-link or off-link; pods' host ends and link-local addresses
// excepted, see linkKick), and hands every deleted kindnet route
// to the loop on gone, which kicks a reconcile only for a route it wants
// (someone ran `ip route del`), not for those its own reconcile removed. A
// subscription that breaks is renewed; the periodic resync covers the gap.
func (a *Agent) watchNetlink(ctx context.Context, kicks chan<- string, gone chan<- []routes.Deleted) {
	kick := func(why string) {
		select {
		case kicks <- why:
		default: // a kick is already pending
		}
	}
	for ctx.Err() == nil {
		if err := a.subscribeOnce(ctx, kick, gone); err != nil {
			a.log.Warn("netlink subscription failed; relying on resync until it is renewed", "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
			kick("netlink subscription renewed")
		}
	}
}

// subscriptionBuffer is the receive buffer of each netlink subscription.
// Installing routes for thousands of peers at once emits one event per
// route; the default buffer (about 200 KiB) overflows, the kernel drops the
// subscription with ENOBUFS and a renewal and a full extra pass follow.
// 4 MiB holds the events of tens of thousands of routes.
const subscriptionBuffer = 4 << 20

// subscribeOnce follows route, link and address events until one of the
// subscriptions ends. Deleted kindnet routes are collected while the loop
// is busy and handed over in one batch when it is free: the watcher never
// blocks, so the kernel's event queue never overflows behind a long
// reconcile that removes thousands of routes.
func (a *Agent) subscribeOnce(ctx context.Context, kick func(string), gone chan<- []routes.Deleted) error {
	sub, cancel := context.WithCancel(ctx)
	defer cancel()
	routeCh := make(chan netlink.RouteUpdate, 64)
	linkCh := make(chan netlink.LinkUpdate, 64)
	addrCh := make(chan netlink.AddrUpdate, 64)
	onErr := func(err error) {
		if sub.Err() == nil { // closing the subscriptions is not an error
			a.log.Warn("netlink subscription error", "err", err)
		}
	}
	if err := errors.Join(
		netlink.RouteSubscribeWithOptions(routeCh, sub.Done(), netlink.RouteSubscribeOptions{ErrorCallback: onErr,
			ReceiveBufferSize: subscriptionBuffer, ReceiveBufferForceSize: true}),
		netlink.LinkSubscribeWithOptions(linkCh, sub.Done(), netlink.LinkSubscribeOptions{ErrorCallback: onErr,
			ReceiveBufferSize: subscriptionBuffer, ReceiveBufferForceSize: true}),
		netlink.AddrSubscribeWithOptions(addrCh, sub.Done(), netlink.AddrSubscribeOptions{ErrorCallback: onErr,
			ReceiveBufferSize: subscriptionBuffer, ReceiveBufferForceSize: true}),
	); err != nil {
		return err
	}
	var pending []routes.Deleted
	for {
		var handOver chan<- []routes.Deleted // nil (never ready) while nothing is pending
		if len(pending) > 0 {
			handOver = gone
		}
		select {
		case <-ctx.Done():
			return nil
		case handOver <- pending:
			pending = nil
		case u, ok := <-routeCh:
			if !ok {
				return errors.New("route subscription closed")
			}
			if u.Type != unixRTMDelRoute {
				continue
			}
			if d, ok := routes.DeletedOf(u.Route); ok {
				pending = append(pending, d)
			}
		case u, ok := <-linkCh:
			if !ok {
				return errors.New("link subscription closed")
			}
			if why := linkKick(u); why != "" {
				kick(why)
			}
		case u, ok := <-addrCh:
			if !ok {
				return errors.New("address subscription closed")
			}
			if why := addrKick(u); why != "" {
				kick(why)
			}
		}
	}
}

// linkKick says why a link event calls for a reconcile, or "" when it
// does not: events of a pod's host end, which the CNI plugin creates and
// deletes with every pod, are ignored. Such a link never carries a peer's
// subnet, so it cannot change which peers are on-link; without this filter
// every pod started or stopped cost a full reconcile (at 10 pods a second
// and 5,000 peers, a busy core).
func linkKick(u netlink.LinkUpdate) string {
	if u.Link != nil && u.Link.Type() == "veth" && cni.IsHostIfName(u.Link.Attrs().Name) {
		return ""
	}
	return "link change"
}

// addrKick says why an address event calls for a reconcile, or "" for a
// link-local address: the pods' host ends hold only the link-local gateways
// (and the kernel's fe80:: addresses), and a peer is never reached through
// a link-local address, so none of them changes which peers are on-link.
func addrKick(u netlink.AddrUpdate) string {
	if u.LinkAddress.IP.IsLinkLocalUnicast() {
		return ""
	}
	return "address change"
}

// routesGone decides on kindnet routes seen deleted: it returns why a
// reconcile is due when one of them is a route the last reconcile wanted
// in place (someone else removed it, so it is repaired at once), and ""
// when all of them are the last reconcile's own deletions.
func (a *Agent) routesGone(gone []routes.Deleted) string {
	for _, d := range gone {
		if a.lastRoutes.Wanted(d) {
			// The info line is the reconcile's "route repaired", once.
			a.log.Debug("wanted kindnet route deleted; reconciling to repair it", "reconciler", "routes", "cidr", d.Dst.String())
			return "kindnet route removed: " + d.Dst.String()
		}
	}
	return ""
}

// watchdogTicker ticks at half the systemd watchdog interval, or never.
func watchdogTicker() *time.Ticker {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil || d <= 0 {
		t := time.NewTicker(time.Hour)
		t.Stop()
		return t
	}
	return time.NewTicker(d / 2)
}

func hostHasIPv6() bool {
	_, err := os.Stat("/proc/sys/net/ipv6/conf/all/forwarding")
	return err == nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
