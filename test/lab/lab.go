// Package lab builds a kindnet cluster out of network namespaces on one
// machine: a "switch" namespace holding a bridge, node namespaces plugged
// into it with IPv4 and IPv6 addresses, an "external" host that stands for
// the world outside the cluster, pods created inside each node through the
// CNI config its agent wrote, and one `kindnet agent` per node running
// inside its namespace with its own paths.
//
// It never changes the machine's own network namespace: every link is
// created directly inside a lab namespace, and every name carries the lab's
// unique ID so parallel and crashed runs never collide. Down removes
// everything Up made; processes are stopped by PID, never by name.
package lab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StateRoot holds one directory per running lab (tmpfs: gone at reboot,
// like the namespaces themselves).
const StateRoot = "/run/kindnet-lab"

// Options shape a lab.
type Options struct {
	Nodes       int    // number of nodes (default 3)
	PodsPerNode int    // pods created by Up on each node (default 2)
	Kindnet     string // path of the kindnet binary
	LabTool     string // path of the kindnet-lab binary (CNI driver, whoami)
	CNIPlugin   string // "ptp" or "bridge"
	// CNIBinDir holds the plugins the agent-written conflist names: an
	// executable "kindnet" (kindnet's own plugin). Default: cni/ next to
	// Kindnet when it holds the lean plugin (make build writes
	// bin/cni/kindnet), else the directory of Kindnet (the agent binary
	// also answers as the plugin).
	CNIBinDir string
	// AgentArgs are extra flags for every agent.
	AgentArgs []string
	// API adds the "api" host on the lab switch (APIIPv4, APIIPv6) for a
	// Kubernetes API server, and makes every agent follow the API with the
	// kubeconfig at Node.KubeconfigPath() instead of the shared nodes file.
	API bool
	// BeforeAgents runs once the namespaces exist and before any agent
	// starts: e.g. to start an API server on the api host and create the
	// Nodes the agents follow.
	BeforeAgents func(*Lab) error `json:"-"`
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any) `json:"-"`
}

// Lab is a running lab. Its JSON form is saved in Dir/lab.json so that
// `kindnet-lab down` in another process can tear it down.
type Lab struct {
	ID     string  `json:"id"`
	Dir    string  `json:"dir"`
	Switch string  `json:"switch"`
	Ext    Host    `json:"ext"`
	Nodes  []*Node `json:"nodes"`
	Opts   Options `json:"options"`
	// NodesFile is the shared static nodes file all agents follow.
	NodesFile string `json:"nodesFile"`
	// API is the host for a Kubernetes API server (Options.API), else empty.
	API Host `json:"api,omitzero"`
}

// Host is a namespace with addresses (the external host).
type Host struct {
	NS   string     `json:"ns"`
	IPv4 netip.Addr `json:"ipv4"`
	IPv6 netip.Addr `json:"ipv6"`
	// World are addresses on the external host's loopback standing for
	// destinations on the internet (outside every cluster range).
	World []netip.Addr `json:"world"`
}

// Node is a lab node.
type Node struct {
	Name     string       `json:"name"` // Kubernetes node name
	NS       string       `json:"ns"`
	IPv4     netip.Addr   `json:"ipv4"`
	IPv6     netip.Addr   `json:"ipv6"`
	PodCIDR4 netip.Prefix `json:"podCIDR4"`
	PodCIDR6 netip.Prefix `json:"podCIDR6"`
	Dir      string       `json:"dir"`
	AgentPID int          `json:"agentPID"`
	Pods     []*Pod       `json:"pods"`
	// AgentEnv is added to the agent's environment (a benchmark's
	// NOTIFY_SOCKET, say).
	AgentEnv []string `json:"-"`
	agent    *exec.Cmd
	exited   chan struct{}
}

// Pod is a pod namespace wired by the CNI plugin.
type Pod struct {
	Name string     `json:"name"`
	NS   string     `json:"ns"`
	Node string     `json:"node"`
	IPv4 netip.Addr `json:"ipv4"`
	IPv6 netip.Addr `json:"ipv6"`
	// Ports are the pod's hostPorts, passed on ADD and DEL.
	Ports []PortMapping `json:"ports,omitempty"`
}

// Addressing of every lab (names differ per lab, addresses do not: each
// lab lives in its own namespaces).
var (
	ClusterCIDR4 = netip.MustParsePrefix("10.244.0.0/16")
	ClusterCIDR6 = netip.MustParsePrefix("fd00:10:244::/56")
	extIPv4      = netip.MustParseAddr("192.168.100.1")
	extIPv6      = netip.MustParseAddr("fd00:100::1")
	// APIIPv4 and APIIPv6 are the api host's addresses (Options.API).
	APIIPv4 = netip.MustParseAddr("192.168.100.2")
	APIIPv6 = netip.MustParseAddr("fd00:100::2")
	// WorldIPv4 and WorldIPv6 stand for a host on the internet.
	WorldIPv4 = netip.MustParseAddr("198.51.100.1")
	WorldIPv6 = netip.MustParseAddr("2001:db8:ffff::1")
)

func (o *Options) defaults() {
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.CNIPlugin == "" {
		o.CNIPlugin = "ptp"
	}
	if o.CNIBinDir == "" {
		o.CNIBinDir = filepath.Dir(o.Kindnet)
		if st, err := os.Stat(filepath.Join(o.CNIBinDir, "cni", "kindnet")); err == nil && st.Mode().IsRegular() {
			o.CNIBinDir = filepath.Join(o.CNIBinDir, "cni")
		}
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
}

// NodeSpec returns the addressing of node i (1-based).
func NodeSpec(i int) (v4, v6 netip.Addr, c4, c6 netip.Prefix) {
	v4 = netip.MustParseAddr(fmt.Sprintf("192.168.100.%d", 10+i))
	v6 = netip.MustParseAddr(fmt.Sprintf("fd00:100::%x", 0x10+i))
	c4 = netip.MustParsePrefix(fmt.Sprintf("10.244.%d.0/24", i))
	c6 = netip.MustParsePrefix(fmt.Sprintf("fd00:10:244:%x::/64", i))
	return
}

// newID returns a short unique lab ID ("kl" + 4 hex digits): namespace and
// link names built from it stay within the kernel's 15-character limit.
func newID() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return "kl" + hex.EncodeToString(b)
}

// Up builds the topology, writes the nodes file, starts one agent per node,
// waits for each agent's CNI config, and creates the pods. On any failure it
// removes what it built.
func Up(ctx context.Context, o Options) (l *Lab, err error) {
	o.defaults()
	for _, p := range []string{o.Kindnet, o.LabTool} {
		if _, err := os.Stat(p); err != nil {
			return nil, fmt.Errorf("lab needs the binary %q: %w (run make build)", p, err)
		}
	}
	plugin := filepath.Join(o.CNIBinDir, "kindnet")
	if st, err := os.Stat(plugin); err != nil || st.Mode()&0o111 == 0 {
		return nil, fmt.Errorf("the conflist names plugin \"kindnet\": %s must be the kindnet binary, executable (cni bin dir %s)", plugin, o.CNIBinDir)
	}
	id := newID()
	l = &Lab{ID: id, Dir: filepath.Join(StateRoot, id), Switch: id + "-sw", Opts: o}
	l.NodesFile = filepath.Join(l.Dir, "nodes.yaml")
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.Down()
			l = nil
		}
	}()
	if err := l.Save(); err != nil { // saved again, complete, at the end
		return l, err
	}
	o.Log("lab %s: building namespaces", id)
	if err := l.buildTopology(); err != nil {
		return l, err
	}
	if err := l.WriteNodesFile(nil); err != nil {
		return l, err
	}
	if o.BeforeAgents != nil {
		if err := o.BeforeAgents(l); err != nil {
			return l, err
		}
	}
	for _, n := range l.Nodes {
		if err := l.StartAgent(n); err != nil {
			return l, err
		}
	}
	for _, n := range l.Nodes {
		if err := l.WaitCNIConfig(ctx, n); err != nil {
			return l, err
		}
	}
	for _, n := range l.Nodes {
		for j := 1; j <= o.PodsPerNode; j++ {
			if _, err := l.AddPod(ctx, n, fmt.Sprintf("p%d", j)); err != nil {
				return l, err
			}
		}
	}
	return l, l.Save()
}

// Bare reserves a lab ID and its state directory and builds nothing: a
// benchmark or test builds its own namespaces with AddNS and nodes by hand,
// and Down removes them like those of a full lab.
func Bare(o Options) (*Lab, error) {
	o.defaults()
	id := newID()
	l := &Lab{ID: id, Dir: filepath.Join(StateRoot, id), Switch: id + "-sw", Opts: o}
	if err := os.MkdirAll(l.Dir, 0o700); err != nil {
		return nil, err
	}
	return l, l.Save()
}

// AddNS creates the namespace <lab ID>-<suffix> with loopback up and
// returns its name; Down deletes it.
func (l *Lab) AddNS(suffix string) (string, error) {
	name := l.ID + "-" + suffix
	return name, addNS(name)
}

// Save writes the lab's state for other processes (down, status).
func (l *Lab) Save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(l.Dir, "lab.json"), b, 0o600)
}

// Load reads a saved lab.
func Load(dir string) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		return nil, err
	}
	l := &Lab{}
	return l, json.Unmarshal(b, l)
}

// ForID returns the lab with that ID for tearing it down: its saved state,
// or, for a lab whose builder was killed before it saved any (a test or
// benchmark killed outright while building), a lab of just its ID and
// directory, which Down still removes completely: it finds the namespaces
// by their "<ID>-" prefix and stops the processes inside them.
func ForID(id string) (*Lab, error) {
	if !labID.MatchString(id) {
		return nil, fmt.Errorf("%q is not a lab ID (kl and hex digits)", id)
	}
	dir := filepath.Join(StateRoot, id)
	l, err := Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return &Lab{ID: id, Dir: dir}, nil
	}
	return l, err
}

var labID = regexp.MustCompile(`^kl[0-9a-f]+$`)

// Down stops the agents (by PID), deletes every namespace of the lab and
// its directory. It is safe to call on a half-built lab and more than once.
func (l *Lab) Down() error {
	var errs []error
	for _, n := range l.Nodes {
		if err := l.StopAgent(n, syscall.SIGTERM); err != nil {
			errs = append(errs, err)
		}
	}
	// Pods first, then nodes, switch and external host: deleting a
	// namespace deletes the links inside it.
	names, _ := os.ReadDir("/run/netns")
	for _, e := range names {
		if strings.HasPrefix(e.Name(), l.ID+"-") {
			KillNSProcesses(e.Name())
			if out, err := exec.Command("ip", "netns", "del", e.Name()).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", e.Name(), err, out))
			}
		}
	}
	if l.Dir != "" && strings.HasPrefix(l.Dir, StateRoot+"/") {
		errs = append(errs, os.RemoveAll(l.Dir))
	}
	return errors.Join(errs...)
}

// KillNSProcesses stops every process still inside a lab namespace (helper
// servers, an agent that outlived its stop), by the PIDs `ip netns pids`
// reports for that namespace: a namespace deleted under a running process
// would keep that process alive in a network nobody can reach.
func KillNSProcesses(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// Node returns the node with that Kubernetes name.
func (l *Lab) Node(name string) *Node {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// AllPods lists the pods of every node.
func (l *Lab) AllPods() []*Pod {
	var out []*Pod
	for _, n := range l.Nodes {
		out = append(out, n.Pods...)
	}
	return out
}

// waitFor polls cond every 20ms until it holds or the timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			if lastErr != nil {
				return fmt.Errorf("timed out after %s waiting for %s: %w", timeout, what, lastErr)
			}
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
