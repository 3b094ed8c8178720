package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/kindnet-dev/kindnet/pkg/hostport"
)

// Mode is how pods are wired to the node.
type Mode string

// The two modes.
const (
	// ModePTP gives each pod a veth pair routed by the host: /32 and /128
	// pod addresses behind a link-local gateway.
	ModePTP Mode = "ptp"
	// ModeBridge attaches every pod to one bridge holding the gateway
	// address of each range.
	ModeBridge Mode = "bridge"
)

// Defaults for fields the network config may leave out.
const (
	DefaultIPAMDir = "/run/kindnet/ipam"
	DefaultBridge  = "kindnet0"
)

// Supported lists the CNI spec versions the plugin speaks.
var Supported = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// rawConf is the plugin configuration as the runtime sends it on stdin.
//
//	{"cniVersion": "1.0.0", "name": "kindnet", "type": "kindnet",
//	 "mode": "ptp", "mtu": 1500, "ranges": ["10.244.1.0/24", "fd00:10:244:1::/64"],
//	 "ipamDir": "/run/kindnet/ipam", "hostPortTable": "kindnet_hostport",
//	 "capabilities": {"portMappings": true}}
type rawConf struct {
	types.PluginConf
	Mode          string   `json:"mode"`
	MTU           int      `json:"mtu"`
	Ranges        []string `json:"ranges"`
	IPAMDir       string   `json:"ipamDir"`
	Bridge        string   `json:"bridge"`
	HostPortTable string   `json:"hostPortTable"`
	// RuntimeConfig is kept raw: only ADD and CHECK use it, and a DEL must
	// succeed whatever it holds (see Config.ParseRuntimeConfig).
	RuntimeConfig json.RawMessage `json:"runtimeConfig"`
	// Raw, to tell a missing key (refuse to GC) from an empty list or null
	// (libcni's way of saying "no attachment is valid": GC everything).
	ValidAttachments json.RawMessage `json:"cni.dev/valid-attachments"`
	// Attachments is the key an earlier spec text used; libcni sends both.
	Attachments json.RawMessage `json:"cni.dev/attachments"`
}

// runtimeConfig is what the runtime passes for the capabilities the
// plugin declares (only portMappings).
type runtimeConfig struct {
	PortMappings []portMapping `json:"portMappings"`
}

type portMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP"`
}

// Config is a validated network configuration.
type Config struct {
	CNIVersion    string
	Network       string
	Mode          Mode
	MTU           int            // 0: the kernel's default
	Ranges        []netip.Prefix // at most one per family, IPv4 first
	IPAMDir       string
	Bridge        string
	HostPortTable string
	// PortMappings are the hostPorts of the attachment, set by
	// ParseRuntimeConfig (ADD and CHECK); Parse alone leaves them empty.
	PortMappings []hostport.Mapping
	// MentionsPortMappings says the runtime config names port mappings,
	// valid or not: DEL then removes hostPort rules even without an IPAM
	// record saying there are any.
	MentionsPortMappings bool
	runtimeConfig        json.RawMessage
	// PrevResult is the result of the previous ADD (CHECK, DEL) or of the
	// previous plugin in the chain; nil when the runtime sent none.
	PrevResult *types100.Result
	// ValidAttachments is GC's list of attachments to keep; ok is false
	// when the runtime sent no list at all.
	ValidAttachments   []types.GCAttachment
	HasValidAttachment bool
}

var (
	nftName = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)
)

// Parse decodes and validates the network configuration. Its errors carry
// the CNI error code the spec gives: 6 for what is not JSON, 1 for an
// unsupported cniVersion, 7 for a value that is wrong, each naming the
// field, the value and what is expected.
//
// The runtime config is not validated here: DEL, GC and STATUS must work
// whatever port mappings it holds (CNI spec: DEL is best effort, and a
// runtime repeats the ADD's runtime config on DEL even when ADD refused
// it). ADD and CHECK call ParseRuntimeConfig.
func Parse(data []byte) (*Config, *types.Error) {
	var raw rawConf
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, "cannot decode the network config: "+err.Error(), "")
	}
	if !slices.Contains(Supported, raw.CNIVersion) {
		return nil, types.NewError(types.ErrIncompatibleCNIVersion,
			fmt.Sprintf("cniVersion %q is not supported", raw.CNIVersion), "kindnet speaks "+strings.Join(Supported, ", "))
	}
	c := &Config{CNIVersion: raw.CNIVersion, Network: raw.Name}
	if raw.Name == "" || strings.ContainsAny(raw.Name, "/\x00") || raw.Name == "." || raw.Name == ".." {
		return nil, invalid("name", raw.Name, "a network name without '/', such as \"kindnet\"")
	}
	switch Mode(raw.Mode) {
	case "", ModePTP:
		c.Mode = ModePTP
	case ModeBridge:
		c.Mode = ModeBridge
	default:
		return nil, invalid("mode", raw.Mode, `"ptp" or "bridge"`)
	}
	ranges, err := parseRanges(raw.Ranges)
	if err != nil {
		return nil, err
	}
	c.Ranges = ranges
	if err := c.setMTU(raw.MTU); err != nil {
		return nil, err
	}
	if err := c.setPaths(raw); err != nil {
		return nil, err
	}
	c.runtimeConfig = raw.RuntimeConfig
	c.MentionsPortMappings = mentionsPortMappings(raw.RuntimeConfig)
	if raw.RawPrevResult != nil {
		if err := version.ParsePrevResult(&raw.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "cannot decode prevResult: "+err.Error(), "")
		}
		prev, perr := types100.NewResultFromResult(raw.PrevResult)
		if perr != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "cannot convert prevResult: "+perr.Error(), "")
		}
		c.PrevResult = prev
	}
	for _, list := range []json.RawMessage{raw.ValidAttachments, raw.Attachments} {
		if len(list) == 0 {
			continue
		}
		if err := json.Unmarshal(list, &c.ValidAttachments); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, "cannot decode cni.dev/valid-attachments: "+err.Error(), "")
		}
		c.HasValidAttachment = true
		break
	}
	return c, nil
}

// invalid is error 7 (invalid network config) naming the field.
func invalid(field string, value any, expected string) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig,
		fmt.Sprintf("invalid network config: %s %v", field, quote(value)), "expected "+expected)
}

func quote(v any) string {
	if s, ok := v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v)
}

// parseRanges checks the node's pod ranges: network addresses, at most one
// per family, large enough to hold a pod next to the reserved addresses.
func parseRanges(raw []string) ([]netip.Prefix, *types.Error) {
	if len(raw) == 0 {
		return nil, invalid("ranges", "[]", "this node's pod ranges, e.g. [\"10.244.1.0/24\", \"fd00:10:244:1::/64\"]")
	}
	var out []netip.Prefix
	for i, s := range raw {
		field := fmt.Sprintf("ranges[%d]", i)
		p, err := netip.ParsePrefix(s)
		switch {
		case err != nil:
			return nil, invalid(field, s, "a CIDR such as 10.244.1.0/24 or fd00:10:244:1::/64")
		case p.Addr().Is4In6() || p.Addr().Zone() != "":
			return nil, invalid(field, s, "a plain IPv4 or IPv6 range (no IPv4-mapped IPv6, no zone)")
		case p.Masked() != p:
			return nil, invalid(field, s, "a network address: "+p.Masked().String())
		case p.Addr().Is4() && p.Bits() > 30, p.Addr().Is6() && p.Bits() > 126:
			return nil, invalid(field, s, "a range with room for pods: at most /30 for IPv4, /126 for IPv6")
		}
		for _, q := range out {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, invalid(field, s, "at most one range per IP family ("+q.String()+" is already given)")
			}
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if a.Addr().Is4() == b.Addr().Is4() {
			return 0
		}
		if a.Addr().Is4() {
			return -1
		}
		return 1
	})
	return out, nil
}

func (c *Config) hasIPv6() bool {
	return slices.ContainsFunc(c.Ranges, func(p netip.Prefix) bool { return p.Addr().Is6() })
}

func (c *Config) setMTU(mtu int) *types.Error {
	switch {
	case mtu == 0:
	case mtu < 576 || mtu > 65535:
		return invalid("mtu", mtu, "0 (kernel default) or a value between 576 and 65535")
	case mtu < 1280 && c.hasIPv6():
		return invalid("mtu", mtu, "at least 1280: the network has an IPv6 range")
	}
	c.MTU = mtu
	return nil
}

func (c *Config) setPaths(raw rawConf) *types.Error {
	c.IPAMDir = DefaultIPAMDir
	if raw.IPAMDir != "" {
		if !filepath.IsAbs(raw.IPAMDir) {
			return invalid("ipamDir", raw.IPAMDir, "an absolute path such as "+DefaultIPAMDir)
		}
		c.IPAMDir = filepath.Clean(raw.IPAMDir)
	}
	c.Bridge = DefaultBridge
	if raw.Bridge != "" {
		if err := validIfName(raw.Bridge); err != "" {
			return invalid("bridge", raw.Bridge, "an interface name: "+err)
		}
		c.Bridge = raw.Bridge
	}
	c.HostPortTable = hostport.DefaultTable
	if raw.HostPortTable != "" {
		if !nftName.MatchString(raw.HostPortTable) || len(raw.HostPortTable) > 255 {
			return invalid("hostPortTable", raw.HostPortTable, "an nftables name (letters, digits, _), e.g. "+hostport.DefaultTable)
		}
		c.HostPortTable = raw.HostPortTable
	}
	return nil
}

// validIfName says what is wrong with an interface name, or "".
func validIfName(name string) string {
	switch {
	case name == "" || name == "." || name == "..":
		return "not empty, . or .."
	case len(name) > 15:
		return "at most 15 characters"
	case strings.ContainsFunc(name, func(r rune) bool { return r == '/' || r == ':' || unicode.IsSpace(r) || r == 0 }):
		return "no '/', ':' or white space"
	}
	return ""
}

// ParseRuntimeConfig decodes and validates the runtime config (the port
// mappings) into c.PortMappings: error 6 when it is not JSON of the right
// shape, 7 naming the mapping and field that is wrong.
func (c *Config) ParseRuntimeConfig() *types.Error {
	if len(c.runtimeConfig) == 0 {
		return nil
	}
	var rc runtimeConfig
	if err := json.Unmarshal(c.runtimeConfig, &rc); err != nil {
		return types.NewError(types.ErrDecodingFailure, "cannot decode runtimeConfig: "+err.Error(), "")
	}
	ms, err := parsePortMappings(rc.PortMappings)
	if err != nil {
		return err
	}
	c.PortMappings = ms
	return nil
}

// mentionsPortMappings says whether a runtime config names port mappings
// at all; one that cannot be read might, so it counts as yes.
func mentionsPortMappings(raw json.RawMessage) bool {
	if len(raw) == 0 {
		return false
	}
	var loose struct {
		PortMappings []json.RawMessage `json:"portMappings"`
	}
	if err := json.Unmarshal(raw, &loose); err != nil {
		return true
	}
	return len(loose.PortMappings) > 0
}

func parsePortMappings(raw []portMapping) ([]hostport.Mapping, *types.Error) {
	var out []hostport.Mapping
	for i, pm := range raw {
		field := fmt.Sprintf("runtimeConfig.portMappings[%d]", i)
		m := hostport.Mapping{Protocol: strings.ToLower(pm.Protocol)}
		if m.Protocol == "" {
			m.Protocol = "tcp"
		}
		if pm.HostPort < 1 || pm.HostPort > 65535 {
			return nil, invalid(field+".hostPort", pm.HostPort, "a port between 1 and 65535")
		}
		if pm.ContainerPort < 1 || pm.ContainerPort > 65535 {
			return nil, invalid(field+".containerPort", pm.ContainerPort, "a port between 1 and 65535")
		}
		m.HostPort, m.ContainerPort = uint16(pm.HostPort), uint16(pm.ContainerPort)
		if pm.HostIP != "" {
			ip, err := netip.ParseAddr(pm.HostIP)
			if err != nil || ip.Zone() != "" {
				return nil, invalid(field+".hostIP", pm.HostIP, "an IP address of this node, or empty for all of them")
			}
			if !ip.IsUnspecified() { // 0.0.0.0 and :: mean every address
				m.HostIP = ip.Unmap()
			}
		}
		if err := hostport.Validate(m); err != nil {
			return nil, invalid(field, fmt.Sprintf("%+v", pm), err.Error())
		}
		out = append(out, m)
	}
	return out, nil
}
