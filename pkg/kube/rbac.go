package kube

import (
	"bytes"
	"fmt"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// RBACName names kindnet's ClusterRole and ClusterRoleBinding.
const RBACName = "kindnet-node-reader"

// NodesGroup is the group every kubelet identity belongs to.
const NodesGroup = "system:nodes"

// RBACObjects returns the ClusterRole kindnet needs (read Nodes cluster-wide)
// and its binding to every kubelet identity. Nothing else: patching this
// node's own status (NetworkUnavailable) is already allowed to a kubelet by
// the Node authorizer, and granting it here would let every node patch every
// other node's status.
func RBACObjects() (*rbacv1.ClusterRole, *rbacv1.ClusterRoleBinding) {
	meta := metav1.ObjectMeta{Name: RBACName, Labels: map[string]string{"app.kubernetes.io/name": "kindnet"}}
	role := &rbacv1.ClusterRole{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
		ObjectMeta: meta,
		Rules: []rbacv1.PolicyRule{{
			APIGroups: []string{""},
			Resources: []string{"nodes"},
			Verbs:     []string{"get", "list", "watch"},
		}},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
		ObjectMeta: meta,
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: RBACName},
		Subjects:   []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.GroupKind, Name: NodesGroup}},
	}
	return role, binding
}

// RBACManifest renders RBACObjects as a YAML stream for `kubectl apply -f -`.
func RBACManifest() ([]byte, error) {
	role, binding := RBACObjects()
	var b bytes.Buffer
	b.WriteString("# kindnet reads every Node with each node's kubelet credentials. Since\n" +
		"# Kubernetes 1.32 the Node authorizer lets a kubelet read only its own Node,\n" +
		"# so this grants get/list/watch on nodes to the group system:nodes.\n" +
		"# Apply once from a host with cluster-admin: " + RBACCommand + "\n")
	for _, o := range []any{role, binding} {
		y, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("render RBAC manifest: %w", err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	return b.Bytes(), nil
}
