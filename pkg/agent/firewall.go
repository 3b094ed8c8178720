package agent

import (
	"net/netip"
	"time"

	"github.com/google/nftables"

	"github.com/kindnet-dev/kindnet/pkg/cni"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/firewall"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// maxFirewallRanges bounds the pod ranges probed when no clusterCIDRs are
// configured (each node's podCIDR is then a range of its own).
const maxFirewallRanges = 8

// checkFirewalls reads the ruleset (never writes it) and records which
// other programs' forward chains drop pod traffic. Run at start and on
// each resync: a firewall rarely changes, and reading a large ruleset on
// every Node event is not worth it.
func (a *Agent) checkFirewalls(snap model.Snapshot) {
	ranges := snap.ClusterCIDRs
	if len(ranges) == 0 {
		ranges = snap.AllPodCIDRs()
	}
	ranges = ranges[:min(len(ranges), maxFirewallRanges)]
	fw := status.Firewall{Checked: time.Now()}
	conn, err := nftables.New()
	if err == nil {
		var probs []firewall.Problem
		probs, err = firewall.Detect(conn, firewall.Options{PodRanges: ranges, PodIface: a.podIface(), Uplink: a.uplink(snap)})
		_ = conn.CloseLasting()
		for _, p := range probs {
			fw.Drops = append(fw.Drops, status.FirewallDrop{Owner: p.Owner, Table: p.Table, Chain: p.Chain, What: p.What, Fix: p.Fix})
			a.log.Warn("another firewall drops forwarded pod traffic", "owner", p.Owner, "table", p.Table, "chain", p.Chain, "what", p.What, "fix", p.Fix)
		}
	}
	if err != nil {
		fw.Error = err.Error()
		a.log.Warn("cannot read the nftables ruleset to look for firewalls that drop pod traffic", "err", err)
	}
	a.store.Update(func(r *status.Record) { r.Firewall = fw })
}

// podIface is the name the host side of a pod's interface has, as
// iifname/oifname rules see it: the bridge, or a ptp veth ("kn" and 12 hex
// digits, see package cni).
func (a *Agent) podIface() string {
	if a.cfg.CNI.Plugin == config.PluginBridge {
		return cni.DefaultBridge
	}
	return "kn000000000000"
}

// uplink is the interface the route to the first peer leaves by, or ""
// when there is no peer to ask about.
func (a *Agent) uplink(snap model.Snapshot) string {
	for _, p := range snap.Peers {
		for _, addr := range p.Addrs {
			rs, err := a.nl.RouteGet(netip.Addr.AsSlice(addr))
			if err != nil || len(rs) == 0 {
				continue
			}
			if l, err := a.nl.LinkByIndex(rs[0].LinkIndex); err == nil {
				return l.Attrs().Name
			}
		}
	}
	return ""
}
