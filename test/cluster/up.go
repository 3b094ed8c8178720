package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/test/cluster/images"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// Options shape a cluster.
type Options struct {
	// Nodes is the number of nodes (default 3).
	Nodes int
	// StateRoot holds one directory per cluster (default StateRoot()).
	StateRoot string
	// RepoRoot is the kindnet source tree: the packaging files (unit,
	// config, environment) are installed on the nodes from there.
	RepoRoot string
	Bins     Binaries
	// Images are imported into every node's containerd; they must include
	// PauseImage, and CoreDNSImage for the DNS add-on.
	Images []Image
	// BuildImages, when set, writes more images into dir (inside the
	// cluster's directory, so Down removes them) before the nodes start.
	BuildImages func(dir string) ([]Image, error) `json:"-"`
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
}

// Image is an OCI archive for `ctr images import` and the name it holds.
type Image struct {
	Name string
	Path string
}

// The names the node's runtime and the add-ons use for their images
// (package images builds them).
const (
	PauseImage   = images.PauseRef
	CoreDNSImage = images.CoreDNSRef
	AgnhostImage = images.AgnhostRef
)

// BuildImages writes the images of package images (pause, agnhost,
// CoreDNS and the other e2e images) into dir.
func BuildImages(ctx context.Context, repo, dir string, log func(string, ...any)) ([]Image, error) {
	archives, err := images.Build(ctx, images.Options{Out: dir, Root: repo, Log: log})
	if err != nil {
		return nil, err
	}
	out := make([]Image, len(archives))
	for i, a := range archives {
		out[i] = Image{Name: a.Ref, Path: a.Path}
	}
	return out, nil
}

// Up builds a cluster and leaves it running. On failure it tears down what
// it built, unless keep is set (to look at a broken cluster; Down removes
// it later).
func Up(ctx context.Context, o Options, keep bool) (c *Cluster, err error) {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.Nodes < 1 || o.Nodes > 50 {
		return nil, fmt.Errorf("nodes must be between 1 and 50, not %d", o.Nodes)
	}
	if o.StateRoot == "" {
		o.StateRoot = StateRoot()
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	if err := checkStateRoot(o.StateRoot); err != nil {
		return nil, err
	}
	if err := o.Bins.check(); err != nil {
		return nil, err
	}
	id := newID()
	c = &Cluster{ID: id, Dir: filepath.Join(o.StateRoot, id), Switch: id + "-sw"}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return nil, err
	}
	if err := c.Save(); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && !keep {
			if derr := c.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("tear down the failed cluster: %w", derr))
			}
		}
	}()
	start := time.Now()
	if o.BuildImages != nil {
		dir := filepath.Join(c.Dir, "images")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return c, err
		}
		more, err := o.BuildImages(dir)
		if err != nil {
			return c, fmt.Errorf("build images: %w", err)
		}
		o.Images = append(o.Images, more...)
	}
	u := &upper{c: c, o: o}
	o.Log("cluster %s: building namespaces in %s", id, c.Dir)
	if err := u.topology(); err != nil {
		return c, err
	}
	if err := u.controlPlane(ctx); err != nil {
		return c, err
	}
	for _, n := range c.AllNodes() {
		if err := u.startNode(ctx, n); err != nil {
			return c, fmt.Errorf("node %s: %w", n.Name, err)
		}
	}
	if err := u.waitNodesReady(ctx, 4*time.Minute); err != nil {
		return c, err
	}
	if err := u.coreDNS(ctx); err != nil {
		return c, err
	}
	if err := u.labelControlPlane(ctx); err != nil {
		return c, err
	}
	c.Ready = true
	o.Log("cluster %s: %d nodes Ready, CoreDNS serving, in %s", id, len(c.Nodes), time.Since(start).Round(time.Second))
	return c, c.Save()
}

// upper carries what Up needs between its steps.
type upper struct {
	c   *Cluster
	o   Options
	api *kubetest.Server
	// onAgentReady, when set, is called once the agent said READY=1.
	onAgentReady func()
}

// record notes a started process in the saved state at once.
func (u *upper) record(name, node string, pid int, log string) error {
	u.c.Procs = append(u.c.Procs, Proc{Name: name, Node: node, PID: pid, Start: kubetest.StartTime(pid), Log: log})
	return u.c.Save()
}

// topology: the switch, the control-plane namespace, and each node's
// namespace with an IPv4 and an IPv6 address on the switch and default
// routes to the control plane's addresses (which forwards nothing: the
// Service ranges need a route on the node, the Internet is unreachable).
// The control-plane node lives in the control plane's network namespace,
// with mount and UTS namespaces of its own like every node.
func (u *upper) topology() error {
	c := u.c
	c.CP = Host{NS: c.ID + "-cp", IPv4: lab.APIIPv4, IPv6: lab.APIIPv6}
	c.ControlPlaneNode = &Node{Name: ControlPlaneNodeName, NS: c.CP.NS, IPv4: c.CP.IPv4, IPv6: c.CP.IPv6,
		Dir: filepath.Join(c.Dir, ControlPlaneNodeName), CgroupRoot: "/" + c.ID + "-" + ControlPlaneNodeName, ControlPlane: true}
	for i := 1; i <= u.o.Nodes; i++ {
		v4, v6, _, _ := lab.NodeSpec(i)
		name := fmt.Sprintf("node%d", i)
		c.Nodes = append(c.Nodes, &Node{Name: name, NS: c.ID + "-" + name, IPv4: v4, IPv6: v6,
			Dir: filepath.Join(c.Dir, name), CgroupRoot: "/" + c.ID + "-" + name})
	}
	// Saved before anything exists, so that Down knows every name.
	if err := c.Save(); err != nil {
		return err
	}
	if err := lab.NewSwitch(c.Switch); err != nil {
		return err
	}
	if err := u.plugHost(c.CP.NS, "cp", c.CP.IPv4, c.CP.IPv6, false); err != nil {
		return err
	}
	for _, n := range c.Nodes {
		if err := u.plugHost(n.NS, n.Name, n.IPv4, n.IPv6, true); err != nil {
			return err
		}
	}
	return nil
}

func (u *upper) plugHost(ns, port string, v4, v6 netip.Addr, defaultRoute bool) error {
	if err := lab.AddNS(ns); err != nil {
		return err
	}
	if err := lab.Plug(u.c.Switch, ns, port); err != nil {
		return err
	}
	cmds := [][]string{
		{"-n", ns, "addr", "add", v4.String() + "/24", "dev", "eth0"},
		{"-n", ns, "addr", "add", v6.String() + "/64", "dev", "eth0", "nodad"},
	}
	if defaultRoute {
		cmds = append(cmds,
			[]string{"-n", ns, "route", "add", "default", "via", u.c.CP.IPv4.String()},
			[]string{"-n", ns, "-6", "route", "add", "default", "via", u.c.CP.IPv6.String()})
	}
	return lab.IPScript(cmds...)
}
