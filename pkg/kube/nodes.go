package kube

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/go-logr/logr"

	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// slimNode is the stores' transform: it keeps only what kindnet reads
// (name, podCIDRs, addresses and the NetworkUnavailable condition) and drops
// the rest, managedFields, images, labels and annotations included, before
// the object enters the cache. A real Node is mostly image lists and
// managedFields; with thousands of Nodes this is most of the agent's memory.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // not a Node: leave it to the reflector
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

// storedNode is what a store keeps of a Node: the node as kindnet routes
// it and, for this node, its NetworkUnavailable condition. About 200 bytes
// instead of the kilobyte a corev1.Node struct takes even when slimmed.
type storedNode struct {
	node        model.Node
	unavailable *corev1.NodeCondition
}

func (st *nodeStore) toStored(n *corev1.Node) storedNode {
	out := storedNode{node: kubenode.ToNode(n, st.policy)}
	if n.Name == st.self {
		if c := findCondition(n, corev1.NodeNetworkUnavailable); c != nil {
			cc := *c
			out.unavailable = &cc
		}
	}
	return out
}

// differs reports whether b changes anything kindnet uses: addresses or
// podCIDRs of any node, or this node's NetworkUnavailable condition.
// kubelet rewrites its Node's status regularly; those updates need no new
// view.
func (a storedNode) differs(b storedNode) bool {
	if !(model.View{Self: a.node}).Equal(model.View{Self: b.node}) {
		return true
	}
	oc, nc := a.unavailable, b.unavailable
	return (oc == nil) != (nc == nil) || (oc != nil && (oc.Status != nc.Status || oc.Reason != nc.Reason))
}

// nodeStore is a reflector's store: what kindnet keeps of the Nodes of one
// watch. It kicks the session on every change that matters, and counts as
// synced once the reflector delivered its first complete list (Replace).
type nodeStore struct {
	self   string
	policy kubenode.AddressPolicy
	poke   func()
	synced atomic.Bool
	// onReplace, when set, is told of every complete list (the session
	// counts it as the watch's success).
	onReplace func()

	mu    sync.Mutex
	nodes map[string]storedNode
}

func newNodeStore(self string, policy kubenode.AddressPolicy, poke func()) *nodeStore {
	return &nodeStore{self: self, policy: policy, poke: poke, nodes: map[string]storedNode{}}
}

var _ cache.TransformingStore = (*nodeStore)(nil)

// Transformer slims Nodes also in the reflector's temporary store during a
// streamed initial list, so thousands of full Nodes never sit in memory.
func (st *nodeStore) Transformer() cache.TransformFunc { return slimNode }

func (st *nodeStore) Add(obj any) error { return st.Update(obj) }

func (st *nodeStore) Update(obj any) error {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return fmt.Errorf("not a Node: %T", obj)
	}
	next := st.toStored(n)
	st.mu.Lock()
	old, exists := st.nodes[n.Name]
	st.nodes[n.Name] = next
	st.mu.Unlock()
	if !exists || old.differs(next) {
		st.poke()
	}
	return nil
}

func (st *nodeStore) Delete(obj any) error {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	st.mu.Lock()
	delete(st.nodes, m.GetName())
	st.mu.Unlock()
	st.poke()
	return nil
}

// Replace takes a complete list: after a reconnect, a Node missing from it
// is gone for real.
func (st *nodeStore) Replace(list []any, _ string) error {
	next := make(map[string]storedNode, len(list))
	for _, o := range list {
		if n, ok := o.(*corev1.Node); ok {
			next[n.Name] = st.toStored(n)
		}
	}
	st.mu.Lock()
	st.nodes = next
	st.mu.Unlock()
	st.synced.Store(true)
	if st.onReplace != nil {
		st.onReplace()
	}
	st.poke()
	return nil
}

// Resync is part of the reflector's store interface; nothing to redeliver.
func (st *nodeStore) Resync() error { return nil }

func (st *nodeStore) get(name string) (storedNode, bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	n, ok := st.nodes[name]
	return n, ok
}

// peers returns every node but this one.
func (st *nodeStore) peers() []model.Node {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]model.Node, 0, len(st.nodes))
	for name, n := range st.nodes {
		if name != st.self {
			out = append(out, n.node)
		}
	}
	return out
}

// clientGoLogger sends client-go's own logs (a failed watch on every retry)
// to the debug level: the session reports each problem once, at its level.
func clientGoLogger(l *slog.Logger) klog.Logger {
	return logr.FromSlogHandler(debugOnly{l.Handler()}).WithValues("component", "client-go")
}

// debugOnly logs client-go's records at debug level, and only those up to
// klog verbosity 2 (logr maps V(n) to slog level -n): higher ones dump
// every request.
type debugOnly struct{ slog.Handler }

func (h debugOnly) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= -2 && h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h debugOnly) Handle(ctx context.Context, r slog.Record) error {
	if !h.Handler.Enabled(ctx, slog.LevelDebug) {
		return nil // logr logs errors without asking Enabled first
	}
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugOnly) WithAttrs(a []slog.Attr) slog.Handler { return debugOnly{h.Handler.WithAttrs(a)} }
func (h debugOnly) WithGroup(g string) slog.Handler      { return debugOnly{h.Handler.WithGroup(g)} }
