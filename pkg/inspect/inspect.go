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
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/nftutil"
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
	mode := rec.CNI.Plugin
	if mode == "" {
		mode = cfg.CNI.Plugin
	}
	rec.IPAM = IPAMUsage(IPAMDir(cfg), cniconf.NetworkName, rec.Node.PodCIDRs, mode)
	return rec
}

func sourceName(cfg *config.Loaded) string {
	if cfg.NodesFile != "" {
		return "nodes file"
	}
	return "kubernetes"
}

func readCache(cfg *config.Loaded, h *status.Host) *model.View {
	c := &cache.File{Path: cfg.CachePath(), Node: cfg.NodeName}
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
	// Routes, links and addresses only: a handle of every family would
	// also open XFRM and NETFILTER sockets it never uses (and which
	// qemu-user refuses, so foreign builds could not be tested).
	nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
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
func peersFromCache(v *model.View, rts []status.HostRoute) []status.Peer {
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
	c, err := nftutil.Open(netnsFd)
	if err != nil {
		return nil, err
	}
	// nft list tables inet
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
	// kindnet's own plugin names the wiring in "mode"; the reference
	// plugins are named by their type (ptp, bridge).
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
			Mode string `json:"mode"`
			MTU  int    `json:"mtu"`
		} `json:"plugins"`
	}
	if json.Unmarshal(data, &list) == nil && len(list.Plugins) > 0 {
		p := list.Plugins[0]
		c.Plugin, c.MTU = p.Type, p.MTU
		if p.Mode != "" {
			c.Plugin = p.Mode
		}
	}
	return c
}

// kindnetStateFile is the state of kindnet's own IPAM store (pkg/ipam of
// the CNI plugin): one JSON document, replaced whole by rename, so it can
// be read without its lock.
const kindnetStateFile = "allocations.json"

// IPAMUsage counts the addresses allocated in each of podCIDRs, from the
// IPAM store of network under dir (dir/<network>). Two layouts are read:
//
//   - kindnet's own IPAM: allocations.json, {"version": 1, "allocations":
//     [{"ips": [...]}, ...]}; the gateway is reserved only in bridge mode
//     (ptp uses a link-local gateway);
//   - host-local's (the reference plugins): one file per allocated
//     address, named by the address; the first address is the gateway.
//
// mode is the CNI wiring mode ("ptp" or "bridge").
func IPAMUsage(dir, network string, podCIDRs []string, mode string) status.IPAM {
	store := filepath.Join(dir, network)
	u := status.IPAM{Dir: store}
	addrs, gateway, err := readStore(store, mode)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		u.Note = "no IPAM store at " + store + " yet (no pod has been given an address)"
		return u
	case err != nil:
		u.Note = err.Error()
		return u
	}
	u.Available = true
	for _, s := range podCIDRs {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			continue
		}
		r := status.IPAMRange{CIDR: p.String(), Capacity: Capacity(p, gateway)}
		for _, a := range addrs {
			if p.Contains(a) {
				r.Used++
			}
		}
		u.Ranges = append(u.Ranges, r)
	}
	return u
}

// readStore returns the allocated addresses of a store and whether the
// store reserves a gateway address in each range.
func readStore(store, mode string) ([]netip.Addr, bool, error) {
	data, err := os.ReadFile(filepath.Join(store, kindnetStateFile))
	if err == nil {
		var st struct {
			Version     int `json:"version"`
			Allocations []struct {
				IPs []netip.Addr `json:"ips"`
			} `json:"allocations"`
		}
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, false, fmt.Errorf("cannot read the IPAM state %s: %v", filepath.Join(store, kindnetStateFile), err)
		}
		if st.Version != 1 {
			return nil, false, fmt.Errorf("IPAM state %s has version %d; this kindnet reads version 1", filepath.Join(store, kindnetStateFile), st.Version)
		}
		var addrs []netip.Addr
		for _, a := range st.Allocations {
			addrs = append(addrs, a.IPs...)
		}
		return addrs, mode == config.PluginBridge, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("cannot read the IPAM state: %v", err)
	}
	entries, err := os.ReadDir(store)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, false, err
		}
		return nil, false, fmt.Errorf("cannot read the IPAM store: %v", err)
	}
	var addrs []netip.Addr
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Name()); err == nil && e.Type().IsRegular() {
			addrs = append(addrs, a)
		}
	}
	return addrs, true, nil
}

// Capacity is the number of pod addresses in a range: all of it but the
// network address, the IPv4 broadcast address and, when gateway is true,
// the gateway (the first address after the network address). It saturates
// at 2^64-1.
func Capacity(p netip.Prefix, gateway bool) uint64 {
	reserved := uint64(1)
	if p.Addr().Is4() {
		reserved++
	}
	if gateway {
		reserved++
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits > 64 {
		return math.MaxUint64
	}
	if hostBits == 64 {
		return math.MaxUint64 - (reserved - 1) // 2^64 - reserved
	}
	n := uint64(1) << hostBits
	if n <= reserved {
		return 0
	}
	return n - reserved
}
