package kubenode

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func kubeNode(name string, podCIDR string, podCIDRs []string, addrs ...corev1.NodeAddress) *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       corev1.NodeSpec{PodCIDR: podCIDR, PodCIDRs: podCIDRs},
		Status:     corev1.NodeStatus{Addresses: addrs},
	}
}

func internal(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a}
}
func external(a string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: a}
}

func TestToNodeReadsAddressesAndPodCIDRsAsKubeletWritesThem(t *testing.T) {
	for _, tc := range []struct {
		name      string
		node      *corev1.Node
		policy    AddressPolicy
		addresses []string
		podCIDRs  []string
	}{{
		name:      "InternalIPs in the Node's order, spec.podCIDRs preferred over spec.podCIDR",
		node:      kubeNode("a", "10.244.9.0/24", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, internal("fd00::1"), internal("192.168.0.1"), corev1.NodeAddress{Type: corev1.NodeHostName, Address: "a"}),
		addresses: []string{"fd00::1", "192.168.0.1"},
		podCIDRs:  []string{"10.244.1.0/24", "fd00:10:244:1::/64"},
	}, {
		name:      "older Nodes with only spec.podCIDR; ExternalIP ignored by default",
		node:      kubeNode("a", "10.244.2.0/24", nil, external("203.0.113.2")),
		addresses: nil,
		podCIDRs:  []string{"10.244.2.0/24"},
	}, {
		name:      "ExternalIP only for a family without an InternalIP, when allowed",
		node:      kubeNode("a", "", nil, internal("192.168.0.1"), external("203.0.113.2"), external("2001:db8::2")),
		policy:    AddressPolicy{AllowExternalIP: true},
		addresses: []string{"192.168.0.1", "2001:db8::2"},
	}, {
		name:      "an ExternalIP that does not parse adds nothing",
		node:      kubeNode("a", "", nil, external("not-an-ip")),
		policy:    AddressPolicy{AllowExternalIP: true},
		addresses: nil,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			n := ToNode(tc.node, tc.policy)
			if n.Name != "a" || !slices.Equal(n.Addresses, tc.addresses) || !slices.Equal(n.PodCIDRs, tc.podCIDRs) {
				t.Errorf("ToNode = %+v, want addresses %v podCIDRs %v", n, tc.addresses, tc.podCIDRs)
			}
		})
	}
}

func TestToViewSplitsSelfFromSortedPeers(t *testing.T) {
	nodes := []corev1.Node{*kubeNode("c", "", nil), *kubeNode("a", "", nil), *kubeNode("b", "", nil)}
	v := ToView("b", nodes, AddressPolicy{})
	if v.Self.Name != "b" || len(v.Peers) != 2 || v.Peers[0].Name != "a" || v.Peers[1].Name != "c" {
		t.Errorf("view = %+v", v)
	}
	if v := ToView("absent", nodes, AddressPolicy{}); v.Self.Name != "absent" || len(v.Peers) != 3 {
		t.Errorf("view without self = %+v", v)
	}
}
