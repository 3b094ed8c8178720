package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The VXLAN overlay is what flannel's default backend would build on the
// same nodes: it exists so that benchmarks can compare kindnet's direct
// routing with an overlay on one machine, in one run. It uses its own pod
// ranges, outside the cluster ranges the agents route, so the two never
// share a route, and its pods are wired by kindnet's own plugin like
// kindnet's pods: only the path between nodes differs.
var (
	OverlayCIDR4 = netip.MustParsePrefix("10.245.0.0/16")
	OverlayCIDR6 = netip.MustParsePrefix("fd00:10:245::/56")
)

// Flannel's defaults: VNI 1 on UDP port 8472, MTU of the node link minus
// the encapsulation (50 bytes over IPv4, 70 over IPv6), one device per
// underlay family.
const (
	overlayVNI  = "1"
	overlayPort = "8472"
	overlayMTU4 = 1450
	overlayMTU6 = 1430
	overlayDev4 = "flannel.1"
	overlayDev6 = "flannel-v6.1"
)

// Overlay is a VXLAN overlay built across a lab's nodes.
type Overlay struct {
	l    *Lab
	Pods []*Pod // overlay pods; not in Node.Pods, so lab checks ignore them
}

// OverlaySpec returns the overlay pod ranges of node i (1-based) and the
// MAC addresses of its two VXLAN devices.
func OverlaySpec(i int) (c4, c6 netip.Prefix, mac4, mac6 string) {
	c4 = netip.MustParsePrefix(fmt.Sprintf("10.245.%d.0/24", i))
	c6 = netip.MustParsePrefix(fmt.Sprintf("fd00:10:245:%x::/64", i))
	return c4, c6, fmt.Sprintf("02:fa:00:00:00:%02x", i), fmt.Sprintf("02:fa:00:00:01:%02x", i)
}

// VXLANSupported says whether the kernel can create VXLAN devices, by
// creating one inside a throwaway namespace of the lab. It returns the
// kernel's answer when it cannot.
func (l *Lab) VXLANSupported() error {
	ns := l.ID + "-vxprobe"
	if err := addNS(ns); err != nil {
		return err
	}
	defer func() { _ = ip("netns", "del", ns) }()
	return ip("-n", ns, "link", "add", "vxprobe", "type", "vxlan", "id", overlayVNI, "dstport", overlayPort, "local", "127.0.0.1", "dev", "lo")
}

// AddVXLANOverlay builds, in every node namespace, the devices, forwarding
// entries and routes flannel's VXLAN backend would: for every other node,
// a permanent neighbour for its gateway address, an fdb entry sending that
// MAC to the node's address, and a route to its overlay range via the
// VXLAN device. Everything lives in the lab's namespaces and goes with Down.
func (l *Lab) AddVXLANOverlay() (*Overlay, error) {
	for i, n := range l.Nodes {
		if err := l.overlayDevices(i+1, n); err != nil {
			return nil, fmt.Errorf("overlay on %s: %w", n.Name, err)
		}
	}
	for i, n := range l.Nodes {
		for j, peer := range l.Nodes {
			if i == j {
				continue
			}
			if err := overlayPeer(n, j+1, peer); err != nil {
				return nil, fmt.Errorf("overlay on %s towards %s: %w", n.Name, peer.Name, err)
			}
		}
		if err := writeOverlayConflist(i+1, n); err != nil {
			return nil, err
		}
	}
	l.Opts.Log("lab %s: VXLAN overlay (VNI %s, UDP %s) across %d nodes", l.ID, overlayVNI, overlayPort, len(l.Nodes))
	return &Overlay{l: l}, nil
}

func (l *Lab) overlayDevices(i int, n *Node) error {
	c4, c6, mac4, mac6 := OverlaySpec(i)
	return script(
		[]string{"-n", n.NS, "link", "add", overlayDev4, "address", mac4, "type", "vxlan", "id", overlayVNI,
			"local", n.IPv4.String(), "dev", "eth0", "dstport", overlayPort, "nolearning"},
		[]string{"-n", n.NS, "link", "set", overlayDev4, "mtu", fmt.Sprint(overlayMTU4), "up"},
		// flannel puts the range's network address on the device.
		[]string{"-n", n.NS, "addr", "add", c4.Addr().String() + "/32", "dev", overlayDev4},
		[]string{"-n", n.NS, "link", "add", overlayDev6, "address", mac6, "type", "vxlan", "id", overlayVNI,
			"local", n.IPv6.String(), "dev", "eth0", "dstport", overlayPort, "nolearning"},
		[]string{"-n", n.NS, "link", "set", overlayDev6, "mtu", fmt.Sprint(overlayMTU6), "up"},
		[]string{"-n", n.NS, "addr", "add", c6.Addr().String() + "/128", "dev", overlayDev6, "nodad"},
	)
}

func overlayPeer(n *Node, j int, peer *Node) error {
	c4, c6, mac4, mac6 := OverlaySpec(j)
	for _, fdb := range [][]string{
		{"-n", n.NS, "fdb", "append", mac4, "dev", overlayDev4, "dst", peer.IPv4.String()},
		{"-n", n.NS, "fdb", "append", mac6, "dev", overlayDev6, "dst", peer.IPv6.String()},
	} {
		if out, err := exec.Command("bridge", fdb...).CombinedOutput(); err != nil {
			return fmt.Errorf("bridge %s: %v: %s", strings.Join(fdb, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return script(
		[]string{"-n", n.NS, "neigh", "replace", c4.Addr().String(), "lladdr", mac4, "dev", overlayDev4, "nud", "permanent"},
		[]string{"-n", n.NS, "route", "replace", c4.String(), "via", c4.Addr().String(), "dev", overlayDev4, "onlink"},
		[]string{"-n", n.NS, "-6", "neigh", "replace", c6.Addr().String(), "lladdr", mac6, "dev", overlayDev6, "nud", "permanent"},
		[]string{"-n", n.NS, "-6", "route", "replace", c6.String(), "via", c6.Addr().String(), "dev", overlayDev6, "onlink"},
	)
}

// overlayConfPath is the conflist of node n's overlay pods.
func overlayConfPath(n *Node) string { return filepath.Join(n.Dir, "overlay", "10-overlay.conflist") }

// writeOverlayConflist writes the conflist of the overlay's pods: kindnet's
// own plugin in ptp mode, as for kindnet's pods, on the node's overlay
// ranges with flannel's pod MTU (flannel's CNI plugin would use a bridge;
// the same plugin keeps the pod side of both paths identical).
func writeOverlayConflist(i int, n *Node) error {
	c4, c6, _, _ := OverlaySpec(i)
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "overlay",
		"plugins": []any{map[string]any{
			"type": "kindnet", "mode": "ptp", "mtu": overlayMTU4,
			"ranges":  []string{c4.String(), c6.String()},
			"ipamDir": filepath.Join(n.Dir, "overlay", "ipam"),
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(overlayConfPath(n)), 0o700); err != nil {
		return err
	}
	return os.WriteFile(overlayConfPath(n), b, 0o600)
}

// AddPod creates a pod on node n wired into the overlay's ranges.
func (o *Overlay) AddPod(ctx context.Context, n *Node, name string) (*Pod, error) {
	p, err := o.l.wirePod(ctx, n, name, overlayConfPath(n), nil)
	if err != nil {
		return nil, err
	}
	o.Pods = append(o.Pods, p)
	o.l.Opts.Log("lab %s: overlay pod %s on %s: %s %s", o.l.ID, p.Name, n.Name, p.IPv4, p.IPv6)
	return p, nil
}
