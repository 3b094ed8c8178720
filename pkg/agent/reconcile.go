package agent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/pkg/cluster"
	"github.com/kindnet-dev/kindnet/pkg/hostnet"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// reconcile validates the current view against the host and converges
// every piece. A failing reconciler is recorded and retried on the next
// run; it never stops the others.
func (a *Agent) reconcile(ctx context.Context, why string) {
	snap, err := a.snapshot()
	if err != nil {
		a.log.Error("cannot read the host's addresses; skipping this run", "err", err)
		return
	}
	a.logPeers(snap)
	var failed bool
	var routeRes routes.Result
	if a.haveView {
		start := time.Now()
		res, err := a.routes.Reconcile(ctx, &snap)
		routeRes = res
		a.logChanges("routes", res.Changes, err)
		a.setRun(run("routes", start, len(res.Changes), err))
		failed = failed || err != nil

		start = time.Now()
		mres, err := a.masq.Reconcile(ctx, &snap)
		changes := 0
		if mres.Changed {
			changes = 1
			a.log.Info("masquerade table written", "reconciler", "masquerade", "table", a.cfg.Masquerade.Table, "enabled", a.cfg.Masquerade.Enabled)
		}
		a.logChanges("masquerade", nil, err)
		a.setRun(run("masquerade", start, changes, err))
		a.store.Update(func(r *status.Record) { recordMasq(&r.Masquerade, mres) })
		failed = failed || err != nil
	}

	start := time.Now()
	cres, err := a.cni.Reconcile(ctx, &snap)
	if cres.Written {
		a.log.Info("CNI config written", "reconciler", "cni", "path", cres.Path, "mtu", cres.MTU, "podCIDRs", strs(snap.Self.PodCIDRs))
	}
	a.logChanges("cni", nil, err)
	a.setRun(run("cni", start, btoi(cres.Written), err))
	a.store.Update(func(r *status.Record) { recordCNI(&r.CNI, cres) })
	failed = failed || err != nil

	a.store.Update(func(r *status.Record) { recordSnapshot(r, snap, routeRes, a.haveView) })
	if a.haveView {
		a.logPeerStates(snap, routeRes)
	}
	a.reportNetworkReady(failed)
	if !failed && a.haveView && a.viewOrigin != "cache" {
		if changed, err := a.cache.Save(a.view); err != nil {
			a.log.Error("cannot save the cache", "path", a.cache.Path, "err", err)
		} else if changed {
			a.log.Debug("cache saved", "path", a.cache.Path)
		}
	}
	a.prev = &snap
	a.publishStatus()
	a.log.Debug("reconciled", "why", why, "summary", a.lastStatus)
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
func (a *Agent) snapshot() (cluster.Snapshot, error) {
	facts, err := hostnet.Read(a.nl)
	if err != nil {
		return cluster.Snapshot{}, err
	}
	v := a.view
	v.Self.Name = a.cfg.NodeName
	return cluster.Validate(v, cluster.Policy{
		ClusterCIDRs: a.cfg.ClusterPrefixes(),
		SelfPodCIDRs: a.cfg.PodPrefixes(),
		HostAddrs:    facts.Addrs,
		HostSubnets:  facts.Subnets,
		Protected:    slices.Concat(facts.Gateways, a.sourceProtected()),
		Previous:     a.prev,
	}), nil
}

// logPeers logs each rejection and each state change once, not on every run.
func (a *Agent) logPeers(snap cluster.Snapshot) {
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
// story.
func (a *Agent) logPeerStates(snap cluster.Snapshot, rr routes.Result) {
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
			a.log.Info("peer "+st.State, args...)
		}
	}
	for name := range a.peerStates {
		if _, still := now[name]; !still {
			a.log.Info("peer no longer routed", "peer", name, "reconciler", "routes")
		}
	}
	a.peerStates = now
}

func (a *Agent) logChanges(reconciler string, changes []string, err error) {
	for _, c := range changes {
		a.log.Info(c, "reconciler", reconciler)
	}
	if err != nil {
		a.log.Error("reconcile failed; will retry", "reconciler", reconciler, "err", err)
	}
}

// watchNetlink kicks a reconcile when a kindnet route disappears (someone
// ran `ip route del`), or when links or addresses change (a peer may have
// become on-link or off-link). A subscription that breaks is renewed; the
// periodic resync covers the gap.
func (a *Agent) watchNetlink(ctx context.Context, kicks chan<- string) {
	kick := func(why string) {
		select {
		case kicks <- why:
		default: // a kick is already pending
		}
	}
	for ctx.Err() == nil {
		if err := a.subscribeOnce(ctx, kick); err != nil {
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
// subscriptions ends.
func (a *Agent) subscribeOnce(ctx context.Context, kick func(string)) error {
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
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-routeCh:
			if !ok {
				return errors.New("route subscription closed")
			}
			if u.Type == unixRTMDelRoute && u.Protocol == routes.Protocol {
				kick("kindnet route removed: " + u.Dst.String())
			}
		case _, ok := <-linkCh:
			if !ok {
				return errors.New("link subscription closed")
			}
			kick("link change")
		case _, ok := <-addrCh:
			if !ok {
				return errors.New("address subscription closed")
			}
			kick("address change")
		}
	}
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
