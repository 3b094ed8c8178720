// Package inspect reads what kindnet has put on this host without asking the
// agent: its routes (route protocol kindnet), its nftables tables (family
// inet, named kindnet*), its CNI config file, the cache of the last cluster
// view and the IPAM store's usage. `kindnet status` uses it when the agent
// does not answer; the agent uses the IPAM and CNI readers for its record.
//
// It only reads: it never adds, changes or deletes a route, a rule or a file.
package inspect

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/pkg/cluster"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// IPAMDir is where the CNI config tells IPAM to keep its allocations.
func IPAMDir(cfg *config.Loaded) string { return filepath.Join(cfg.RunDir, "ipam") }

// Host builds a record from the host alone, for when the agent is down:
// agentErr says why the agent could not be asked. Facts that cannot be read
// are listed in Host.Problems; the rest is still reported.
func Host(cfg *config.Loaded, agentErr string) status.Record {
	rec := status.Record{
		SchemaVersion: status.SchemaVersion,
		Agent:         status.Agent{Socket: cfg.SocketPath(), Error: agentErr},
		Node:          status.Node{Name: cfg.NodeName, PodCIDRs: slices.Clone(cfg.PodCIDRs)},
		Source:        status.Source{Name: sourceName(cfg)},
		Masquerade:    status.Masq{Enabled: cfg.Masquerade.Enabled, Table: cfg.Masquerade.Table},
		CNI:           CNIFile(cfg.CNIConfPath()),
		Host:          &status.Host{Routes: []status.HostRoute{}, NftTables: []string{}},
	}
	h := rec.Host
	view := readCache(cfg, h)
	if view != nil {
		rec.Source.ViewFrom = "cache"
		if len(rec.Node.PodCIDRs) == 0 {
			rec.Node.PodCIDRs = slices.Clone(view.Self.PodCIDRs)
		}
	}
	if rts, err := hostRoutes(); err != nil {
		h.Problems = append(h.Problems, err.Error())
	} else {
		h.Routes = rts
	}
	rec.Routes.Installed = len(h.Routes)
	if view != nil {
		rec.Peers = peersFromCache(view, h.Routes)
	}
	if tables, err := NftTables(0); err != nil {
		h.Problems = append(h.Problems, err.Error())
	} else {
		h.NftTables = tables
		rec.Masquerade.Present = slices.Contains(tables, cfg.Masquerade.Table)
	}
	rec.IPAM = IPAMUsage(IPAMDir(cfg), cniconf.NetworkName, rec.Node.PodCIDRs)
	return rec
}

func sourceName(cfg *config.Loaded) string {
	if cfg.NodesFile != "" {
		return "nodes file"
	}
	return "kubernetes"
}

func readCache(cfg *config.Loaded, h *status.Host) *cluster.View {
	c := &cluster.Cache{Path: cfg.CachePath(), Node: cfg.NodeName}
	h.Cache.Path = c.Path
	v, err := c.Load()
	if err != nil {
		h.Cache.Present, h.Cache.Error = true, err.Error()
		return nil
	}
	if v == nil {
		return nil
	}
	h.Cache.Present, h.Cache.Peers = true, len(v.Peers)
	if st, err := os.Stat(c.Path); err == nil {
		h.Cache.Written = st.ModTime()
	}
	return v
}

func hostRoutes() ([]status.HostRoute, error) {
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("open netlink: %w", err)
	}
	defer nl.Close()
	list, err := routes.List(nl)
	if err != nil {
		return nil, fmt.Errorf("list kindnet routes: %w", err)
	}
	out := make([]status.HostRoute, 0, len(list))
	for _, rt := range list {
		hr := status.HostRoute{Dst: rt.Dst.String(), Via: rt.Gw.String()}
		if l, err := nl.LinkByIndex(rt.LinkIndex); err == nil {
			hr.Dev = l.Attrs().Name
		}
		out = append(out, hr)
	}
	return out, nil
}

// peersFromCache lists the cached peers: routed when each podCIDR has a
// kindnet route via one of the peer's addresses, unknown otherwise (the
// agent is not there to say why).
func peersFromCache(v *cluster.View, rts []status.HostRoute) []status.Peer {
	via := map[string]string{}
	for _, r := range rts {
		via[canonPrefix(r.Dst)] = r.Via
	}
	out := make([]status.Peer, 0, len(v.Peers))
	for _, n := range v.Peers {
		p := status.Peer{Name: n.Name, State: status.PeerRouted, Addresses: n.Addresses, PodCIDRs: n.PodCIDRs}
		var missing []string
		for _, c := range n.PodCIDRs {
			gw, ok := via[canonPrefix(c)]
			if !ok || !slices.Contains(n.Addresses, gw) {
				missing = append(missing, c)
			}
		}
		switch {
		case len(n.PodCIDRs) == 0:
			p.State, p.Reason = status.PeerUnknown, "no podCIDR in the cache"
		case len(missing) > 0:
			p.State, p.Reason = status.PeerUnknown, "no kindnet route via its address for "+strings.Join(missing, ", ")
		}
		out = append(out, p)
	}
	return out
}

func canonPrefix(s string) string {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked().String()
	}
	return s
}

// NftTables lists the inet tables whose name starts with "kindnet", in the
// namespace netnsFd (0: the caller's). Other tables are not looked into.
func NftTables(netnsFd int) ([]string, error) {
	var opts []nftables.ConnOption
	if netnsFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	out := []string{}
	for _, t := range tables {
		if strings.HasPrefix(t.Name, "kindnet") {
			out = append(out, t.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// CNIFile describes the conflist at path: present, its hash, when it was
// written, and the plugin type and MTU it configures.
func CNIFile(path string) status.CNI {
	c := status.CNI{Path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		return c
	}
	sum := sha256.Sum256(data)
	c.Present, c.Hash = true, hex.EncodeToString(sum[:])
	if st, err := os.Stat(path); err == nil {
		c.Written = st.ModTime()
	}
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
			MTU  int    `json:"mtu"`
		} `json:"plugins"`
	}
	if json.Unmarshal(data, &list) == nil && len(list.Plugins) > 0 {
		c.Plugin, c.MTU = list.Plugins[0].Type, list.Plugins[0].MTU
	}
	return c
}

// IPAMUsage counts the addresses allocated in each of podCIDRs, from the
// IPAM store of network under dir. The store layout read is one file per
// allocated address, named by the address, in dir/<network> (the layout of
// the host-local IPAM the conflist currently uses); other files there
// (locks, last-reserved markers) are ignored.
func IPAMUsage(dir, network string, podCIDRs []string) status.IPAM {
	store := filepath.Join(dir, network)
	u := status.IPAM{Dir: store}
	entries, err := os.ReadDir(store)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		u.Note = "no IPAM store at " + store + " yet (no pod has been given an address)"
		return u
	case err != nil:
		u.Note = "cannot read the IPAM store: " + err.Error()
		return u
	}
	var addrs []netip.Addr
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Name()); err == nil && e.Type().IsRegular() {
			addrs = append(addrs, a)
		}
	}
	u.Available = true
	for _, s := range podCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		r := status.IPAMRange{CIDR: p.String(), Capacity: Capacity(p)}
		for _, a := range addrs {
			if p.Contains(a) {
				r.Used++
			}
		}
		u.Ranges = append(u.Ranges, r)
	}
	return u
}

// Capacity is the number of pod addresses in a range: all of it but the
// network address and the gateway (the first address), and for IPv4 the
// broadcast address. It saturates at 2^64-1.
func Capacity(p netip.Prefix) uint64 {
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits >= 64 {
		if hostBits == 64 {
			return math.MaxUint64 - 1 // 2^64 - 2
		}
		return math.MaxUint64
	}
	n := uint64(1) << hostBits
	reserved := uint64(2)
	if p.Addr().Is4() {
		reserved = 3
	}
	if n <= reserved {
		return 0
	}
	return n - reserved
}
