// Package cluster runs a real Kubernetes cluster on one machine, for
// trying kindnet under a real kubelet, scheduler, kube-proxy and CoreDNS
// and for the upstream network e2e tests: a control plane (etcd,
// kube-apiserver, kube-controller-manager allocating dual-stack podCIDRs,
// kube-scheduler) in one network namespace, which is also a node tainted
// NoSchedule as kubeadm makes it (the API server must reach pods: its
// proxy, webhooks and the e2e tests use that), and worker nodes, each in a
// network, mount and UTS namespace of its own. Every node runs what a node
// runs: the kindnet agent as its package installs it, containerd 2,
// kubelet and kube-proxy (nftables). All hosts hang off a bridge in a "switch"
// namespace, like the lab's (test/lab).
//
// It never changes the machine's own network, mounts or sysctls: links
// are created inside its namespaces; each node's mounts live in that
// node's mount namespace (the host sees only the files pinning the node's
// namespaces); the sysctls kubelet insists on are presented to it by
// files mounted over /proc/sys inside the node. Everything it makes is
// named by the cluster's unique ID (namespaces, cgroups, its directory),
// its state is saved before anything is built, and Down removes it all —
// processes by recorded PID (checked against their start time), by
// namespace and by cgroup — also after a crashed or killed Up. It never
// touches anything it did not make.
package cluster

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// DefaultStateRoot is where clusters keep their state unless
// KINDNET_CLUSTER_DIR (or Options.StateRoot) says otherwise: on disk, not
// tmpfs, since images and container layers go there.
const DefaultStateRoot = "/var/tmp/kindnet-cluster"

// StateRoot is KINDNET_CLUSTER_DIR, or DefaultStateRoot.
func StateRoot() string {
	if d := os.Getenv("KINDNET_CLUSTER_DIR"); d != "" {
		return d
	}
	return DefaultStateRoot
}

// Addressing, the same in every cluster (each lives in its own
// namespaces): the lab's switch subnets, pod and Service ranges as
// kubeadm's defaults plus IPv6.
var (
	ClusterCIDRs = []netip.Prefix{lab.ClusterCIDR4, lab.ClusterCIDR6}
	ServiceCIDRs = []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16"), netip.MustParsePrefix("fd00:10:96::/112")}
	// DNSIP is CoreDNS's Service ClusterIP (kubeadm's).
	DNSIP = netip.MustParseAddr("10.96.0.10")
)

// Cluster is a cluster's saved state: Dir/cluster.json. It is written
// before anything is built and after every step, so that Down in another
// process finds what to remove.
type Cluster struct {
	ID     string `json:"id"`
	Dir    string `json:"dir"`
	Switch string `json:"switch"`
	CP     Host   `json:"controlPlane"`
	// ControlPlaneNode is the node in the control plane's namespaces
	// (kubelet registers it with the control-plane taint).
	ControlPlaneNode *Node `json:"controlPlaneNode,omitempty"`
	// Nodes are the worker nodes.
	Nodes []*Node `json:"nodes"`
	// Procs are the processes started, in start order.
	Procs []Proc `json:"procs"`
	// Ready is set once Up finished.
	Ready bool `json:"ready"`
}

// Host is the control-plane namespace.
type Host struct {
	NS   string     `json:"ns"`
	IPv4 netip.Addr `json:"ipv4"`
	IPv6 netip.Addr `json:"ipv6"`
}

// Node is a node: its namespaces, addresses, directory and cgroup.
type Node struct {
	Name string     `json:"name"`
	NS   string     `json:"ns"`
	IPv4 netip.Addr `json:"ipv4"`
	IPv6 netip.Addr `json:"ipv6"`
	Dir  string     `json:"dir"`
	// CgroupRoot is kubelet's cgroupRoot, made in every hierarchy.
	CgroupRoot string `json:"cgroupRoot"`
	// ControlPlane marks the control-plane node: its network namespace is
	// the control plane's, and kubelet registers it tainted NoSchedule.
	ControlPlane bool `json:"controlPlane,omitempty"`
}

// ControlPlaneNodeName is the control-plane node's name (and hostname).
const ControlPlaneNodeName = "control-plane"

// ControlPlaneTaint is the taint kubeadm puts on a control-plane node;
// only pods that tolerate it (CoreDNS, say) run there.
const ControlPlaneTaint = "node-role.kubernetes.io/control-plane"

// AllNodes are the control-plane node (when the cluster has one) and
// the workers.
func (c *Cluster) AllNodes() []*Node {
	if c.ControlPlaneNode == nil {
		return c.Nodes
	}
	return append([]*Node{c.ControlPlaneNode}, c.Nodes...)
}

// Proc is a process the cluster started.
type Proc struct {
	Name string `json:"name"`
	Node string `json:"node,omitempty"`
	PID  int    `json:"pid"`
	// Start is its start time (kubetest.StartTime): a PID reused by
	// another process since is never signalled.
	Start uint64 `json:"start"`
	Log   string `json:"log"`
}

var clusterID = regexp.MustCompile(`^kc[0-9a-f]{4}$`)

// newID returns "kc" + 4 hex digits: names built from it ("kc1a2b-node1")
// stay within the kernel's 15 characters for links and namespaces.
func newID() string {
	b := make([]byte, 2)
	_, _ = rand.Read(b)
	return "kc" + hex.EncodeToString(b)
}

// MountNS and UTSNS are the files pinning the node's mount and UTS
// namespaces.
func (n *Node) MountNS() string { return filepath.Join(n.Dir, "mntns") }

// UTSNS pins the node's UTS namespace (its hostname is the node name).
func (n *Node) UTSNS() string { return filepath.Join(n.Dir, "utsns") }

// LogPath is the log of a node program (the node's /var/log/NAME.log).
func (n *Node) LogPath(name string) string { return filepath.Join(n.Dir, "log", name+".log") }

// Save writes the state atomically.
func (c *Cluster) Save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return kubetest.WriteFileAtomic(filepath.Join(c.Dir, "cluster.json"), b)
}

// Load reads the cluster with that ID under root. A cluster whose Up was
// killed before it saved anything is returned as just its ID and
// directory: Down still finds its namespaces and cgroups by the ID.
func Load(root, id string) (*Cluster, error) {
	if !clusterID.MatchString(id) {
		return nil, fmt.Errorf("%q is not a cluster ID (kc and 4 hex digits)", id)
	}
	dir := filepath.Join(root, id)
	b, err := os.ReadFile(filepath.Join(dir, "cluster.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return &Cluster{ID: id, Dir: dir}, nil
	}
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	if err := json.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, "cluster.json"), err)
	}
	if c.ID != id || c.Dir != dir {
		return nil, fmt.Errorf("%s names cluster %s in %s, not %s", filepath.Join(dir, "cluster.json"), c.ID, c.Dir, id)
	}
	return c, nil
}

// List returns the IDs of the clusters under root.
func List(root string) ([]string, error) {
	entries, err := os.ReadDir(root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, e := range entries {
		if e.IsDir() && clusterID.MatchString(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids, nil
}

// Node returns the node with that name (the control-plane node's too).
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.AllNodes() {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// AdminKubeconfig is the cluster-admin's kubeconfig; its server address
// is reachable from the control-plane namespace (and the nodes).
func (c *Cluster) AdminKubeconfig() string { return filepath.Join(c.Dir, "admin.conf") }

// KubectlHint is the command line that runs kubectl against the cluster.
func (c *Cluster) KubectlHint(kubectl string) string {
	return fmt.Sprintf("ip netns exec %s %s --kubeconfig=%s", c.CP.NS, kubectl, c.AdminKubeconfig())
}

// checkStateRoot refuses a state directory that a node's own mounts
// would hide from the programs inside it (image archives are read there).
func checkStateRoot(root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("state directory %q must be an absolute path", root)
	}
	for _, hidden := range []string{"/run", "/var/run", "/var/log", "/var/lib", "/etc", "/opt", "/usr/bin", "/proc", "/sys", "/dev"} {
		if root == hidden || strings.HasPrefix(root, hidden+"/") {
			return fmt.Errorf("state directory %s is under %s, which every node mounts its own over: choose another (KINDNET_CLUSTER_DIR)", root, hidden)
		}
	}
	return nil
}
