package kube

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

// session follows the API with one client (one set of credentials). It
// runs two watches side by side, each a client-go reflector feeding a store
// of slimmed Nodes:
//
//   - all: every Node, the source of the peers. Listing all Nodes needs
//     kindnet's ClusterRole; without it this watch only reports 403.
//   - own: this node alone (field selector metadata.name), which kubelet's
//     identity may always read. It runs until the node has its podCIDRs and
//     "all" is healthy, so the CNI config never waits for the peer list (nor
//     for the ClusterRole), and the peers' routes never wait for the own
//     podCIDR.
//
// One goroutine (run) owns the session; stores only kick it.
type session struct {
	src   *Source
	nodes NodeAPI
	rep   *reporter
	kick  chan struct{}

	all, own *watched
	ownStop  context.CancelFunc // stops own; nil once stopped

	// networkUnavailable handling: when the last patch failed, retry at.
	patchRetry *time.Timer
	patchDelay time.Duration
	nextPatch  time.Time
	// patched is set by a successful patch, and patchedOver is the
	// condition it replaced: while the watch still shows that condition,
	// the patch's own update has not arrived yet, and patching again would
	// only repeat it.
	patched     bool
	patchedOver *corev1.NodeCondition
}

// watched is one reflector, its store, and the outcome of its latest list
// or watch call.
type watched struct {
	name string // "all Nodes" or "own Node"
	// newReflector builds a fresh reflector over the store: a restart
	// after an outage starts one with its backoff reset.
	newReflector func() *cache.Reflector
	store        *nodeStore
	restart      chan struct{} // restartNow: replace the reflector now
	lw           *cache.ListWatch
	running      atomic.Bool // run has not returned (own stops once not needed)

	mu      sync.Mutex
	lastErr *callError // nil when the latest list/watch call succeeded
}

// callError is a failed list or watch call.
type callError struct {
	verb string // "list" or "watch"
	err  error
}

// retry is how the reflectors back off after a failed list or watch:
// client-go's default ends at 30-60 s between tries, which after an API
// server outage left agents stale for up to a minute; this ends at 15-30 s,
// about 0.05 requests per second per node while the API server is down.
func retry() *wait.Backoff {
	return &wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 1, Steps: 1 << 30, Cap: 15 * time.Second}
}

func newSession(src *Source, nodes NodeAPI, rep *reporter) *session {
	s := &session{src: src, nodes: nodes, rep: rep, kick: make(chan struct{}, 1)}
	s.all = s.newWatched("all Nodes", nil)
	s.own = s.newWatched("own Node", fields.OneTermEqualSelector("metadata.name", src.opts.NodeName))
	return s
}

// newWatched builds a reflector over Nodes (those matching sel, or all).
// No informer machinery: the session reads the store whenever it is
// kicked, so a queue and event handlers would only cost memory. No
// periodic resync either: the agent re-checks the kernel on its own.
func (s *session) newWatched(name string, sel fields.Selector) *watched {
	w := &watched{name: name, store: newNodeStore(s.src.opts.NodeName, s.src.opts.Policy, s.poke), restart: make(chan struct{}, 1)}
	nodes := s.nodes
	filter := func(o *metav1.ListOptions) {
		if sel != nil {
			o.FieldSelector = sel.String()
		}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			filter(&o)
			l, err := nodes.List(ctx, o)
			s.recordCall(w, "list", err)
			return l, err
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			filter(&o)
			wi, err := nodes.Watch(ctx, o)
			if err == nil && o.SendInitialEvents != nil && *o.SendInitialEvents {
				// A watch that streams the initial list (client-go's
				// WatchList): the call opening it is not a success yet. A
				// kube-apiserver still starting after an outage opens the
				// stream and ends it before the list is complete, and the
				// reflector then waits out its backoff: the watch stays
				// broken, for the outage probe too, until the store has
				// the complete list (Replace).
				return wi, nil
			}
			s.recordCall(w, "watch", err)
			return wi, err
		},
	}
	// A complete list delivered is the success a streamed list waits for.
	w.store.onReplace = func() { s.recordCall(w, "list", nil) }
	w.lw = lw
	logger := clientGoLogger(s.src.log)
	w.newReflector = func() *cache.Reflector {
		return cache.NewReflectorWithOptions(cache.ToListWatcherWithWatchListSemantics(lw, s.nodes), &corev1.Node{}, w.store,
			cache.ReflectorOptions{Name: "kindnet " + name, TypeDescription: "*v1.Node", Logger: &logger, Backoff: retry()})
	}
	return w
}

// run runs a reflector until ctx ends, and replaces it by a fresh one
// (which lists again at once) on restartNow. The store and what it holds
// stay: the new list replaces them as any relist does. client-go's own
// reports of failed calls go to the debug log: the session reports each
// problem once.
func (w *watched) run(ctx context.Context, log *slog.Logger) {
	w.running.Store(true)
	defer w.running.Store(false)
	for {
		rctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		r := w.newReflector()
		go func() { defer close(done); r.RunWithContext(klog.NewContext(rctx, clientGoLogger(log))) }()
		select {
		case <-ctx.Done():
		case <-w.restart:
		}
		cancel()
		<-done
		if ctx.Err() != nil {
			return
		}
	}
}

// restartNow makes run replace the reflector, ending its backoff wait.
func (w *watched) restartNow() {
	select {
	case w.restart <- struct{}{}:
	default:
	}
}

// recordCall remembers the outcome of a list or watch call and kicks the
// session when health changed. A cancelled call (session ending) is no news.
func (s *session) recordCall(w *watched, verb string, err error) {
	if err != nil && (errors.Is(err, context.Canceled) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err)) {
		return // the session is ending, or the reflector just relists: no news
	}
	w.mu.Lock()
	was := w.lastErr
	if err == nil {
		w.lastErr = nil
	} else {
		w.lastErr = &callError{verb: verb, err: err}
	}
	changed := (was == nil) != (w.lastErr == nil) || (was != nil && w.lastErr != nil && was.err.Error() != err.Error())
	w.mu.Unlock()
	if changed {
		s.poke()
	}
}

func (w *watched) failure() *callError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// healthy: the store holds a complete, current list.
func (w *watched) healthy() bool { return w.store.synced.Load() && w.failure() == nil }

func (s *session) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run starts both watches and publishes on every kick until ctx ends.
func (s *session) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { s.all.run(ctx, s.src.log) })
	ownCtx, stopOwn := context.WithCancel(ctx)
	s.ownStop = stopOwn
	defer stopOwn()
	wg.Go(func() { s.own.run(ownCtx, s.src.log) })
	if p, ok := s.nodes.(prober); ok {
		wg.Go(func() { s.watchProbe(ctx, p) })
	}
	s.patchRetry = time.NewTimer(time.Hour)
	s.patchRetry.Stop()
	defer s.patchRetry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
			s.publish(ctx)
		case <-s.src.readyKick:
			s.markNetworkReady(ctx)
		case <-s.patchRetry.C:
			s.markNetworkReady(ctx)
		}
	}
}

// publish sends what the watches know now: a problem when listing all
// Nodes fails, the complete view when that list is current, and this node
// alone (PeersUnknown) while it is not.
func (s *session) publish(ctx context.Context) {
	self, haveSelf := s.self()
	if f := s.all.failure(); f != nil {
		s.rep.fail(ctx, explain(f, s.src.opts.NodeName, "all"))
	} else if f := s.own.failure(); f != nil && s.ownStop != nil && !s.all.healthy() {
		s.rep.fail(ctx, explain(f, s.src.opts.NodeName, "own"))
	}
	switch {
	case s.all.healthy():
		s.rep.view(ctx, s.view(self))
	case haveSelf:
		s.rep.partial(ctx, self)
	}
	if s.ownStop != nil && s.all.healthy() && len(self.PodCIDRs) > 0 {
		// podCIDRs never change once set: the full watch covers the rest.
		s.ownStop()
		s.ownStop = nil
	}
	if s.src.readyWanted.Load() {
		s.markNetworkReady(ctx)
	}
}

// self is this node as the most specific watch sees it.
func (s *session) self() (model.Node, bool) {
	if n, ok := s.ownNode(); ok {
		return n.node, true
	}
	return model.Node{Name: s.src.opts.NodeName}, false
}

// ownNode returns what is known of this node's Node object.
func (s *session) ownNode() (storedNode, bool) {
	for _, w := range []*watched{s.own, s.all} {
		if w == s.own && s.ownStop == nil {
			continue
		}
		if n, ok := w.store.get(s.src.opts.NodeName); ok {
			return n, true
		}
	}
	return storedNode{}, false
}

// view builds the complete view from the full watch's store.
func (s *session) view(self model.Node) model.View {
	v := model.View{Self: self, Peers: s.all.store.peers()}
	v.Normalize()
	return v
}
