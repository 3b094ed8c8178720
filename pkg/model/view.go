// Package cluster owns kindnet's picture of the cluster: the View that
// sources produce (this node and its peers, as the source saw them), the
// validation that turns a View into a Snapshot the reconcilers can trust, and
// the sources themselves (static nodes file, on-disk cache).
//
// It never touches the kernel: nothing here adds a route, a rule or a file
// outside the agent's state directory.
package model

import (
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Node is one node as a source saw it. Values are raw strings: a hostile or
// broken Node object must still reach validation so it can be rejected with
// a reason instead of silently vanishing.
type Node struct {
	Name string `json:"name"`
	// Addresses are the node's addresses kindnet routes via (InternalIP, or
	// ExternalIP when the source allows it), primary first.
	Addresses []string `json:"addresses,omitempty"`
	// PodCIDRs are the node's pod ranges (spec.podCIDRs).
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

// View is the cluster as a source reports it: this node and every other node.
type View struct {
	Self  Node   `json:"self"`
	Peers []Node `json:"peers"`
}

// Equal reports whether two views carry the same information.
func (v View) Equal(o View) bool {
	return nodeEqual(v.Self, o.Self) && slices.EqualFunc(v.Peers, o.Peers, nodeEqual)
}

func nodeEqual(a, b Node) bool {
	return a.Name == b.Name && slices.Equal(a.Addresses, b.Addresses) && slices.Equal(a.PodCIDRs, b.PodCIDRs)
}

// Normalize sorts peers by name so equal clusters give equal views.
func (v *View) Normalize() {
	slices.SortStableFunc(v.Peers, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
}

// AddressPolicy says which Node addresses kindnet may route via.
type AddressPolicy struct {
	// AllowExternalIP lets a node without any InternalIP be reached via its
	// ExternalIP (per family).
	AllowExternalIP bool
}

// FromKubeNode converts a Kubernetes Node into a Node: InternalIPs in the
// order the Node lists them (kubelet puts the primary first), or ExternalIPs
// for a family with no InternalIP when the policy allows; podCIDRs from
// spec.podCIDRs, falling back to the older spec.podCIDR.
func FromKubeNode(n *corev1.Node, p AddressPolicy) Node {
	out := Node{Name: n.Name}
	var internal, external []string
	for _, a := range n.Status.Addresses {
		switch a.Type {
		case corev1.NodeInternalIP:
			internal = append(internal, a.Address)
		case corev1.NodeExternalIP:
			external = append(external, a.Address)
		}
	}
	out.Addresses = internal
	if p.AllowExternalIP {
		for _, e := range external {
			if !hasFamilyOf(internal, e) {
				out.Addresses = append(out.Addresses, e)
			}
		}
	}
	out.PodCIDRs = slices.Clone(n.Spec.PodCIDRs)
	if len(out.PodCIDRs) == 0 && n.Spec.PodCIDR != "" {
		out.PodCIDRs = []string{n.Spec.PodCIDR}
	}
	return out
}

// hasFamilyOf reports whether list holds a parseable address of addr's family.
func hasFamilyOf(list []string, addr string) bool {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return true // an unparseable ExternalIP adds nothing
	}
	for _, s := range list {
		if b, err := netip.ParseAddr(s); err == nil && b.Is4() == a.Is4() {
			return true
		}
	}
	return false
}

// ViewFromNodes builds a View from a list of Kubernetes Nodes: the node named
// self becomes Self (an empty Self with that name when absent), every other
// node a peer.
func ViewFromNodes(self string, nodes []corev1.Node, p AddressPolicy) View {
	v := View{Self: Node{Name: self}}
	for i := range nodes {
		n := FromKubeNode(&nodes[i], p)
		if n.Name == self {
			v.Self = n
			continue
		}
		v.Peers = append(v.Peers, n)
	}
	v.Normalize()
	return v
}
