// Package kubenode turns Kubernetes Node objects (k8s.io/api core/v1) into
// the model's Nodes and Views: which of a Node's addresses kindnet routes
// via, and which pod ranges it has. The Kubernetes source uses it for the
// Nodes it watches, the nodes-file source for the Nodes a file holds (as
// `kubectl get nodes -o yaml` prints them), so both read a Node alike.
//
// It depends on the Node types alone: no API client, no file, no kernel.
// Validation is not done here; the values pass through as raw strings so
// that a broken Node still reaches validation and is rejected with a reason.
package kubenode

import (
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

// AddressPolicy says which Node addresses kindnet may route via.
type AddressPolicy struct {
	// AllowExternalIP lets a node without any InternalIP be reached via its
	// ExternalIP (per family).
	AllowExternalIP bool
}

// ToNode converts a Kubernetes Node into a model Node: InternalIPs in the
// order the Node lists them (kubelet puts the primary first), or ExternalIPs
// for a family with no InternalIP when the policy allows; podCIDRs from
// spec.podCIDRs, falling back to the older spec.podCIDR.
func ToNode(n *corev1.Node, p AddressPolicy) model.Node {
	out := model.Node{Name: n.Name}
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

// ToView builds a View from a list of Kubernetes Nodes: the node named self
// becomes Self (an empty Self with that name when absent), every other node
// a peer.
func ToView(self string, nodes []corev1.Node, p AddressPolicy) model.View {
	v := model.View{Self: model.Node{Name: self}}
	for i := range nodes {
		n := ToNode(&nodes[i], p)
		if n.Name == self {
			v.Self = n
			continue
		}
		v.Peers = append(v.Peers, n)
	}
	v.Normalize()
	return v
}
