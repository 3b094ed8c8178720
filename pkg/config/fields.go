package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// field describes one setting once, so the YAML key, the KINDNET_* variable,
// the flag and the help text can never drift apart.
type field struct {
	key   string // YAML path, e.g. "masquerade.noMasqueradeCIDRs"
	usage string
	ref   func(c *Config) any // pointer to the value inside a Config
}

// fields lists every setting, in the order of the example config file.
var fields = []field{
	{"nodeName", "this node's name in Kubernetes (default: the hostname, lowercased)", func(c *Config) any { return &c.NodeName }},
	{"kubeconfig", "kubeconfig used to follow the Kubernetes API", func(c *Config) any { return &c.Kubeconfig }},
	{"allowExternalIP", "route to a node via its ExternalIP when it has no InternalIP of that family", func(c *Config) any { return &c.AllowExternalIP }},
	{"nodesFile", "static file of Node objects (kubectl get nodes -o yaml) to follow instead of the API", func(c *Config) any { return &c.NodesFile }},
	{"clusterCIDRs", "cluster-wide pod ranges, comma-separated (every podCIDR must lie inside)", func(c *Config) any { return &c.ClusterCIDRs }},
	{"podCIDRs", "this node's pod ranges, comma-separated, at most one per family (default: from its Node object)", func(c *Config) any { return &c.PodCIDRs }},
	{"masquerade.enabled", "masquerade traffic from pods to destinations outside the cluster", func(c *Config) any { return &c.Masquerade.Enabled }},
	{"masquerade.noMasqueradeCIDRs", "extra destinations that keep the pod source address, comma-separated", func(c *Config) any { return &c.Masquerade.NoMasqueradeCIDRs }},
	{"masquerade.table", "name of kindnet's nftables table (family inet)", func(c *Config) any { return &c.Masquerade.Table }},
	{"cni.plugin", "how pods are wired: ptp or bridge", func(c *Config) any { return &c.CNI.Plugin }},
	{"cni.confDir", "directory the container runtime reads CNI configs from", func(c *Config) any { return &c.CNI.ConfDir }},
	{"cni.confName", "file name of kindnet's CNI config in cni.confDir", func(c *Config) any { return &c.CNI.ConfName }},
	{"cni.binDir", "directory holding the CNI plugin binaries", func(c *Config) any { return &c.CNI.BinDir }},
	{"cni.mtu", "MTU of pod interfaces; 0 = the MTU of the default route's link", func(c *Config) any { return &c.CNI.MTU }},
	{"cni.specVersion", "cniVersion of the CNI config: 0.3.0, 0.3.1, 0.4.0, 1.0.0 or 1.1.0 (1.1.0 needs containerd 2.x or CRI-O 1.31+)", func(c *Config) any { return &c.CNI.SpecVersion }},
	{"cri.endpoint", "the container runtime's CRI socket (unix:///path), asked what it reports about the pod network; auto = the well-known containerd and CRI-O sockets; none = do not ask", func(c *Config) any { return &c.CRI.Endpoint }},
	{"stateDir", "directory for the cache of the last good cluster view", func(c *Config) any { return &c.StateDir }},
	{"runDir", "directory for runtime files such as the status socket", func(c *Config) any { return &c.RunDir }},
	{"metricsAddress", "host:port for /metrics, /healthz and /readyz; empty disables", func(c *Config) any { return &c.MetricsAddress }},
	{"resyncInterval", "how often the host is re-checked even when nothing changed", func(c *Config) any { return &c.ResyncInterval }},
	{"logLevel", "log verbosity: debug, info, warn or error", func(c *Config) any { return &c.LogLevel }},
}

// EnvName is the environment variable for a key: "cni.mtu" → KINDNET_CNI_MTU.
func (f field) EnvName() string { return "KINDNET_" + strings.ToUpper(snake(f.key, "_")) }

// FlagName is the command-line flag for a key: "cni.mtu" → --cni-mtu.
func (f field) FlagName() string { return snake(f.key, "-") }

// snake turns "masquerade.noMasqueradeCIDRs" into "masquerade<sep>no<sep>masquerade<sep>cidrs".
// A run of capitals is one word ("CIDRs" stays together).
func snake(key, sep string) string {
	var b strings.Builder
	prevLower := false
	for _, r := range key {
		switch {
		case r == '.':
			b.WriteString(sep)
			prevLower = false
			continue
		case unicode.IsUpper(r) && prevLower:
			b.WriteString(sep)
		}
		b.WriteRune(unicode.ToLower(r))
		prevLower = unicode.IsLower(r) || unicode.IsDigit(r)
	}
	return b.String()
}

// set parses a textual value (from env or a flag) into the field.
func (f field) set(c *Config, raw string) error {
	switch p := f.ref(c).(type) {
	case *string:
		*p = strings.TrimSpace(raw)
	case *[]string:
		*p = splitList(raw)
	case *bool:
		v, err := strconv.ParseBool(strings.TrimSpace(raw))
		if err != nil {
			return errors.New("not a boolean: expected true or false")
		}
		*p = v
	case *int:
		v, err := strconv.Atoi(strings.TrimSpace(raw))
		if err != nil {
			return errors.New("not a whole number")
		}
		*p = v
	case *Duration:
		v, err := time.ParseDuration(strings.TrimSpace(raw))
		if err != nil {
			return errors.New("not a duration: expected a value like 30s or 5m")
		}
		*p = Duration(v)
	default:
		panic(fmt.Sprintf("config: field %s has unsupported type %T", f.key, p))
	}
	return nil
}

// isBool reports whether the field is a boolean (a bare --flag means true).
func (f field) isBool(c *Config) bool {
	_, ok := f.ref(c).(*bool)
	return ok
}

// typeName names the kind of value for flag help ("int", "list", ...).
func (f field) typeName(c *Config) string {
	switch f.ref(c).(type) {
	case *bool:
		return "bool"
	case *[]string:
		return "list"
	case *int:
		return "int"
	case *Duration:
		return "duration"
	}
	return "string"
}

// get renders the field's current value as text (for help and `config show`).
func (f field) get(c *Config) string {
	switch p := f.ref(c).(type) {
	case *string:
		return *p
	case *[]string:
		return strings.Join(*p, ",")
	case *bool:
		return strconv.FormatBool(*p)
	case *int:
		return strconv.Itoa(*p)
	case *Duration:
		return p.Std().String()
	}
	return ""
}

func splitList(raw string) []string {
	var out []string
	for _, s := range strings.Split(raw, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func fieldByKey(key string) (field, bool) {
	for _, f := range fields {
		if f.key == key {
			return f, true
		}
	}
	return field{}, false
}

// Keys lists every config key, for help texts and docs.
func Keys() []string {
	out := make([]string, len(fields))
	for i, f := range fields {
		out[i] = f.key
	}
	return out
}
