package kube

import (
	"context"
	"log/slog"
	"slices"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/go-logr/logr"
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

// nodeStore is a reflector's store: the slimmed Nodes of one watch. It
// kicks the session on every change that matters, and counts as synced once
// the reflector delivered its first complete list (Replace).
type nodeStore struct {
	cache.Store // thread-safe, keyed by name
	self        string
	poke        func()
	synced      atomic.Bool
}

var _ cache.TransformingStore = (*nodeStore)(nil)

// Transformer slims Nodes also in the reflector's temporary store during a
// streamed initial list, so 5,000 full Nodes never sit in memory at once.
func (s *nodeStore) Transformer() cache.TransformFunc { return slimNode }

func (s *nodeStore) Add(obj any) error {
	n, _ := slimNode(obj)
	err := s.Store.Add(n)
	s.poke()
	return err
}

func (s *nodeStore) Update(obj any) error {
	n, _ := slimNode(obj)
	old, exists, _ := s.Store.Get(n)
	err := s.Store.Update(n)
	if !exists || relevantChange(old, n, s.self) {
		s.poke()
	}
	return err
}

func (s *nodeStore) Delete(obj any) error {
	err := s.Store.Delete(obj)
	s.poke()
	return err
}

// Replace takes a complete list: after a reconnect, a Node missing from it
// is gone for real.
func (s *nodeStore) Replace(list []any, rv string) error {
	for i := range list {
		list[i], _ = slimNode(list[i])
	}
	err := s.Store.Replace(list, rv)
	s.synced.Store(true)
	s.poke()
	return err
}

// Resync is part of the reflector's store interface; there is nothing to
// re-deliver here.
func (s *nodeStore) Resync() error { return nil }

// clientGoLogger sends client-go's own logs (a failed watch on every retry)
// to the debug level: the session reports each problem once, at its level.
func clientGoLogger(l *slog.Logger) klog.Logger {
	return logr.FromSlogHandler(debugOnly{l.Handler()}).WithValues("component", "client-go")
}

// debugOnly logs every record at debug level.
type debugOnly struct{ slog.Handler }

func (h debugOnly) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h debugOnly) Handle(ctx context.Context, r slog.Record) error {
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugOnly) WithAttrs(a []slog.Attr) slog.Handler { return debugOnly{h.Handler.WithAttrs(a)} }
func (h debugOnly) WithGroup(g string) slog.Handler      { return debugOnly{h.Handler.WithGroup(g)} }
