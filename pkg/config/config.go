// Package config owns kindnet's configuration: its fields and defaults, how
// the YAML file, KINDNET_* environment variables and command-line flags are
// layered (flags > env > file > defaults), and the validation that turns a bad
// value into an error naming the field, the value and what is expected.
//
// It never changes the host: loading and validating a config reads the
// config file, the hostname and the type of the nodes file (a FIFO there
// would hang the agent), and nothing else.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
)

// Default locations and values. Every one of them is a config field, so
// several agents can run side by side on one machine (that is how the lab
// runs three "nodes" on one host).
const (
	DefaultConfigFile     = "/etc/kindnet/config.yaml"
	DefaultKubeconfig     = "/etc/kubernetes/kubelet.conf"
	DefaultCNIConfDir     = "/etc/cni/net.d"
	DefaultCNIConfName    = "10-kindnet.conflist"
	DefaultCNIBinDir      = "/opt/cni/bin"
	DefaultStateDir       = "/var/lib/kindnet"
	DefaultRunDir         = "/run/kindnet"
	DefaultMetricsAddress = "127.0.0.1:19080"
	DefaultResyncInterval = time.Minute
	DefaultNftTable       = "kindnet"
	// DefaultCNISpecVersion is what most nodes' runtimes accept: containerd
	// 1.6 and 1.7 reject a conflist of version 1.1.0.
	DefaultCNISpecVersion = "1.0.0"

	PluginPTP    = "ptp"
	PluginBridge = "bridge"

	// CRIEndpointAuto (the default) looks for the runtime at the
	// well-known sockets, CRIWellKnownEndpoints, at every check: the
	// runtime may start after the agent.
	CRIEndpointAuto = "auto"
	// CRIEndpointNone turns the check of the runtime off (so does "").
	CRIEndpointNone = "none"
)

// CRIWellKnownEndpoints are the sockets cri.endpoint "auto" tries, in this
// order (the first that exists is asked): containerd's, then CRI-O's — the
// same defaults kubelet's --container-runtime-endpoint and crictl know.
var CRIWellKnownEndpoints = []string{
	"unix:///run/containerd/containerd.sock",
	"unix:///run/crio/crio.sock",
}

// maxSocketPath is the longest path a Unix socket address holds
// (sun_path is 108 bytes with the terminating NUL).
const maxSocketPath = 107

// Config is the whole configuration of the agent, as written in
// /etc/kindnet/config.yaml. Values are kept as the user wrote them; Validate
// checks them and the typed accessors (ClusterPrefixes, …) read them back.
type Config struct {
	// NodeName is this node's name as Kubernetes knows it. Default: the
	// hostname, lowercased, as kubelet does.
	NodeName string `json:"nodeName,omitempty"`
	// Kubeconfig is the kubeconfig used to follow the Kubernetes API.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	// AllowExternalIP lets kindnet route to a node via its ExternalIP when
	// the node has no InternalIP of that family.
	AllowExternalIP bool `json:"allowExternalIP,omitempty"`
	// NodesFile, when set, makes the agent follow a static file of Node
	// objects instead of the Kubernetes API.
	NodesFile string `json:"nodesFile,omitempty"`
	// ClusterCIDRs are the cluster-wide pod ranges (at most one per family
	// is typical, several are allowed). Every podCIDR must lie inside them.
	ClusterCIDRs []string `json:"clusterCIDRs,omitempty"`
	// PodCIDRs are this node's own pod ranges (at most one per family). When
	// empty they come from the node's Node object.
	PodCIDRs []string `json:"podCIDRs,omitempty"`

	Masquerade Masquerade `json:"masquerade"`
	CNI        CNI        `json:"cni"`
	CRI        CRI        `json:"cri"`

	// StateDir holds the cache of the last good cluster view.
	StateDir string `json:"stateDir,omitempty"`
	// RunDir holds runtime files (the status socket); it is cleared at boot.
	RunDir string `json:"runDir,omitempty"`
	// MetricsAddress is where /metrics, /healthz and /readyz are served.
	// Empty disables the listener.
	MetricsAddress string `json:"metricsAddress"`
	// ResyncInterval is how often the agent re-checks the host against the
	// desired state even when nothing changed.
	ResyncInterval Duration `json:"resyncInterval,omitempty"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `json:"logLevel,omitempty"`
}

// Masquerade configures source NAT of traffic leaving the cluster.
type Masquerade struct {
	Enabled bool `json:"enabled"`
	// NoMasqueradeCIDRs are extra destinations that keep the pod source
	// address (for example a VPC range that routes pod IPs natively).
	NoMasqueradeCIDRs []string `json:"noMasqueradeCIDRs,omitempty"`
	// Table is the name of the nftables table (family inet) kindnet owns.
	Table string `json:"table,omitempty"`
}

// CNI configures the CNI config file the agent writes for the runtime.
type CNI struct {
	// Plugin is the pod wiring mode: "ptp" (default) or "bridge".
	Plugin   string `json:"plugin,omitempty"`
	ConfDir  string `json:"confDir,omitempty"`
	ConfName string `json:"confName,omitempty"`
	BinDir   string `json:"binDir,omitempty"`
	// MTU of pod interfaces; 0 means the MTU of the default route's link.
	MTU int `json:"mtu"`
	// SpecVersion is the cniVersion of the conflist (one of
	// CNISpecVersions). 1.1.0 lets the runtime ask STATUS and GC.
	SpecVersion string `json:"specVersion,omitempty"`
}

// CRI says where the node's container runtime answers CRI, so the agent
// can show what the runtime reports about the pod network (its NetworkReady
// condition) next to its own view.
type CRI struct {
	// Endpoint is the runtime's CRI socket: "unix:///path" or an absolute
	// path; "auto" (the default) tries CRIWellKnownEndpoints; "none" or ""
	// turns the check off.
	Endpoint string `json:"endpoint"`
}

// CNISpecVersions are the CNI spec versions kindnet's plugin speaks.
var CNISpecVersions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// Defaults returns the configuration used for every field nobody set.
// NodeName is resolved from the hostname by Load, not here, so Defaults has
// no side effects.
func Defaults() Config {
	return Config{
		Kubeconfig: DefaultKubeconfig,
		Masquerade: Masquerade{Enabled: true, Table: DefaultNftTable},
		CNI: CNI{
			Plugin:   PluginPTP,
			ConfDir:  DefaultCNIConfDir,
			ConfName: DefaultCNIConfName,
			BinDir:   DefaultCNIBinDir,

			SpecVersion: DefaultCNISpecVersion,
		},
		CRI:            CRI{Endpoint: CRIEndpointAuto},
		StateDir:       DefaultStateDir,
		RunDir:         DefaultRunDir,
		MetricsAddress: DefaultMetricsAddress,
		ResyncInterval: Duration(DefaultResyncInterval),
		LogLevel:       "info",
	}
}

// Duration is a time.Duration written as "30s", "5m" in YAML.
type Duration time.Duration

// MarshalJSON writes the duration as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Duration(d).String() + `"`), nil
}

// UnmarshalJSON reads a Go duration string such as "90s".
func (d *Duration) UnmarshalJSON(b []byte) error {
	s := strings.Trim(string(b), `"`)
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration: expected a value like 30s or 5m", s)
	}
	*d = Duration(v)
	return nil
}

// Std returns the value as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// ClusterPrefixes returns ClusterCIDRs parsed. Call only after Validate.
func (c *Config) ClusterPrefixes() []netip.Prefix { return mustPrefixes(c.ClusterCIDRs) }

// PodPrefixes returns PodCIDRs parsed. Call only after Validate.
func (c *Config) PodPrefixes() []netip.Prefix { return mustPrefixes(c.PodCIDRs) }

// NoMasqueradePrefixes returns Masquerade.NoMasqueradeCIDRs parsed. Call only
// after Validate.
func (c *Config) NoMasqueradePrefixes() []netip.Prefix {
	return mustPrefixes(c.Masquerade.NoMasqueradeCIDRs)
}

// CNIConfPath is the full path of the conflist the agent writes.
func (c *Config) CNIConfPath() string {
	return strings.TrimRight(c.CNI.ConfDir, "/") + "/" + c.CNI.ConfName
}

// IPAMDir is where the CNI plugin keeps its address allocations: inside
// the run directory, so they vanish at reboot with the pods.
func (c *Config) IPAMDir() string { return strings.TrimRight(c.RunDir, "/") + "/ipam" }

// HostPortTable is the nftables table (family inet) of the CNI plugin's
// hostPort rules, named after the agent's own table.
func (c *Config) HostPortTable() string { return c.Masquerade.Table + "_hostport" }

// CachePath is the file holding the last good cluster view.
func (c *Config) CachePath() string { return strings.TrimRight(c.StateDir, "/") + "/cluster-view.json" }

// SocketPath is the agent's status socket.
func (c *Config) SocketPath() string { return strings.TrimRight(c.RunDir, "/") + "/kindnet.sock" }

// CRIEndpoints returns the CRI sockets to ask, as unix:// URLs, and
// whether they are candidates to look for (cri.endpoint "auto") rather than
// the one socket the user named. None when the check is off. Call only
// after Validate.
func (c *Config) CRIEndpoints() (endpoints []string, auto bool) {
	switch e := strings.TrimSpace(c.CRI.Endpoint); e {
	case "", CRIEndpointNone:
		return nil, false
	case CRIEndpointAuto:
		return append([]string(nil), CRIWellKnownEndpoints...), true
	default:
		p, err := criSocketPath(e)
		if err != nil {
			panic(fmt.Sprintf("config: cri.endpoint %q used before Validate: %v", e, err))
		}
		return []string{"unix://" + p}, false
	}
}

// criSocketPath is the socket path of a cri.endpoint that names one:
// "unix:///run/x.sock" or "/run/x.sock". kindnet asks only a local runtime,
// over a Unix socket, as kubelet does on Linux.
func criSocketPath(e string) (string, error) {
	p := e
	if rest, ok := strings.CutPrefix(e, "unix://"); ok {
		p = rest
	} else if strings.Contains(e, "://") {
		return "", fmt.Errorf("only Unix sockets are supported: expected unix:///path/to/socket")
	}
	switch {
	case !strings.HasPrefix(p, "/"):
		return "", fmt.Errorf("expected an absolute socket path, e.g. %s", CRIWellKnownEndpoints[0])
	case len(p) > maxSocketPath:
		return "", fmt.Errorf("a Unix socket path is at most %d bytes", maxSocketPath)
	}
	return p, nil
}

func mustPrefixes(ss []string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			panic(fmt.Sprintf("config: %q used before Validate: %v", s, err))
		}
		out = append(out, p)
	}
	return out
}

// defaultNodeName mirrors kubelet: the hostname, lowercased.
func defaultNodeName() string {
	h, err := os.Hostname()
	if err != nil {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(h))
}
