package kube

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// NodeAPI is all of the Kubernetes API kindnet uses: list and watch Nodes,
// patch its own Node's status. client-go's typed Nodes client satisfies it.
type NodeAPI interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	PatchStatus(ctx context.Context, nodeName string, data []byte) (*corev1.Node, error)
}

// restNodes is NodeAPI over a REST client whose scheme knows core/v1 only.
// client-go's full clientset would register every API group of Kubernetes
// at start: it doubled the binary (17 → 31 MB) and its resident memory.
type restNodes struct{ rc *rest.RESTClient }

func newRESTNodes(cfg *rest.Config) (*restNodes, error) {
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("register core/v1: %w", err)
	}
	c := rest.CopyConfig(cfg)
	c.GroupVersion = &corev1.SchemeGroupVersion
	c.APIPath = "/api"
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", cfg.Host, err)
	}
	return &restNodes{rc: rc}, nil
}

func (n *restNodes) List(ctx context.Context, opts metav1.ListOptions) (*corev1.NodeList, error) {
	out := &corev1.NodeList{}
	err := n.rc.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).
		Timeout(timeoutOf(opts)).Do(ctx).Into(out)
	return out, err
}

func (n *restNodes) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return n.rc.Get().Resource("nodes").VersionedParams(&opts, metav1.ParameterCodec).
		Timeout(timeoutOf(opts)).Watch(ctx)
}

func (n *restNodes) PatchStatus(ctx context.Context, nodeName string, data []byte) (*corev1.Node, error) {
	out := &corev1.Node{}
	err := n.rc.Patch(types.StrategicMergePatchType).Resource("nodes").Name(nodeName).SubResource("status").
		Body(data).Do(ctx).Into(out)
	return out, err
}

// timeoutOf is the client-side timeout matching a server-side one, as the
// typed clients do.
func timeoutOf(opts metav1.ListOptions) time.Duration {
	if opts.TimeoutSeconds == nil {
		return 0
	}
	return time.Duration(*opts.TimeoutSeconds) * time.Second
}
