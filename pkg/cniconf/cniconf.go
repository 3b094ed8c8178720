// Package cniconf renders and writes the CNI network configuration list the
// container runtime reads to wire pods on this node: kindnet's own plugin
// (pkg/cni, the binary cmd/kindnet-cni) with the wiring mode, this node's pod ranges,
// the MTU, where IPAM keeps its state and the hostPort table.
//
// It owns one file (cni.confDir/cni.confName, default
// /etc/cni/net.d/10-kindnet.conflist), written atomically and only when its
// bytes change. It never touches other files in the directory: other
// plugins' configs are the administrator's business.
package cniconf

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/pkg/atomicfile"
	"github.com/kindnet-dev/kindnet/pkg/hostnet"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// NetworkName is the CNI network name in the conflist.
const NetworkName = "kindnet"

// DefaultMTU is used when MTU is automatic and the host has no default route.
const DefaultMTU = 1500

// PluginType is the plugin binary the conflist names: the runtime runs
// <binDir>/kindnet, the lean plugin (cmd/kindnet-cni).
const PluginType = "kindnet"

// Params is everything the conflist depends on.
type Params struct {
	Mode          string         // "ptp" or "bridge"
	PodCIDRs      []netip.Prefix // this node's ranges, one per family
	MTU           int
	CNIVersion    string
	IPAMDir       string // where IPAM keeps its allocations
	HostPortTable string // nftables table of the hostPort rules
}

// Render produces the conflist: one plugin, kindnet's own, which does the
// wiring, IPAM and hostPorts (capability portMappings) itself.
func Render(p Params) ([]byte, error) {
	if len(p.PodCIDRs) == 0 {
		return nil, errors.New("no pod ranges for this node")
	}
	list := map[string]any{
		"cniVersion": p.CNIVersion,
		"name":       NetworkName,
		"plugins":    plugins(p),
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// plugins is the chain of the conflist: kindnet alone, for example
//
//	{"type": "kindnet", "mode": "ptp", "mtu": 1500,
//	 "ranges": ["10.244.1.0/24", "fd00:10:244:1::/64"],
//	 "ipamDir": "/run/kindnet/ipam", "hostPortTable": "kindnet_hostport",
//	 "capabilities": {"portMappings": true}}
func plugins(p Params) []any {
	ranges := make([]string, 0, len(p.PodCIDRs))
	for _, c := range p.PodCIDRs {
		ranges = append(ranges, c.String())
	}
	return []any{map[string]any{
		"type":          PluginType,
		"mode":          p.Mode,
		"mtu":           p.MTU,
		"ranges":        ranges,
		"ipamDir":       p.IPAMDir,
		"hostPortTable": p.HostPortTable,
		"capabilities":  map[string]bool{"portMappings": true},
	}}
}

// Reconciler keeps the conflist in step with this node's pod ranges.
type Reconciler struct {
	Path          string
	Mode          string
	MTU           int // 0: the MTU of the default route's link
	CNIVersion    string
	IPAMDir       string
	HostPortTable string
	// Handle reads the default route for the automatic MTU.
	Handle *netlink.Handle
	// BinDir is where the runtime looks for the plugin (cni.binDir): the
	// conflist is written only once <BinDir>/kindnet answers VERSION with
	// CNIVersion. "" skips the check.
	BinDir string

	probe pluginProbe
}

// Result reports one reconcile.
type Result struct {
	Path    string
	Written bool      // the file changed in this run
	Present bool      // the file holds the current config
	Hash    string    // sha256 of the content, "" when absent
	ModTime time.Time // when the file was last written
	MTU     int
	Waiting string // why no config was written (podCIDR unknown, plugin not installed)
}

// Reconcile writes the conflist for the snapshot's own podCIDRs. When they
// are not known yet, or the plugin binary in BinDir is not there or does not
// support CNIVersion, it writes nothing and leaves an existing file alone:
// pods already running keep working, new ones wait.
//
// Whatever happens, the result's Hash and ModTime describe the file on
// disk: a write that fails (a full disk) leaves the previous config in
// place and the runtime keeps using it, so status must show it there, with
// the error, not "no CNI config".
func (r *Reconciler) Reconcile(ctx context.Context, snap *model.Snapshot) (res Result, err error) {
	res = Result{Path: r.Path}
	defer res.fillFromDisk()
	if len(snap.Self.PodCIDRs) == 0 {
		res.Waiting = "this node's podCIDR is not known yet"
		if snap.SelfProblem != "" {
			res.Waiting = snap.SelfProblem
		}
		return res, nil
	}
	if res.Waiting = r.pluginWaiting(ctx); res.Waiting != "" {
		return res, nil
	}
	mtu, err := r.mtu()
	if err != nil {
		return res, err
	}
	data, err := Render(Params{Mode: r.Mode, PodCIDRs: snap.Self.PodCIDRs, MTU: mtu, CNIVersion: r.CNIVersion,
		IPAMDir: r.IPAMDir, HostPortTable: r.HostPortTable})
	if err != nil {
		return res, err
	}
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return res, fmt.Errorf("create CNI config dir: %w", err)
	}
	if res.Written, err = atomicfile.Write(r.Path, data, 0o644); err != nil {
		return res, err
	}
	// MTU is the file's: a config that could not be written does not
	// have the new one.
	res.Present, res.MTU = true, mtu
	return res, nil
}

func (res *Result) fillFromDisk() {
	res.Hash, res.ModTime = "", time.Time{}
	data, err := os.ReadFile(res.Path)
	if err != nil {
		return
	}
	sum := sha256.Sum256(data)
	res.Hash = hex.EncodeToString(sum[:])
	if st, err := os.Stat(res.Path); err == nil {
		res.ModTime = st.ModTime()
	}
}

func (r *Reconciler) mtu() (int, error) {
	if r.MTU > 0 {
		return r.MTU, nil
	}
	mtu, err := hostnet.DefaultRouteMTU(r.Handle)
	if err != nil {
		return 0, fmt.Errorf("detect MTU: %w", err)
	}
	if mtu == 0 {
		return DefaultMTU, nil
	}
	return mtu, nil
}

// Remove deletes the conflist; it reports whether there was one.
func Remove(path string) (bool, error) {
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}
