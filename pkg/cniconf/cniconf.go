// Package cniconf renders and writes the CNI network configuration list the
// container runtime reads to wire pods on this node: which plugin, this
// node's pod ranges, the MTU and where IPAM keeps its state.
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
	"github.com/kindnet-dev/kindnet/pkg/cluster"
	"github.com/kindnet-dev/kindnet/pkg/hostnet"
)

// NetworkName is the CNI network name in the conflist.
const NetworkName = "kindnet"

// DefaultMTU is used when MTU is automatic and the host has no default route.
const DefaultMTU = 1500

// Params is everything the conflist depends on.
type Params struct {
	Mode       string         // "ptp" or "bridge"
	PodCIDRs   []netip.Prefix // this node's ranges, one per family
	MTU        int
	CNIVersion string
	IPAMDir    string // where IPAM keeps its allocations
}

// Render produces the conflist. Until kindnet's own CNI plugin exists it
// uses the reference plugins (ptp or bridge, host-local IPAM, portmap);
// plugins() is the one place that changes when it does.
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

// plugins is the chain of the conflist: the main plugin with its IPAM, then
// portmap for hostPort.
func plugins(p Params) []any {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, c := range p.PodCIDRs {
		ranges = append(ranges, []map[string]string{{"subnet": c.String()}})
		dst := "0.0.0.0/0"
		if c.Addr().Is6() {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	ipam := map[string]any{"type": "host-local", "ranges": ranges, "routes": routes, "dataDir": p.IPAMDir}
	main := map[string]any{"type": "ptp", "mtu": p.MTU, "ipMasq": false, "ipam": ipam}
	if p.Mode == "bridge" {
		main = map[string]any{"type": "bridge", "bridge": "kindnet0", "isGateway": true, "hairpinMode": true,
			"mtu": p.MTU, "ipMasq": false, "ipam": ipam}
	}
	portmap := map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}}
	return []any{main, portmap}
}

// Reconciler keeps the conflist in step with this node's pod ranges.
type Reconciler struct {
	Path       string
	Mode       string
	MTU        int // 0: the MTU of the default route's link
	CNIVersion string
	IPAMDir    string
	// Handle reads the default route for the automatic MTU.
	Handle *netlink.Handle
}

// Result reports one reconcile.
type Result struct {
	Path    string
	Written bool      // the file changed in this run
	Present bool      // the file holds the current config
	Hash    string    // sha256 of the content, "" when absent
	ModTime time.Time // when the file was last written
	MTU     int
	Waiting string // why no config was written (this node's podCIDR unknown)
}

// Reconcile writes the conflist for the snapshot's own podCIDRs. When they
// are not known yet it writes nothing and leaves an existing file alone:
// pods already running keep working, new ones wait.
func (r *Reconciler) Reconcile(_ context.Context, snap *cluster.Snapshot) (Result, error) {
	res := Result{Path: r.Path}
	if len(snap.Self.PodCIDRs) == 0 {
		res.Waiting = "this node's podCIDR is not known yet"
		if snap.SelfProblem != "" {
			res.Waiting = snap.SelfProblem
		}
		res.fillFromDisk()
		return res, nil
	}
	mtu, err := r.mtu()
	if err != nil {
		return res, err
	}
	res.MTU = mtu
	data, err := Render(Params{Mode: r.Mode, PodCIDRs: snap.Self.PodCIDRs, MTU: mtu, CNIVersion: r.CNIVersion, IPAMDir: r.IPAMDir})
	if err != nil {
		return res, err
	}
	if err := os.MkdirAll(filepath.Dir(r.Path), 0o755); err != nil {
		return res, fmt.Errorf("create CNI config dir: %w", err)
	}
	if res.Written, err = atomicfile.Write(r.Path, data, 0o644); err != nil {
		return res, err
	}
	res.Present = true
	res.fillFromDisk()
	return res, nil
}

func (res *Result) fillFromDisk() {
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
