package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ReadyReason is the reason kindnet writes on NetworkUnavailable=False.
const ReadyReason = "KindnetReady"

const (
	patchTimeout  = 10 * time.Second
	patchRetryMin = 2 * time.Second
	patchRetryMax = 2 * time.Minute
)

// markNetworkReady sets this node's NetworkUnavailable condition to False,
// once the agent said its routes are in place, unless the condition already
// says so. It is kindnet's claim about its routes only: the container
// runtime's NetworkReady (has it loaded the CNI config?) reaches the Node
// through kubelet's Ready condition, and kindnet shows it in its status
// record rather than copying it here (docs/kubernetes.md). kubelet's identity may patch its own Node's status (Node
// authorizer), so this needs no extra permission. A failure is logged and
// retried with backoff; it never affects the view.
func (s *session) markNetworkReady(ctx context.Context) {
	if !s.src.readyWanted.Load() {
		return
	}
	n, ok := s.ownNode()
	if !ok {
		return // not seen yet: the next publish retries
	}
	if c := n.unavailable; c != nil && c.Status == corev1.ConditionFalse && c.Reason == ReadyReason {
		return
	}
	if s.patched && sameCondition(n.unavailable, s.patchedOver) {
		return // our patch is done; the watch has not shown it yet
	}
	if time.Now().Before(s.nextPatch) {
		return // a retry is scheduled; do not hammer the API server
	}
	pctx, cancel := context.WithTimeout(ctx, patchTimeout)
	defer cancel()
	_, err := s.nodes.PatchStatus(pctx, n.node.Name, networkReadyPatch(time.Now()))
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		s.patchDelay = min(max(2*s.patchDelay, patchRetryMin), patchRetryMax)
		s.nextPatch = time.Now().Add(s.patchDelay)
		s.patchRetry.Reset(s.patchDelay)
		s.src.log.Warn("cannot set NetworkUnavailable=False on this node; retrying", "node", n.node.Name, "retryIn", s.patchDelay, "err", err)
		return
	}
	s.patchDelay, s.nextPatch = 0, time.Time{}
	s.patched, s.patchedOver = true, n.unavailable
	s.src.log.Info("node condition NetworkUnavailable set to False", "node", n.node.Name, "reason", ReadyReason)
}

// networkReadyPatch is a strategic merge patch of status.conditions (merged
// by type, so kubelet's own conditions are untouched).
func networkReadyPatch(now time.Time) []byte {
	ts := metav1.NewTime(now)
	p := map[string]any{"status": map[string]any{"conditions": []corev1.NodeCondition{{
		Type:               corev1.NodeNetworkUnavailable,
		Status:             corev1.ConditionFalse,
		Reason:             ReadyReason,
		Message:            "kindnet installed the routes to this node's peers",
		LastTransitionTime: ts,
		LastHeartbeatTime:  ts,
	}}}}
	b, err := json.Marshal(p)
	if err != nil {
		panic(fmt.Sprintf("kube: marshal a fixed patch: %v", err)) // cannot happen: plain data
	}
	return b
}

// sameCondition reports whether two observations of a condition are the
// same state: a condition set again by someone else (True once more after
// kindnet's False) has at least a new transition time.
func sameCondition(a, b *corev1.NodeCondition) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message &&
		a.LastTransitionTime.Equal(&b.LastTransitionTime)
}
