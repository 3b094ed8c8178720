package kubetest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The Node authorizer of the real API server lets a kubelet identity read
// its own Node but not list all of them: this is why kindnet needs its
// ClusterRole, and what the helper must reproduce.
func TestNodeIdentityMayReadOnlyItsOwnNode(t *testing.T) {
	s := New(t, Options{})
	ctx := context.Background()
	admin, err := s.Admin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create node as admin: %v", err)
	}
	cert, key, err := s.NodeCert("n1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubelet.conf")
	if err := s.WriteKubeconfig(path, Kubeconfig{CertPEM: cert, KeyPEM: key}); err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		t.Fatal(err)
	}
	node := kubernetes.NewForConfigOrDie(cfg)
	if _, err := node.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); err != nil {
		t.Errorf("kubelet identity cannot get its own Node: %v", err)
	}
	if _, err := node.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing all Nodes as a kubelet: got %v, want 403 Forbidden", err)
	}
	if _, err := node.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=n1"}); err != nil {
		t.Errorf("listing its own Node by field selector: %v", err)
	}
}
