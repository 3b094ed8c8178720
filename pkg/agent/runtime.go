package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/criruntime"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// How often the container runtime is asked. While it reports the network
// ready a slow pace is enough; otherwise it is asked more often, so a
// runtime that loads the CNI config is seen within seconds (kubelet asks
// every 5s). Each check is one local gRPC call with its own timeout.
const (
	runtimePollReady    = 15 * time.Second
	runtimePollNotReady = 3 * time.Second
	// runtimeReloadDelay gives the runtime time to reload its CNI configs
	// after the agent wrote the conflist, before it is asked again.
	runtimeReloadDelay = time.Second
	// runtimeMaxAge is how old an answer may be when the record is read
	// (status socket, /metrics) before a reader asks for a new check.
	runtimeMaxAge = time.Second
)

// runtimeWatch asks the container runtime what it reports about the pod
// network (criruntime), in its own goroutine: every few seconds, shortly
// after a reconcile wrote the CNI config, and at once when the record is
// read and the last answer is older than runtimeMaxAge. It never runs on
// the main loop nor before READY=1, and a reader never waits for it
// either (`kindnet status` gives the agent one second): a runtime that
// hangs delays nothing but its own answer, which then says it hung.
//
// The record's runtime section is updated only when the answer changes
// (so a `kindnet status --watch` is woken by a change, not by every
// check); readers get the latest answer, with its time, through refresh.
type runtimeWatch struct {
	checker criruntime.Checker
	store   *status.Store
	log     *slog.Logger
	// written is kicked when a reconcile wrote the CNI config; stale when
	// a reader found the last answer too old.
	written, stale chan struct{}
	// changed tells the main loop that the runtime's part of the
	// STATUS= line may have changed.
	changed chan struct{}

	mu   sync.Mutex // guards last
	last status.Runtime
}

func newRuntimeWatch(endpoints []string, auto bool, store *status.Store, log *slog.Logger) *runtimeWatch {
	return &runtimeWatch{
		checker: criruntime.Checker{Endpoints: endpoints, Auto: auto},
		store:   store, log: log,
		written: make(chan struct{}, 1),
		stale:   make(chan struct{}, 1),
		changed: make(chan struct{}, 1),
	}
}

// run checks until ctx ends. With the check turned off it records that
// once and returns.
func (w *runtimeWatch) run(ctx context.Context) {
	if w == nil {
		return
	}
	for {
		rt := w.check(ctx)
		if rt.State == status.RuntimeDisabled {
			return
		}
		wait := runtimePollNotReady
		if rt.State == status.RuntimeReady {
			wait = runtimePollReady
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-w.stale:
			timer.Stop()
		case <-w.written:
			timer.Stop()
			select {
			case <-ctx.Done():
				return
			case <-time.After(runtimeReloadDelay):
			}
		}
	}
}

// cniWritten asks for a check soon: the runtime should now load the
// config. It never blocks.
func (w *runtimeWatch) cniWritten() {
	if w != nil {
		kick(w.written)
	}
}

// refresh completes a copy of the record with the latest answer, and asks
// for a new check when that answer is older than runtimeMaxAge. It never
// waits for the runtime.
func (w *runtimeWatch) refresh(r *status.Record) {
	if w == nil {
		return
	}
	w.mu.Lock()
	rt := w.last
	w.mu.Unlock()
	if rt.State != "" && rt.State != status.RuntimeDisabled && time.Since(rt.Checked) >= runtimeMaxAge {
		kick(w.stale)
	}
	if rt.State != "" {
		r.Runtime = rt
	}
}

func kick(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// changes is nil (never ready) without a watch.
func (w *runtimeWatch) changes() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.changed
}

// check asks the runtime, and records and logs a changed answer. Only
// run calls it, so checks never overlap.
func (w *runtimeWatch) check(ctx context.Context) status.Runtime {
	next := w.checker.Check(ctx)
	w.mu.Lock()
	prevState := w.last.State
	changed := w.last.Observe(next)
	rt := w.last
	w.mu.Unlock()
	if !changed {
		return rt
	}
	var cni status.CNI
	w.store.Update(func(r *status.Record) {
		r.Runtime = rt
		cni = r.CNI
	})
	kick(w.changed)
	w.logAnswer(rt, prevState, cni)
	return rt
}

// logAnswer logs a changed answer: a warning when the runtime reports the
// network not ready while kindnet's CNI config is written (the runtime has
// not loaded it, or the plugin's STATUS fails), or when it cannot be asked.
func (w *runtimeWatch) logAnswer(rt status.Runtime, prevState string, cni status.CNI) {
	args := []any{"endpoint", rt.Endpoint, "state", rt.State}
	if rt.Name != "" {
		args = append(args, "runtime", rt.Name, "runtimeVersion", rt.Version)
	}
	switch rt.State {
	case status.RuntimeReady:
		w.log.Info("container runtime reports the pod network ready", args...)
	case status.RuntimeNotReady:
		args = append(args, "reason", rt.Reason, "message", rt.Message, "cniConfig", cni.Path, "cniConfigPresent", cni.Present)
		if cni.Present {
			w.log.Warn("container runtime reports NetworkReady=false although kindnet's CNI config is written", args...)
		} else {
			w.log.Info("container runtime reports NetworkReady=false; kindnet has not written its CNI config yet", args...)
		}
	case status.RuntimeUnanswered, status.RuntimeNoSocket:
		w.log.Warn("cannot ask the container runtime about the pod network", append(args, "err", rt.Error)...)
	case status.RuntimeNotFound:
		if prevState != "" {
			w.log.Info("no container runtime socket found any more", append(args, "detail", rt.Error)...)
		} else {
			w.log.Debug("no container runtime socket found (cri.endpoint auto); it is looked for again at every check", "detail", rt.Error)
		}
	case status.RuntimeDisabled:
		w.log.Debug("not asking the container runtime (cri.endpoint none)")
	}
}
