package model

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Limits on what a Node may claim. Kubernetes itself gives a node at most
// one podCIDR per family; anything beyond that is hostile or broken.
const (
	maxPodCIDRs  = 2
	maxAddresses = 16
	minBits4     = 8  // a podCIDR wider than /8 would swallow a large part of IPv4
	minBits6     = 16 // likewise for IPv6
	maxNameLen   = 253
)

var nodeNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

// Peer is a node that passed validation: at most one address per family and
// at most one podCIDR per family, each podCIDR with an address of its family.
type Peer struct {
	Name     string         `json:"name"`
	Addrs    []netip.Addr   `json:"addresses,omitempty"`
	PodCIDRs []netip.Prefix `json:"podCIDRs,omitempty"`
}

// Via returns the peer's address of the same family as prefix.
func (p Peer) Via(prefix netip.Prefix) (netip.Addr, bool) {
	for _, a := range p.Addrs {
		if a.Is4() == prefix.Addr().Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// Rejection is a peer kept out of the dataplane, and why.
type Rejection struct {
	Node   Node   `json:"node"`
	Reason string `json:"reason"`
}

// Snapshot is a validated view: what the reconcilers converge the host to.
type Snapshot struct {
	// Self is this node; its PodCIDRs are empty until they are known.
	Self Peer `json:"self"`
	// SelfProblem says why this node's own podCIDRs could not be used.
	SelfProblem string `json:"selfProblem,omitempty"`
	// Peers are the accepted other nodes, sorted by name. A peer without
	// podCIDRs is accepted but has nothing to route yet ("pending").
	Peers []Peer `json:"peers"`
	// Rejected are the peers that failed validation, sorted by name.
	Rejected []Rejection `json:"rejected,omitempty"`
	// ClusterCIDRs are the configured cluster ranges (may be empty).
	ClusterCIDRs []netip.Prefix `json:"clusterCIDRs,omitempty"`
}

// AllPodCIDRs returns the podCIDRs of this node and of every accepted peer.
func (s *Snapshot) AllPodCIDRs() []netip.Prefix {
	out := slices.Clone(s.Self.PodCIDRs)
	for _, p := range s.Peers {
		out = append(out, p.PodCIDRs...)
	}
	return out
}

// Policy is what validation checks a view against.
type Policy struct {
	// ClusterCIDRs, when set, must contain every podCIDR.
	ClusterCIDRs []netip.Prefix
	// SelfPodCIDRs, when set (from config), override the podCIDRs the source
	// reports for this node.
	SelfPodCIDRs []netip.Prefix
	// HostAddrs are this host's own addresses: no peer may claim one.
	HostAddrs []netip.Addr
	// HostSubnets are the subnets this host is connected to: no podCIDR may
	// overlap one (it would hijack traffic to the node's own network).
	HostSubnets []netip.Prefix
	// Protected are addresses no podCIDR may cover, such as the default
	// gateway or the API server.
	Protected []netip.Addr
	// GatewayOnHost says the host itself holds the first address of each
	// of this node's podCIDRs (bridge mode puts it on the bridge, and the
	// CNI plugin's IPAM never hands it out); every other address of this
	// host inside an own podCIDR makes that podCIDR unusable.
	GatewayOnHost bool
	// Previous is the last snapshot. On a conflict (two nodes claiming the
	// same podCIDR or address) the peer accepted before keeps its claim, so a
	// newcomer can never take over traffic that already flows.
	Previous *Snapshot
	// Incumbents name the peers accepted before Previous existed: by the
	// agent's last run, as its cache recorded them. They win conflicts like
	// the peers of Previous, so a restart or a reboot hands no range to a
	// newcomer whose name sorts first.
	Incumbents []string
	// Held are the pod routes found installed on the host (podCIDR → the
	// address it is routed via). A candidate claiming a held podCIDR via
	// that very address counts as accepted before: after a restart, the
	// node the kernel routes a range to keeps it.
	Held map[netip.Prefix]netip.Addr
}

// Validate checks every node of the view against the policy and returns the
// snapshot: accepted peers and rejected ones with their reasons. It never
// fails as a whole: one bad peer only removes that peer.
func Validate(v View, pol Policy) Snapshot {
	s := Snapshot{ClusterCIDRs: slices.Clone(pol.ClusterCIDRs)}
	s.Self, s.SelfProblem = validateSelf(v.Self, pol)
	ordered := orderPeers(v.Peers, pol)
	parsed := make([]parsedNode, len(ordered))
	for i, n := range ordered {
		parsed[i] = parseNode(n, pol.ClusterCIDRs)
	}
	ck := checker{pol: pol, snap: &s, claims: newClaims(parsed), nameCount: countNames(v.Peers)}
	for i, n := range ordered {
		peer, reason := ck.peer(i, n, parsed[i])
		if reason != "" {
			s.Rejected = append(s.Rejected, Rejection{Node: excerpt(n), Reason: reason})
			continue
		}
		ck.claims.accept(i, len(s.Peers), peer)
		s.Peers = append(s.Peers, peer)
	}
	slices.SortFunc(s.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
	slices.SortFunc(s.Rejected, func(a, b Rejection) int { return strings.Compare(a.Node.Name, b.Node.Name) })
	return s
}

// Bounds on what a rejection keeps of a node: a hostile Node with 10,000
// podCIDRs or a megabyte-long name must not make every log line, status
// record and cache of the agent carry it.
const (
	excerptItems = 4
	excerptLen   = 80
)

// excerpt is the part of a rejected node worth showing: the first few
// addresses and podCIDRs, each cut to a sane length, and how many more.
func excerpt(n Node) Node {
	return Node{Name: cut(n.Name), Addresses: firstFew(n.Addresses), PodCIDRs: firstFew(n.PodCIDRs)}
}

func firstFew(list []string) []string {
	var out []string
	for i, s := range list {
		if i == excerptItems {
			out = append(out, fmt.Sprintf("(+%d more)", len(list)-excerptItems))
			break
		}
		out = append(out, cut(s))
	}
	return out
}

func cut(s string) string {
	if len(s) <= excerptLen {
		return s
	}
	return s[:excerptLen] + "…"
}

// parsedNode is a candidate peer's addresses and podCIDRs, parsed once, or
// why they do not parse.
type parsedNode struct {
	addrs  []netip.Addr
	cidrs  []netip.Prefix
	reason string
}

func parseNode(n Node, cluster []netip.Prefix) parsedNode {
	addrs, reason := parseAddrs(n.Addresses)
	if reason != "" {
		return parsedNode{reason: reason}
	}
	cidrs, reason := parsePodCIDRs(n.PodCIDRs, cluster)
	if reason != "" {
		return parsedNode{reason: reason}
	}
	return parsedNode{addrs: addrs, cidrs: cidrs}
}

// orderPeers puts the peers accepted before first (in the previous
// snapshot, named incumbents, or holding an installed route), then the
// rest, each group by name: the order decides who wins a conflict.
func orderPeers(peers []Node, pol Policy) []Node {
	known := map[string]bool{}
	if pol.Previous != nil {
		for _, p := range pol.Previous.Peers {
			known[p.Name] = true
		}
	}
	for _, name := range pol.Incumbents {
		known[name] = true
	}
	if len(pol.Held) > 0 {
		for _, n := range peers {
			if holdsRoute(n, pol.Held) {
				known[n.Name] = true
			}
		}
	}
	out := slices.Clone(peers)
	slices.SortStableFunc(out, func(a, b Node) int {
		if known[a.Name] != known[b.Name] {
			if known[a.Name] {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return out
}

// holdsRoute reports whether one of n's podCIDRs is installed on the host
// via one of n's addresses. It reads the raw strings leniently: a node that
// does not parse is rejected later anyway.
func holdsRoute(n Node, held map[netip.Prefix]netip.Addr) bool {
	for _, c := range n.PodCIDRs {
		p, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			continue
		}
		via, ok := held[p]
		if !ok {
			continue
		}
		for _, s := range n.Addresses {
			if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil && a == via {
				return true
			}
		}
	}
	return false
}

// countNames counts the entries of each name among the peers.
func countNames(peers []Node) map[string]int {
	out := make(map[string]int, len(peers))
	for _, n := range peers {
		out[n.Name]++
	}
	return out
}

func validateSelf(n Node, pol Policy) (Peer, string) {
	self := Peer{Name: n.Name}
	for _, s := range n.Addresses {
		if a, err := netip.ParseAddr(s); err == nil && !hasFamily(self.Addrs, a) {
			self.Addrs = append(self.Addrs, a.Unmap())
		}
	}
	cidrs, reason := pol.SelfPodCIDRs, ""
	if len(cidrs) == 0 {
		cidrs, reason = parsePodCIDRs(n.PodCIDRs, pol.ClusterCIDRs)
	}
	if reason == "" {
		reason = ownPodCIDRsProblem(cidrs, pol)
	}
	if reason == "" {
		self.PodCIDRs = slices.Clone(cidrs)
		return self, ""
	}
	problem := "own " + reason
	// The view's own node is refused, not the pod network it had: pods
	// keep their addresses, the CNI config and masquerade stay as they
	// were, as long as the last good ranges still pass on this host.
	if last := lastGoodSelf(pol); len(last) > 0 {
		self.PodCIDRs = last
		problem += fmt.Sprintf("; keeping the last good podCIDRs %s", joinPrefixes(last))
	}
	return self, problem
}

// lastGoodSelf is this node's podCIDRs in the previous snapshot, when they
// still pass the checks against the host as it is now.
func lastGoodSelf(pol Policy) []netip.Prefix {
	if pol.Previous == nil || len(pol.Previous.Self.PodCIDRs) == 0 {
		return nil
	}
	last := pol.Previous.Self.PodCIDRs
	for _, p := range last {
		if badPodCIDR(p, pol.ClusterCIDRs) != "" {
			return nil
		}
	}
	if ownPodCIDRsProblem(last, pol) != "" {
		return nil
	}
	return slices.Clone(last)
}

// ownPodCIDRsProblem checks what only this node's own podCIDRs must pass,
// on top of what every podCIDR passes: each leaves the CNI plugin an
// address to give a pod, and none holds an address of this host or one it
// depends on, which the plugin would otherwise hand to a pod.
func ownPodCIDRsProblem(cidrs []netip.Prefix, pol Policy) string {
	for _, p := range cidrs {
		if why := badPodCIDR(p, pol.ClusterCIDRs); why != "" {
			return fmt.Sprintf("podCIDR %s %s", p, why)
		}
		if NoPodAddress(p) {
			return fmt.Sprintf("podCIDR %s has no usable pod address: a node's pod range must be /30 or wider (IPv6: /126)", p)
		}
		for _, a := range pol.HostAddrs {
			if p.Contains(a) && !(pol.GatewayOnHost && a == p.Masked().Addr().Next()) {
				return fmt.Sprintf("podCIDR %s contains %s, an address of this host: the CNI plugin would give it to a pod", p, a)
			}
		}
		for _, a := range pol.Protected {
			if p.Contains(a) {
				return fmt.Sprintf("podCIDR %s covers %s, an address this host depends on (default gateway or API server)", p, a)
			}
		}
	}
	return ""
}

// NoPodAddress reports whether a pod range is too small to give any pod an
// address: an IPv4 /31 or /32 (no room beside the network and broadcast
// addresses) or an IPv6 /127 or /128.
func NoPodAddress(p netip.Prefix) bool {
	return p.Addr().BitLen()-p.Bits() < 2
}

type checker struct {
	pol       Policy
	snap      *Snapshot
	nameCount map[string]int // entries per peer name in the view
	claims    *claims
}

// peer validates candidate i against the policy and against the peers
// accepted so far. It returns the reason for rejecting it, or "".
func (c *checker) peer(i int, n Node, pn parsedNode) (Peer, string) {
	if reason := c.name(n.Name); reason != "" {
		return Peer{}, reason
	}
	if pn.reason != "" {
		return Peer{}, pn.reason
	}
	p := Peer{Name: n.Name, Addrs: pn.addrs, PodCIDRs: pn.cidrs}
	for _, check := range []func(Peer) string{c.addrConflicts, c.cidrConflicts, needsAddrPerFamily} {
		if reason := check(p); reason != "" {
			return Peer{}, reason
		}
	}
	return p, ""
}

func (c *checker) name(name string) string {
	switch {
	case name == "":
		return "node has no name"
	case len(name) > maxNameLen || !nodeNameRE.MatchString(name):
		return fmt.Sprintf("node name %.64q is not a valid Kubernetes node name", name)
	case name == c.snap.Self.Name:
		return "a peer has this node's own name"
	case c.nameCount[name] > 1:
		// Which entry is the real node cannot be told, so none is trusted:
		// keeping the first would let a second entry decide by sort order.
		return fmt.Sprintf("duplicate node name: %d entries are named %s; all of them are rejected", c.nameCount[name], name)
	}
	return ""
}

// parseAddrs keeps the first address of each family (the primary one) and
// rejects any address a pod network must never route via.
func parseAddrs(list []string) ([]netip.Addr, string) {
	if len(list) > maxAddresses {
		return nil, fmt.Sprintf("%d addresses: at most %d are accepted", len(list), maxAddresses)
	}
	var out []netip.Addr
	for _, s := range list {
		a, err := netip.ParseAddr(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Sprintf("address %.64q does not parse", s)
		}
		if why := UnusableAddr(a); why != "" {
			return nil, fmt.Sprintf("address %s is %s", a, why)
		}
		if !hasFamily(out, a) {
			out = append(out, a)
		}
	}
	return out, ""
}

// UnusableAddr says why a pod network must never route via a, or returns
// "" when it may: validation rejects a node with such an address.
func UnusableAddr(a netip.Addr) string {
	switch {
	case a.Zone() != "":
		return "scoped to an interface"
	case a.Is4In6():
		return "an IPv4-mapped IPv6 address"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "a loopback address"
	case a.IsMulticast():
		return "a multicast address"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.Is4() && a.As4()[0] == 0:
		return "in 0.0.0.0/8 (this network)"
	case a.Is4() && a.As4()[0] >= 240:
		return "reserved or broadcast"
	}
	return ""
}

func hasFamily(list []netip.Addr, a netip.Addr) bool {
	for _, b := range list {
		if b.Is4() == a.Is4() {
			return true
		}
	}
	return false
}

// special ranges no podCIDR may touch.
var specialRanges = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("127.0.0.0/8"),
	netip.MustParsePrefix("169.254.0.0/16"),
	netip.MustParsePrefix("224.0.0.0/4"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("::/127"), // unspecified and loopback
	netip.MustParsePrefix("::ffff:0:0/96"),
	netip.MustParsePrefix("fe80::/10"),
	netip.MustParsePrefix("ff00::/8"),
}

// SpecialRange returns the special range p overlaps (this network,
// loopback, link-local, multicast, reserved, IPv4-mapped), if any: no pod
// range may touch one.
func SpecialRange(p netip.Prefix) (netip.Prefix, bool) {
	for _, sp := range specialRanges {
		if sp.Overlaps(p) {
			return sp, true
		}
	}
	return netip.Prefix{}, false
}

// privateRanges are where podCIDRs may lie when no clusterCIDRs are set:
// the private and shared address space a cluster's pods usually take.
var privateRanges = []netip.Prefix{
	netip.MustParsePrefix("10.0.0.0/8"),     // RFC 1918
	netip.MustParsePrefix("172.16.0.0/12"),  // RFC 1918
	netip.MustParsePrefix("192.168.0.0/16"), // RFC 1918
	netip.MustParsePrefix("100.64.0.0/10"),  // RFC 6598, shared address space
	netip.MustParsePrefix("fc00::/7"),       // RFC 4193, unique local
}

// DefaultPodSpace returns the ranges podCIDRs must lie in when clusterCIDRs
// are empty. Without them, a podCIDR in public space would be routed to a
// node and left out of masquerade: a Node claiming 8.0.0.0/8 would take
// every pod's traffic to it. A cluster whose pods use other space lists it
// in clusterCIDRs.
func DefaultPodSpace() []netip.Prefix { return slices.Clone(privateRanges) }

// parsePodCIDRs checks what a single node's podCIDRs can be checked for on
// their own: syntax, network address, size, family, special ranges and
// clusterCIDRs.
func parsePodCIDRs(list []string, cluster []netip.Prefix) ([]netip.Prefix, string) {
	if len(list) > maxPodCIDRs {
		return nil, fmt.Sprintf("%d podCIDRs: at most one per IP family is accepted", len(list))
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Sprintf("podCIDR %.64q does not parse", s)
		}
		if why := badPodCIDR(p, cluster); why != "" {
			return nil, fmt.Sprintf("podCIDR %s %s", p, why)
		}
		for _, q := range out {
			if q.Addr().Is4() == p.Addr().Is4() {
				return nil, fmt.Sprintf("podCIDRs %s and %s are of the same family: at most one per IP family is accepted", q, p)
			}
		}
		out = append(out, p)
	}
	return out, ""
}

func badPodCIDR(p netip.Prefix, cluster []netip.Prefix) string {
	switch {
	case p.Masked() != p:
		return fmt.Sprintf("is not a network address (expected %s)", p.Masked())
	case p.Bits() == 0:
		return "is a default route"
	case p.Addr().Is4() && p.Bits() < minBits4, p.Addr().Is6() && !p.Addr().Is4In6() && p.Bits() < minBits6:
		return fmt.Sprintf("is too wide (/%d)", p.Bits())
	}
	if sp, ok := SpecialRange(p); ok {
		return fmt.Sprintf("overlaps the special range %s", sp)
	}
	switch {
	case len(cluster) > 0 && !containedIn(p, cluster):
		return fmt.Sprintf("is outside clusterCIDRs (%s)", joinPrefixes(cluster))
	case len(cluster) == 0 && !containedIn(p, privateRanges):
		return fmt.Sprintf("is not in private address space (%s), the only space accepted while clusterCIDRs is empty: list the cluster's pod ranges in clusterCIDRs to use it", joinPrefixes(privateRanges))
	}
	return ""
}

// PodCIDRProblem says why p can be no node's podCIDR in a cluster with
// these clusterCIDRs (empty: DefaultPodSpace applies), or returns "".
func PodCIDRProblem(p netip.Prefix, cluster []netip.Prefix) string {
	return badPodCIDR(p, cluster)
}

// addrConflicts rejects a peer whose address belongs to this host or to an
// accepted peer, or lies inside a pod range: clusterCIDRs, this node's
// podCIDRs, an accepted peer's podCIDRs, its own podCIDRs (checked in that
// order, so the reason names the widest range first).
func (c *checker) addrConflicts(p Peer) string {
	for _, a := range p.Addrs {
		if slices.Contains(c.pol.HostAddrs, a) || slices.Contains(c.snap.Self.Addrs, a) {
			return fmt.Sprintf("address %s is this node's own address", a)
		}
		if why := subnetEdge(a, c.pol.HostSubnets); why != "" {
			return why
		}
		if q, ok := c.claims.addrOwner[a]; ok {
			return fmt.Sprintf("address %s is already used by node %s", a, c.snap.Peers[q].Name)
		}
		for _, r := range c.pol.ClusterCIDRs {
			if r.Contains(a) {
				return fmt.Sprintf("address %s is inside clusterCIDR %s", a, r)
			}
		}
		for _, r := range c.snap.Self.PodCIDRs {
			if r.Contains(a) {
				return fmt.Sprintf("address %s is inside this node's podCIDR %s", a, r)
			}
		}
		if r, q, ok := c.claims.cidrContaining(a); ok {
			return fmt.Sprintf("address %s is inside podCIDR %s of node %s", a, r, c.snap.Peers[q].Name)
		}
		for _, own := range p.PodCIDRs {
			if own.Contains(a) {
				return fmt.Sprintf("address %s is inside its own podCIDR %s", a, own)
			}
		}
	}
	return ""
}

// subnetEdge says why a is no host on one of this host's connected IPv4
// subnets: the network or the broadcast address of a /30 or wider one. The
// kernel refuses a gateway there (EINVAL), so a route via it could never be
// installed. (A /31 or /32 has no such addresses: RFC 3021.)
func subnetEdge(a netip.Addr, subnets []netip.Prefix) string {
	if !a.Is4() {
		return ""
	}
	for _, sub := range subnets {
		if !sub.Addr().Is4() || sub.Bits() > 30 || !sub.Contains(a) {
			continue
		}
		switch a {
		case sub.Masked().Addr():
			return fmt.Sprintf("address %s is the network address of this host's subnet %s", a, sub.Masked())
		case lastAddr(sub):
			return fmt.Sprintf("address %s is the broadcast address of this host's subnet %s", a, sub.Masked())
		}
	}
	return ""
}

// cidrConflicts rejects a peer whose podCIDRs overlap another node's, the
// host's own subnets, or cover an address that must stay reachable. Among
// accepted peers, the one accepted first is named, its podCIDR before its
// address.
func (c *checker) cidrConflicts(p Peer) string {
	for _, cidr := range p.PodCIDRs {
		for _, own := range c.snap.Self.PodCIDRs {
			if own.Overlaps(cidr) {
				return fmt.Sprintf("podCIDR %s overlaps this node's podCIDR %s", cidr, own)
			}
		}
		oq, qc, overlaps := c.claims.firstOverlap(cidr)
		aq, qa, covers := c.claims.firstAddrIn(cidr)
		switch {
		case overlaps && (!covers || oq <= aq):
			return fmt.Sprintf("podCIDR %s overlaps podCIDR %s of node %s", cidr, qc, c.snap.Peers[oq].Name)
		case covers:
			return fmt.Sprintf("podCIDR %s covers the address %s of node %s", cidr, qa, c.snap.Peers[aq].Name)
		}
		for _, sub := range c.pol.HostSubnets {
			if sub.Overlaps(cidr) && !c.insideSelf(sub) {
				return fmt.Sprintf("podCIDR %s overlaps this host's connected subnet %s", cidr, sub)
			}
		}
		for _, list := range [][]netip.Addr{c.pol.HostAddrs, c.pol.Protected} {
			for _, a := range list {
				if cidr.Contains(a) {
					return fmt.Sprintf("podCIDR %s covers %s, an address of this host or one it depends on", cidr, a)
				}
			}
		}
	}
	return ""
}

// insideSelf reports whether a host subnet is one of kindnet's own pod
// subnets (the bridge address in bridge mode); those are not "the host's
// network" and a peer overlapping them is rejected by the podCIDR check.
func (c *checker) insideSelf(sub netip.Prefix) bool {
	return containedIn(sub, c.snap.Self.PodCIDRs)
}

func needsAddrPerFamily(p Peer) string {
	for _, cidr := range p.PodCIDRs {
		if _, ok := p.Via(cidr); !ok {
			fam := "IPv4"
			if cidr.Addr().Is6() {
				fam = "IPv6"
			}
			return fmt.Sprintf("podCIDR %s has no %s address to route it via", cidr, fam)
		}
	}
	return ""
}

func containedIn(p netip.Prefix, in []netip.Prefix) bool {
	for _, c := range in {
		if c.Bits() <= p.Bits() && c.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}
