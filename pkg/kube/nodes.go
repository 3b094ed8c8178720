package kube

import (
	"slices"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// slimNode is the informers' transform: it keeps only what kindnet reads
// (name, podCIDRs, addresses and the NetworkUnavailable condition) and drops
// the rest, managedFields, images, labels and annotations included, before
// the object enters the cache. A real Node is mostly image lists and
// managedFields; with thousands of Nodes this is most of the agent's memory.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a tombstone or list marker: leave it to the informer
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion},
		Spec:       corev1.NodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: n.Spec.PodCIDRs},
		Status:     corev1.NodeStatus{Addresses: n.Status.Addresses},
	}
	if c := findCondition(n, corev1.NodeNetworkUnavailable); c != nil {
		out.Status.Conditions = []corev1.NodeCondition{*c}
	}
	return out, nil
}

func findCondition(n *corev1.Node, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == t {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

// relevantChange reports whether an update changes anything kindnet uses:
// addresses or podCIDRs of any node, or this node's NetworkUnavailable
// condition. kubelet rewrites its Node's status regularly; those updates
// need no new view.
func relevantChange(oldObj, newObj any, self string) bool {
	o, ok1 := oldObj.(*corev1.Node)
	n, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return true
	}
	if o.Spec.PodCIDR != n.Spec.PodCIDR || !slices.Equal(o.Spec.PodCIDRs, n.Spec.PodCIDRs) ||
		!slices.Equal(o.Status.Addresses, n.Status.Addresses) {
		return true
	}
	if n.Name != self {
		return false
	}
	oc, nc := findCondition(o, corev1.NodeNetworkUnavailable), findCondition(n, corev1.NodeNetworkUnavailable)
	return (oc == nil) != (nc == nil) || (oc != nil && (oc.Status != nc.Status || oc.Reason != nc.Reason))
}
