package cli

import (
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// kindnet rbac prints exactly a ClusterRole granting get/list/watch on
// nodes and its binding to system:nodes, as YAML kubectl can apply.
func TestRBACPrintsNodeReaderRoleBoundToAllKubelets(t *testing.T) {
	code, out, errOut := runCLI(t, nil, "rbac")
	if code != ExitOK || errOut != "" {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	docs := strings.Split(out, "\n---\n")
	if len(docs) != 3 || !strings.Contains(docs[0], "kindnet rbac | kubectl apply -f -") {
		t.Fatalf("want a comment and two documents, got:\n%s", out)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &role); err != nil {
		t.Fatal(err)
	}
	var binding rbacv1.ClusterRoleBinding
	if err := yaml.UnmarshalStrict([]byte(docs[2]), &binding); err != nil {
		t.Fatal(err)
	}
	if role.Kind != "ClusterRole" || len(role.Rules) != 1 || strings.Join(role.Rules[0].Resources, ",") != "nodes" ||
		strings.Join(role.Rules[0].Verbs, ",") != "get,list,watch" || strings.Join(role.Rules[0].APIGroups, ",") != "" {
		t.Errorf("role grants more or less than reading nodes: %+v", role)
	}
	if binding.Kind != "ClusterRoleBinding" || binding.RoleRef.Name != role.Name || len(binding.Subjects) != 1 ||
		binding.Subjects[0].Kind != "Group" || binding.Subjects[0].Name != "system:nodes" {
		t.Errorf("binding: %+v", binding)
	}
	if strings.Contains(out, "creationTimestamp") {
		t.Errorf("manifest carries server-set fields:\n%s", out)
	}
}
