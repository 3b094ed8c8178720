package agent

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/critest"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// syncBuffer is a log sink the watch's goroutine and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitFor(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// healthyStore is the record of a node where all is well on kindnet's
// side: CNI config written at written.
func healthyStore(written time.Time) *status.Store {
	store := status.NewStore("test", time.Now())
	store.Update(func(r *status.Record) {
		r.Agent.Running, r.Bootstrapped, r.Ready = true, true, true
		r.Source = status.Source{Name: "nodes file", ViewFrom: "nodes file", Healthy: true, Synced: true}
		r.CNI = status.CNI{Path: "/etc/cni/net.d/10-kindnet.conflist", Present: true, Written: written}
	})
	return store
}

// startWatch runs a watch of the fake runtime until the test ends.
func startWatch(t *testing.T, endpoints []string, store *status.Store, logs *syncBuffer) *runtimeWatch {
	t.Helper()
	w := newRuntimeWatch(endpoints, false, store, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	w.checker.Timeout = 200 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { w.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return w
}

// The case of issue 13: kindnet has written its CNI config, the runtime
// has not loaded it. The record, the verdict, the STATUS= line and the log
// say so; once the runtime reports the network ready, all of them follow.
func TestRuntimeWatchShowsARuntimeThatDisagrees(t *testing.T) {
	f := &critest.Runtime{}
	f.SetNetwork(false, "NetworkPluginNotReady", "Network plugin returns error: cni plugin not initialized")
	ep := critest.Serve(t, f)
	written := time.Now().Add(-2 * time.Minute)
	store := healthyStore(written)
	var logs syncBuffer
	w := startWatch(t, []string{ep}, store, &logs)

	waitFor(t, 5*time.Second, "record shows NetworkReady=false", func() bool {
		return store.Get().Runtime.State == status.RuntimeNotReady
	})
	select {
	case <-w.changes():
	case <-time.After(time.Second):
		t.Error("the main loop was not told the runtime's answer changed")
	}
	rec := store.Get()
	w.refresh(&rec)
	rec.Stamp(time.Now())
	wantReason := "CNI config written 2m ago but fakerd reports NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized"
	if rec.Verdict.State != status.Down || !strings.Contains(rec.Verdict.String(), wantReason) {
		t.Errorf("verdict %q, want down with %q", rec.Verdict, wantReason)
	}
	if s := rec.Summary(); !strings.Contains(s, "CNI config written but fakerd reports NetworkReady=false") {
		t.Errorf("STATUS= line %q does not say the runtime disagrees", s)
	}
	if l := logs.String(); !strings.Contains(l, "level=WARN") || !strings.Contains(l, "although kindnet's CNI config is written") {
		t.Errorf("no warning logged:\n%s", l)
	}

	f.SetNetwork(true, "", "")
	w.cniWritten()
	waitFor(t, 5*time.Second, "record shows NetworkReady=true", func() bool {
		return store.Get().Runtime.State == status.RuntimeReady
	})
	rec = store.Get()
	w.refresh(&rec)
	rec.Stamp(time.Now())
	if rec.Verdict.State != status.Healthy || rec.Runtime.Name != critest.Name || !rec.Runtime.Since.After(written) {
		t.Errorf("after the runtime loaded the config: verdict %q, runtime %+v", rec.Verdict, rec.Runtime)
	}
	if s := rec.Summary(); !strings.Contains(s, "CNI config ready, fakerd network ready") {
		t.Errorf("STATUS= line %q", s)
	}
}

// Readers of the record never wait for the runtime: a stale answer makes
// them ask for a check, which runs at once in the background; a runtime
// that hangs delays nobody and is reported as not answering.
func TestRuntimeWatchNeverMakesReadersWait(t *testing.T) {
	f := &critest.Runtime{}
	f.SetNetwork(true, "", "")
	ep := critest.Serve(t, f)
	store := healthyStore(time.Now().Add(-time.Hour))
	var logs syncBuffer
	w := startWatch(t, []string{ep}, store, &logs)
	waitFor(t, 5*time.Second, "first answer", func() bool { return store.Get().Runtime.State == status.RuntimeReady })

	time.Sleep(runtimeMaxAge + 100*time.Millisecond) // the answer is stale now
	calls := f.Calls()
	var rec status.Record
	w.refresh(&rec)
	// The next periodic check is runtimePollReady (15s) away: only the
	// reader's request explains a check within the next second.
	waitFor(t, time.Second, "a check asked for by a reader", func() bool { return f.Calls() > calls })

	f.SetHang(true)
	time.Sleep(runtimeMaxAge + 100*time.Millisecond)
	w.refresh(&rec) // starts a check that will hang for its 200ms timeout
	for range 5 {
		start := time.Now()
		w.refresh(&rec)
		if took := time.Since(start); took > 50*time.Millisecond {
			t.Fatalf("refresh took %s while the runtime hangs", took)
		}
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "record shows the runtime not answering", func() bool {
		return store.Get().Runtime.State == status.RuntimeUnanswered
	})
	rec = store.Get()
	rec.Stamp(time.Now())
	if rec.Verdict.State != status.Degraded || !strings.Contains(rec.Verdict.String(), "fakerd at "+ep+" does not answer: no answer within 200ms") {
		t.Errorf("verdict %q", rec.Verdict)
	}
}

func TestRuntimeWatchOffRecordsItOnceAndStops(t *testing.T) {
	store := status.NewStore("test", time.Now())
	w := newRuntimeWatch(nil, false, store, slog.New(slog.NewTextHandler(&syncBuffer{}, nil)))
	done := make(chan struct{})
	go func() { w.run(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return with the check off")
	}
	if got := store.Get().Runtime.State; got != status.RuntimeDisabled {
		t.Errorf("runtime state %q, want %q", got, status.RuntimeDisabled)
	}
	var nilWatch *runtimeWatch // an Agent built by hand in a test
	nilWatch.cniWritten()
	var rec status.Record
	nilWatch.refresh(&rec)
	if nilWatch.changes() != nil || fmt.Sprint(rec.Runtime) != fmt.Sprint(status.Runtime{}) {
		t.Error("a nil watch must do nothing")
	}
}
