// Package model is kindnet's picture of the cluster: the View a source
// reports (this node and its peers, as raw strings), the contract a source
// fulfils (Source, Update, SourceError), and the validation that turns a
// View into a Snapshot the reconcilers can trust (Peer, Rejection, Policy).
// The reconcilers depend on it, and it depends on the standard library
// alone, so no reconciler links an API client, the Kubernetes types or a
// source (a test in internal/deprules holds that rule).
//
// It never touches the kernel, a file or the network: it is data and pure
// functions. The sources live in pkg/kube (with the conversion from
// Kubernetes Nodes, pkg/kube/kubenode) and pkg/nodesfile; the on-disk copy of
// the last view in pkg/cache.
package model

import (
	"slices"
	"strings"
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
