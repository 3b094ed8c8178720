package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go4.org/netipx"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

var (
	// dnsSubdomain is what Kubernetes accepts as a Node name.
	dnsSubdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// nftIdent is an nftables identifier that needs no quoting.
	nftIdent = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9_]*$`)
)

// validator collects every problem so the user fixes them in one go.
type validator struct {
	origin func(key string) string
	errs   []error
}

func (v *validator) fail(key, value, format string, args ...any) {
	base := key
	if i := strings.IndexByte(base, '['); i >= 0 {
		base = base[:i]
	}
	v.errs = append(v.errs, &Error{Field: key, Value: value, Origin: v.origin(base), Msg: fmt.Sprintf(format, args...)})
}

func validate(c *Config, origin func(string) string) error {
	v := &validator{origin: origin}
	v.nodeName(c.NodeName)
	v.sources(c)
	cluster := v.prefixes("clusterCIDRs", c.ClusterCIDRs, false)
	v.noOverlap("clusterCIDRs", c.ClusterCIDRs, cluster)
	v.notWholeFamily("clusterCIDRs", c.ClusterCIDRs, cluster)
	cluster = v.podSpace("clusterCIDRs", c.ClusterCIDRs, cluster)
	pods := v.prefixes("podCIDRs", c.PodCIDRs, true)
	v.ownPodCIDRs(c.PodCIDRs, pods, cluster)
	v.prefixes("masquerade.noMasqueradeCIDRs", c.Masquerade.NoMasqueradeCIDRs, false)
	if !nftIdent.MatchString(c.Masquerade.Table) || !strings.HasPrefix(c.Masquerade.Table, "kindnet") || len(c.Masquerade.Table) > 255 {
		v.fail("masquerade.table", c.Masquerade.Table, "expected an nftables name starting with \"kindnet\" (letters, digits, _), e.g. %q", DefaultNftTable)
	}
	v.cni(c, hasIPv6(cluster, pods))
	v.criEndpoint(c.CRI.Endpoint)
	v.absPath("stateDir", c.StateDir)
	v.absPath("runDir", c.RunDir)
	v.ownedDirs(c)
	v.metricsAddress(c.MetricsAddress)
	if d := c.ResyncInterval.Std(); d < time.Second || d > 24*time.Hour {
		v.fail("resyncInterval", d.String(), "expected a duration between 1s and 24h, e.g. 1m")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		v.fail("logLevel", c.LogLevel, "expected one of debug, info, warn, error")
	}
	return errors.Join(v.errs...)
}

func (v *validator) nodeName(name string) {
	switch {
	case name == "":
		v.fail("nodeName", name, "required: set it, or give the host a hostname")
	case len(name) > 253 || !dnsSubdomain.MatchString(name):
		v.fail("nodeName", name, "expected a Kubernetes node name: lowercase letters, digits, '-' and '.', at most 253 characters")
	}
}

func (v *validator) sources(c *Config) {
	if c.NodesFile == "" && c.Kubeconfig == "" {
		v.fail("nodesFile", "", "required: set nodesFile (static nodes) or kubeconfig (follow the Kubernetes API)")
	}
	if c.NodesFile != "" {
		v.absPath("nodesFile", c.NodesFile)
		v.nodesFileType(c.NodesFile)
	}
	if c.Kubeconfig != "" {
		v.absPath("kubeconfig", c.Kubeconfig)
	}
}

func (v *validator) absPath(key, p string) {
	if !filepath.IsAbs(p) {
		v.fail(key, p, "expected an absolute path")
	}
}

// prefixes parses a list of CIDRs; each must be a network address (host bits
// zero) and not a default route. onePerFamily enforces at most one IPv4 and
// one IPv6 entry, as Kubernetes does for a node's podCIDRs.
func (v *validator) prefixes(key string, list []string, onePerFamily bool) []netip.Prefix {
	var out []netip.Prefix
	seen := map[bool]string{}
	for i, s := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		switch {
		case err != nil:
			v.fail(k, s, "not a CIDR: expected a range like 10.244.0.0/16 or fd00:10:244::/56")
			continue
		case p.Addr().Is4In6():
			v.fail(k, s, "IPv4-mapped IPv6 ranges are not allowed: write the IPv4 range instead")
			continue
		case p.Masked() != p:
			v.fail(k, s, "not a network address: expected %s", p.Masked())
			continue
		case p.Bits() == 0:
			v.fail(k, s, "a default route is not a valid range here")
			continue
		}
		if onePerFamily {
			if prev, dup := seen[p.Addr().Is4()]; dup {
				v.fail(k, s, "at most one range per IP family: %s is already given", prev)
				continue
			}
			seen[p.Addr().Is4()] = s
		}
		out = append(out, p)
	}
	return out
}

func (v *validator) noOverlap(key string, raw []string, ps []netip.Prefix) {
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if ps[i].Overlaps(ps[j]) {
				v.fail(key, strings.Join(raw, ","), "%s and %s overlap: expected distinct ranges", ps[i], ps[j])
			}
		}
	}
}

// podSpace refuses a range no pod may use (loopback, link-local,
// multicast, unspecified, reserved): pods given such addresses would be
// unreachable, and a route for them would break the host. It returns the
// ranges that pass.
func (v *validator) podSpace(key string, raw []string, ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if sp, bad := model.SpecialRange(p); bad {
			v.fail(fmt.Sprintf("%s[%d]", key, indexOf(raw, p)), p.String(), "overlaps the special range %s (loopback, link-local, multicast, unspecified or reserved): expected a range pods can use, e.g. 10.244.0.0/16", sp)
			continue
		}
		out = append(out, p)
	}
	return out
}

// notWholeFamily refuses ranges that together cover all of IPv4 or IPv6
// ([0.0.0.0/1, 128.0.0.0/1]): every destination would be a pod, so no
// traffic would ever be masqueraded and any podCIDR would be accepted.
func (v *validator) notWholeFamily(key string, raw []string, ps []netip.Prefix) {
	var b netipx.IPSetBuilder
	for _, p := range ps {
		b.AddPrefix(p)
	}
	set, err := b.IPSet()
	if err != nil {
		v.fail(key, strings.Join(raw, ","), "cannot be combined: %v", err)
		return
	}
	for _, all := range []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")} {
		if set.ContainsPrefix(all) {
			v.fail(key, strings.Join(raw, ","), "together these ranges cover every %s address: expected the cluster's pod ranges only, e.g. 10.244.0.0/16", familyName(all))
		}
	}
}

// ownPodCIDRs checks this node's own ranges as validation checks any
// node's (special ranges, width, inside clusterCIDRs — or, with none,
// inside private space), and that each leaves an address for a pod.
func (v *validator) ownPodCIDRs(raw []string, pods, cluster []netip.Prefix) {
	for _, p := range pods {
		k := fmt.Sprintf("podCIDRs[%d]", indexOf(raw, p))
		if why := model.PodCIDRProblem(p, cluster); why != "" {
			v.fail(k, p.String(), "%s", why)
			continue
		}
		if model.NoPodAddress(p) {
			v.fail(k, p.String(), "has no usable pod address: expected /30 or wider (IPv6: /126 or wider), e.g. /24 (IPv6 /64)")
		}
	}
}

func familyName(p netip.Prefix) string {
	if p.Addr().Is4() {
		return "IPv4"
	}
	return "IPv6"
}

// indexOf is the position in raw of the entry that parsed to p.
func indexOf(raw []string, p netip.Prefix) int {
	for i, s := range raw {
		if q, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && q == p {
			return i
		}
	}
	return 0
}

func (v *validator) cni(c *Config, ipv6 bool) {
	switch c.CNI.Plugin {
	case PluginPTP, PluginBridge:
	default:
		v.fail("cni.plugin", c.CNI.Plugin, "expected %q or %q", PluginPTP, PluginBridge)
	}
	v.absPath("cni.confDir", c.CNI.ConfDir)
	v.absPath("cni.binDir", c.CNI.BinDir)
	if c.CNI.ConfName == "" || strings.ContainsRune(c.CNI.ConfName, '/') || !strings.HasSuffix(c.CNI.ConfName, ".conflist") {
		v.fail("cni.confName", c.CNI.ConfName, "expected a file name ending in .conflist, e.g. %q", DefaultCNIConfName)
	}
	if !slices.Contains(CNISpecVersions, c.CNI.SpecVersion) {
		v.fail("cni.specVersion", c.CNI.SpecVersion, "expected one of %s (default %s)", strings.Join(CNISpecVersions, ", "), DefaultCNISpecVersion)
	}
	switch mtu := c.CNI.MTU; {
	case mtu == 0:
	case mtu < 576 || mtu > 65535:
		v.fail("cni.mtu", strconv.Itoa(mtu), "expected 0 (auto) or a value between 576 and 65535")
	case ipv6 && mtu < 1280:
		v.fail("cni.mtu", strconv.Itoa(mtu), "IPv6 needs an MTU of at least 1280")
	}
}

func (v *validator) criEndpoint(e string) {
	switch strings.TrimSpace(e) {
	case "", CRIEndpointAuto, CRIEndpointNone:
		return
	}
	if _, err := criSocketPath(strings.TrimSpace(e)); err != nil {
		v.fail("cri.endpoint", e, "%v; or %q (the well-known sockets) or %q (do not ask the runtime)", err, CRIEndpointAuto, CRIEndpointNone)
	}
}

func (v *validator) metricsAddress(addr string) {
	if addr == "" {
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.fail("metricsAddress", addr, "expected host:port such as 127.0.0.1:19080, or empty to disable")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.fail("metricsAddress", addr, "port must be a number between 1 and 65535")
	}
}

func hasIPv6(lists ...[]netip.Prefix) bool {
	for _, l := range lists {
		for _, p := range l {
			if p.Addr().Is6() {
				return true
			}
		}
	}
	return false
}
