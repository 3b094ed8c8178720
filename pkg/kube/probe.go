package kube

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// After an API server outage client-go's reflectors come back only at
// their next retry, and their backoff had grown to 15-30 s by then (30-60 s
// with client-go's default): every agent stayed blind that long after the
// API server answered again, a Node created meanwhile unrouted. While a
// watch is known broken, the session instead asks the API server a cheap
// question (GET /readyz, no body, no etcd read) every 1-2 s, and when it
// answers again after failing, restarts the broken watches at once, each
// agent after its own random delay so a control-plane upgrade does not make
// every node relist in the same second.
const (
	probeMin      = time.Second     // probe period while a watch is broken: probeMin plus up to probeMin of jitter
	probeTimeout  = time.Second     // an API server that needs longer is not back yet
	restartSpread = 3 * time.Second // restarts are spread over [0, restartSpread)
	// recoverWindow: how long after a failed probe the watches are still
	// restarted when they break; restartGapMin/Max bound the waits
	// between restarts then.
	recoverWindow = time.Minute
	restartGapMin = 2 * time.Second
	restartGapMax = 8 * time.Second
)

// prober is implemented by clients that can ask the API server whether it
// answers; a NodeAPI without it (client-go's fake in unit tests) relies on
// the reflectors' own retries.
type prober interface {
	// Probe returns nil when the API server answered: 200 from /readyz, or
	// a refusal (401, 403: anonymous or authenticated access to /readyz
	// removed), which is an answer too. A transport error, a timeout or a
	// 5xx (not ready yet) is not.
	Probe(ctx context.Context) error
}

// Probe implements prober. /readyz is open to every authenticated user
// (and anonymous ones) through the default ClusterRole
// system:public-info-viewer, so kubelet's identity needs nothing more.
func (n *restNodes) Probe(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var code int
	err := n.rc.Get().AbsPath("/readyz").Timeout(probeTimeout).Do(ctx).StatusCode(&code).Error()
	if err == nil || code == http.StatusUnauthorized || code == http.StatusForbidden {
		return nil
	}
	return err
}

// brokenByOutage: the watch's latest call failed for a reason an API
// server coming back can fix (not a refusal of the credentials).
func (w *watched) brokenByOutage() bool {
	f := w.failure()
	return w.running.Load() && f != nil && !apierrors.IsForbidden(f.err) && !apierrors.IsUnauthorized(f.err)
}

// watchProbe runs while the session does: idle (no request) while the
// watches are healthy; while one is broken, it probes every 1-2 s. When the
// server answers within recoverWindow of a failed probe, it restarts the
// broken watches: the first time after a random 0-3 s, then, if a watch
// breaks again while the server is still coming up (a list or watch
// refused by a kube-apiserver whose caches are not ready yet, which would
// put the reflector back into its long backoff), again after 2, 4, then
// every 8 s, jittered, until the window ends. A server that answers but
// fails the calls while it never stopped answering is left to the
// reflectors' backoff: no relist every second of a cluster in trouble.
func (s *session) watchProbe(ctx context.Context, p prober) {
	var lastDown time.Time // when a probe last failed
	var gap time.Duration  // wait before the next restart; 0: first restart since the watches were healthy
	for {
		if !sleepFor(ctx, probeMin+rand.N(probeMin)) {
			return
		}
		var broken []*watched
		for _, w := range []*watched{s.all, s.own} {
			if w.brokenByOutage() {
				broken = append(broken, w)
			}
		}
		if len(broken) == 0 {
			gap = 0
			continue
		}
		if err := p.Probe(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			lastDown = time.Now()
			continue
		}
		if lastDown.IsZero() || time.Since(lastDown) > recoverWindow {
			continue // the server never stopped answering: no outage to end
		}
		delay := rand.N(restartSpread)
		if gap > 0 {
			delay = gap/2 + rand.N(gap/2)
		}
		gap = min(max(2*gap, restartGapMin), restartGapMax)
		s.src.log.Info("API server answers again; restarting the Node watches now instead of at the client's next retry",
			"in", delay.Round(time.Millisecond))
		if !sleepFor(ctx, delay) {
			return
		}
		for _, w := range broken {
			w.restartNow()
		}
	}
}

// sleepFor waits d; it reports false when ctx ended.
func sleepFor(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
