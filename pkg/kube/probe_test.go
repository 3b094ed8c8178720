package kube

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// probedNodes is the fake Nodes client with a probe: while down, list and
// watch fail as on a refused connection, and so does the probe.
type probedNodes struct {
	fakeNodes
	down       atomic.Bool
	probes     atomic.Int64
	comeBackAt int64 // the probe that finds the server back (0: never by itself)
}

var errRefused = errors.New("dial tcp 192.0.2.1:6443: connect: connection refused")

func (p *probedNodes) List(ctx context.Context, o metav1.ListOptions) (*corev1.NodeList, error) {
	if p.down.Load() {
		return nil, errRefused
	}
	return p.fakeNodes.List(ctx, o)
}

func (p *probedNodes) Watch(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
	if p.down.Load() {
		return nil, errRefused
	}
	return p.fakeNodes.Watch(ctx, o)
}

func (p *probedNodes) Probe(context.Context) error {
	n := p.probes.Add(1)
	if p.comeBackAt > 0 && n >= p.comeBackAt {
		p.down.Store(false) // the server is back as this probe reaches it
	}
	if p.down.Load() {
		return errRefused
	}
	return nil
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(b)
}

func (l *logBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func startProbed(t *testing.T, nodes *probedNodes, self string) (*logBuffer, <-chan model.Update) {
	t.Helper()
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	src := New(Options{NodeName: self, Policy: kubenode.AddressPolicy{}, Client: nodes,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	out := make(chan model.Update, 64)
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx, out) }()
	t.Cleanup(func() { cancel(); <-done })
	return logs, out
}

const restartLog = "API server answers again"

// While the API server is down the session probes it; the first probe that
// reaches it again restarts the broken watches (instead of the reflector's
// next retry, by then 15-30 s away after a long outage), and the view
// follows the API again.
func TestWatchesRestartWhenTheAPIServerAnswersAgain(t *testing.T) {
	client := fake.NewClientset(node("a", []string{"10.244.1.0/24"}, "InternalIP=192.168.0.1"),
		node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2"))
	nodes := &probedNodes{fakeNodes: fakeNodes{client.CoreV1().Nodes()}, comeBackAt: 3}
	nodes.down.Store(true)
	logs, ch := startProbed(t, nodes, "a")
	if u := next(t, ch); u.Err == nil || !strings.Contains(u.Err.Error(), "connection refused") {
		t.Fatalf("while down: %s", describe(u))
	}
	deadline := time.After(20 * time.Second)
	for logs.count(restartLog) == 0 {
		select {
		case <-deadline:
			t.Fatalf("no restart of the watches after %d probes", nodes.probes.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := nodes.probes.Load(); n < 3 {
		t.Fatalf("restarted after %d probes, before one answered", n)
	}
	nextViewWithin(t, ch, 20*time.Second, func(v model.View) bool { return len(v.Peers) == 1 && v.Peers[0].Name == "b" })
	if n := logs.count(restartLog); n != 1 {
		t.Fatalf("%d restarts for one return of the API server", n)
	}
}

// A server that answers the probe but fails the list (500, a refusal) was
// never away: probing restarts nothing, so a failing cluster is not
// relisted every second; the reflector's backoff applies.
func TestProbeRestartsNothingWhenTheServerNeverStoppedAnswering(t *testing.T) {
	client := fake.NewClientset(node("a", []string{"10.244.1.0/24"}, "InternalIP=192.168.0.1"))
	client.PrependReactor("list", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcd timeout"))
	})
	nodes := &probedNodes{fakeNodes: fakeNodes{client.CoreV1().Nodes()}}
	logs, ch := startProbed(t, nodes, "a")
	if u := next(t, ch); u.Err == nil {
		t.Fatalf("list failing: %s", describe(u))
	}
	deadline := time.After(30 * time.Second)
	for nodes.probes.Load() < 4 {
		select {
		case <-deadline:
			t.Fatalf("only %d probes while the list fails", nodes.probes.Load())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if n := logs.count(restartLog); n != 0 {
		t.Fatalf("%d restarts though the server never stopped answering", n)
	}
}

// nextViewWithin is nextView with a longer wait.
func nextViewWithin(t *testing.T, ch <-chan model.Update, d time.Duration, ok func(model.View) bool) model.View {
	t.Helper()
	deadline := time.After(d)
	for {
		select {
		case u := <-ch:
			if u.View != nil && !u.PeersUnknown && ok(*u.View) {
				return *u.View
			}
		case <-deadline:
			t.Fatalf("no complete view as expected within %s", d)
			return model.View{}
		}
	}
}

// A watch that streams its initial list (client-go's WatchList, on by
// default since 1.35) is a success only once the store holds the complete
// list: a kube-apiserver still starting after an outage opens such streams
// and ends them early, and a session that took the opened stream for a
// healthy watch stopped probing while the reflector waited out its 15-30 s
// backoff (two of five agents missed the 15 s goal after a 10-minute
// outage that way).
func TestStreamedListIsASuccessOnlyOnceTheListIsComplete(t *testing.T) {
	client := fake.NewClientset()
	nodes := &probedNodes{fakeNodes: fakeNodes{client.CoreV1().Nodes()}}
	nodes.down.Store(true)
	src := New(Options{NodeName: "n1", Policy: kubenode.AddressPolicy{}, Client: nodes,
		Log: slog.New(slog.NewTextHandler(&logBuffer{}, nil))})
	w := newSession(src, nodes, nil).all
	ctx := context.Background()
	if _, err := w.lw.WatchFuncWithContext(ctx, metav1.ListOptions{}); err == nil || w.failure() == nil {
		t.Fatalf("server down: the watch call must fail and be recorded (err %v, failure %v)", err, w.failure())
	}
	nodes.down.Store(false)
	streamed := true
	wi, err := w.lw.WatchFuncWithContext(ctx, metav1.ListOptions{SendInitialEvents: &streamed})
	if err != nil {
		t.Fatal(err)
	}
	wi.Stop()
	if w.failure() == nil {
		t.Fatal("a stream that only opened to list counted as a healthy watch")
	}
	if err := w.store.Replace(nil, "1"); err != nil {
		t.Fatal(err)
	}
	if f := w.failure(); f != nil {
		t.Fatalf("after the complete list the watch is still failed: %v", f.err)
	}
	// A plain watch resuming from a version is a success when it opens.
	nodes.down.Store(true)
	_, _ = w.lw.WatchFuncWithContext(ctx, metav1.ListOptions{ResourceVersion: "1"})
	nodes.down.Store(false)
	wi, err = w.lw.WatchFuncWithContext(ctx, metav1.ListOptions{ResourceVersion: "1"})
	if err != nil {
		t.Fatal(err)
	}
	wi.Stop()
	if f := w.failure(); f != nil {
		t.Fatalf("a resumed watch that opened is still failed: %v", f.err)
	}
}
