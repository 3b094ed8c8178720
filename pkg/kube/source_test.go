package kube

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// node builds a Node: addrs are "InternalIP=1.2.3.4" or "ExternalIP=…".
func node(name string, podCIDRs []string, addrs ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	for _, a := range addrs {
		typ, ip, _ := strings.Cut(a, "=")
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeAddressType(typ), Address: ip})
	}
	return n
}

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a source over a fake clientset and returns its updates.
func start(t *testing.T, client *fake.Clientset, self string, pol kubenode.AddressPolicy) (*Source, <-chan model.Update) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	src := New(Options{NodeName: self, Policy: pol, Client: fakeNodes{client.CoreV1().Nodes()}, Log: quietLog()})
	out := make(chan model.Update, 64)
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx, out) }()
	t.Cleanup(func() { cancel(); <-done })
	return src, out
}

// fakeNodes is the fake clientset's Nodes client, which (like the fake
// clientset itself) cannot stream initial events: the reflector must list.
type fakeNodes struct{ NodeAPI }

func (fakeNodes) IsWatchListSemanticsUnSupported() bool { return true }

// next returns the next update, failing after 5 s.
func next(t *testing.T, ch <-chan model.Update) model.Update {
	t.Helper()
	select {
	case u := <-ch:
		return u
	case <-time.After(5 * time.Second):
		t.Fatal("no update from the source within 5s")
		return model.Update{}
	}
}

// nextView skips updates until a complete view satisfies ok.
func nextView(t *testing.T, ch <-chan model.Update, ok func(model.View) bool) model.View {
	t.Helper()
	deadline := time.After(5 * time.Second)
	var last model.Update
	for {
		select {
		case u := <-ch:
			last = u
			if u.View != nil && !u.PeersUnknown && ok(*u.View) {
				return *u.View
			}
		case <-deadline:
			t.Fatalf("no matching view within 5s; last update: %+v", describe(last))
		}
	}
}

func describe(u model.Update) string {
	switch {
	case u.Err != nil:
		return "error: " + u.Err.Error()
	case u.View != nil:
		return fmtView(*u.View)
	}
	return "none"
}

func fmtView(v model.View) string {
	s := "self=" + v.Self.Name + strings.Join(v.Self.PodCIDRs, ",") + " peers="
	for _, p := range v.Peers {
		s += p.Name + "[" + strings.Join(p.Addresses, ",") + "|" + strings.Join(p.PodCIDRs, ",") + "] "
	}
	return s
}

func TestViewFromInformerMapsNodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		nodes  []*corev1.Node
		policy kubenode.AddressPolicy
		want   model.View
	}{{
		name: "self and peers, dual-stack, primary first",
		nodes: []*corev1.Node{
			node("a", []string{"10.244.1.0/24", "fd00:10:244:1::/64"}, "InternalIP=192.168.0.1", "InternalIP=fd00::1", "Hostname=a"),
			node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2", "ExternalIP=203.0.113.2"),
			node("c", nil, "InternalIP=192.168.0.3"),
		},
		want: model.View{
			Self: model.Node{Name: "a", Addresses: []string{"192.168.0.1", "fd00::1"}, PodCIDRs: []string{"10.244.1.0/24", "fd00:10:244:1::/64"}},
			Peers: []model.Node{
				{Name: "b", Addresses: []string{"192.168.0.2"}, PodCIDRs: []string{"10.244.2.0/24"}},
				{Name: "c", Addresses: []string{"192.168.0.3"}},
			},
		},
	}, {
		name: "ExternalIP ignored by default",
		nodes: []*corev1.Node{
			node("a", nil),
			node("b", []string{"10.244.2.0/24"}, "ExternalIP=203.0.113.2"),
		},
		want: model.View{Self: model.Node{Name: "a"}, Peers: []model.Node{{Name: "b", PodCIDRs: []string{"10.244.2.0/24"}}}},
	}, {
		name:   "ExternalIP used per family when allowed and no InternalIP of that family",
		policy: kubenode.AddressPolicy{AllowExternalIP: true},
		nodes: []*corev1.Node{
			node("a", nil),
			node("b", []string{"10.244.2.0/24", "fd00:10:244:2::/64"}, "InternalIP=fd00::2", "ExternalIP=203.0.113.2", "ExternalIP=2001:db8::2"),
		},
		want: model.View{Self: model.Node{Name: "a"}, Peers: []model.Node{
			{Name: "b", Addresses: []string{"fd00::2", "203.0.113.2"}, PodCIDRs: []string{"10.244.2.0/24", "fd00:10:244:2::/64"}}}},
	}, {
		name:  "own node not registered yet",
		nodes: []*corev1.Node{node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2")},
		want: model.View{Self: model.Node{Name: "a"}, Peers: []model.Node{
			{Name: "b", Addresses: []string{"192.168.0.2"}, PodCIDRs: []string{"10.244.2.0/24"}}}},
	}, {
		name: "hostile values reach validation unchanged",
		nodes: []*corev1.Node{
			node("a", nil),
			node("evil", []string{"0.0.0.0/0"}, "InternalIP=127.0.0.1"),
		},
		want: model.View{Self: model.Node{Name: "a"}, Peers: []model.Node{
			{Name: "evil", Addresses: []string{"127.0.0.1"}, PodCIDRs: []string{"0.0.0.0/0"}}}},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			objs := make([]runtime.Object, len(tc.nodes))
			for i, n := range tc.nodes {
				objs[i] = n
			}
			_, ch := start(t, fake.NewClientset(objs...), "a", tc.policy)
			got := nextView(t, ch, func(model.View) bool { return true })
			if !got.Equal(tc.want) {
				t.Errorf("view:\n got  %s\n want %s", fmtView(got), fmtView(tc.want))
			}
		})
	}
}

func TestSourceFollowsNodeEvents(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset(node("a", []string{"10.244.1.0/24"}, "InternalIP=192.168.0.1"))
	_, ch := start(t, client, "a", kubenode.AddressPolicy{})
	nextView(t, ch, func(v model.View) bool { return len(v.Peers) == 0 && v.Self.Name == "a" })
	nodes := client.CoreV1().Nodes()

	steps := []struct {
		what string
		do   func() error
		want func(model.View) bool
	}{{
		"peer created",
		func() error {
			_, err := nodes.Create(ctx, node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2"), metav1.CreateOptions{})
			return err
		},
		func(v model.View) bool { return len(v.Peers) == 1 && v.Peers[0].Addresses[0] == "192.168.0.2" },
	}, {
		"peer's InternalIP changed",
		func() error {
			_, err := nodes.Update(ctx, node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.22"), metav1.UpdateOptions{})
			return err
		},
		func(v model.View) bool { return len(v.Peers) == 1 && v.Peers[0].Addresses[0] == "192.168.0.22" },
	}, {
		"peer deleted",
		func() error { return nodes.Delete(ctx, "b", metav1.DeleteOptions{}) },
		func(v model.View) bool { return len(v.Peers) == 0 },
	}, {
		"podCIDR reused by a new node",
		func() error {
			_, err := nodes.Create(ctx, node("c", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.3"), metav1.CreateOptions{})
			return err
		},
		func(v model.View) bool {
			return len(v.Peers) == 1 && v.Peers[0].Name == "c" && v.Peers[0].PodCIDRs[0] == "10.244.2.0/24"
		},
	}}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		nextView(t, ch, st.want)
	}
}

func TestSourceIgnoresIrrelevantUpdates(t *testing.T) {
	ctx := context.Background()
	b := node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2")
	client := fake.NewClientset(node("a", nil), b)
	_, ch := start(t, client, "a", kubenode.AddressPolicy{})
	nextView(t, ch, func(v model.View) bool { return len(v.Peers) == 1 })

	b = b.DeepCopy()
	b.Labels = map[string]string{"heartbeat": "1"}
	b.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := client.CoreV1().Nodes().Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	select {
	case u := <-ch:
		t.Fatalf("an update that changes no address or podCIDR produced %s", describe(u))
	case <-time.After(300 * time.Millisecond):
	}
}

// forbidList makes listing and watching all Nodes fail with 403 while the
// own node (field selector) stays readable, as for a kubelet identity
// without kindnet's ClusterRole.
func forbidList(client *fake.Clientset, forbidden *atomic.Bool) {
	gr := schema.GroupResource{Resource: "nodes"}
	client.PrependReactor("list", "nodes", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if forbidden.Load() && a.(k8stesting.ListAction).GetListRestrictions().Fields.Empty() {
			return true, nil, apierrors.NewForbidden(gr, "", errors.New(`User "system:node:a" cannot list resource "nodes"`))
		}
		return false, nil, nil
	})
}

func TestForbiddenListKeepsPeersAndExplainsTheFix(t *testing.T) {
	var forbidden atomic.Bool
	forbidden.Store(true)
	client := fake.NewClientset(node("a", []string{"10.244.1.0/24"}, "InternalIP=192.168.0.1"),
		node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2"))
	forbidList(client, &forbidden)
	_, ch := start(t, client, "a", kubenode.AddressPolicy{})

	var sawErr, sawSelf bool
	for !sawErr || !sawSelf {
		u := next(t, ch)
		switch {
		case u.Err != nil:
			sawErr = true
			msg := u.Err.Error()
			if !errors.Is(u.Err, ErrForbidden) || !strings.Contains(msg, RBACCommand) || !strings.Contains(msg, "list") ||
				!strings.Contains(msg, "system:nodes") {
				t.Errorf("403 message does not say what is missing and how to fix it: %s", msg)
			}
		case u.View != nil && u.PeersUnknown:
			sawSelf = true
			if u.View.Self.PodCIDRs[0] != "10.244.1.0/24" {
				t.Errorf("own node from the field-selected watch: got %s", fmtView(*u.View))
			}
		case u.View != nil:
			t.Fatalf("a complete view was sent while listing Nodes is forbidden: %s", fmtView(*u.View))
		}
	}
	// The reflector retries (list, then watch, with backoff): the same
	// problem is not reported again.
	deadline := time.After(2500 * time.Millisecond)
	for waiting := true; waiting; {
		select {
		case u := <-ch:
			if u.Err != nil {
				t.Fatalf("the same 403 reported again: %v", u.Err)
			}
		case <-deadline:
			waiting = false
		}
	}
	if n := countListCalls(client); n < 2 {
		t.Fatalf("the source did not retry listing within 2.5s (%d list calls)", n)
	}
	forbidden.Store(false) // the binding was applied: the reflector's retry succeeds
	nextView(t, ch, func(v model.View) bool { return len(v.Peers) == 1 && v.Peers[0].Name == "b" })
}

func TestNetworkReadyPatchesOwnNodeCondition(t *testing.T) {
	a := node("a", []string{"10.244.1.0/24"}, "InternalIP=192.168.0.1")
	a.Status.Conditions = []corev1.NodeCondition{
		{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue, Reason: "NoRouteCreated"},
		{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"},
	}
	client := fake.NewClientset(a)
	src, ch := start(t, client, "a", kubenode.AddressPolicy{})
	nextView(t, ch, func(model.View) bool { return true })
	src.NetworkReady()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := client.CoreV1().Nodes().Get(context.Background(), "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		c := findCondition(n, corev1.NodeNetworkUnavailable)
		if c.Status == corev1.ConditionFalse && c.Reason == ReadyReason {
			if r := findCondition(n, corev1.NodeReady); r == nil || r.Reason != "KubeletReady" {
				t.Errorf("patch changed kubelet's own conditions: %+v", n.Status.Conditions)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NetworkUnavailable not set to False: %+v", c)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Once it says so, it is not patched again.
	patches := func() int {
		n := 0
		for _, a := range client.Actions() {
			if a.GetVerb() == "patch" && a.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	before := patches()
	src.NetworkReady()
	time.Sleep(200 * time.Millisecond)
	if got := patches(); got != before {
		t.Errorf("patched again although the condition was already False: %d patches, was %d", got, before)
	}

	// Someone (a controller) sets it to True again: kindnet's routes are
	// still in place, so it is set back to False.
	n, err := client.CoreV1().Nodes().Get(context.Background(), "a", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := findCondition(n, corev1.NodeNetworkUnavailable)
	c.Status, c.Reason, c.LastTransitionTime = corev1.ConditionTrue, "NoRouteCreated", metav1.NewTime(time.Now().Add(time.Second))
	if _, err := client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		n, err := client.CoreV1().Nodes().Get(context.Background(), "a", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if c := findCondition(n, corev1.NodeNetworkUnavailable); c.Status == corev1.ConditionFalse && c.Reason == ReadyReason {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("NetworkUnavailable set to True by someone else was not set back to False (%d patches)", patches())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestSlimNodeDropsWhatKindnetDoesNotRead(t *testing.T) {
	n := node("a", []string{"10.244.1.0/24"}, "InternalIP=192.168.0.1")
	n.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}
	n.Annotations = map[string]string{"big": strings.Repeat("x", 1000)}
	n.Status.Images = []corev1.ContainerImage{{Names: []string{"registry/image:tag"}, SizeBytes: 1}}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady}, {Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue}}
	got, err := slimNode(n)
	if err != nil {
		t.Fatal(err)
	}
	s := got.(*corev1.Node)
	if len(s.ManagedFields) != 0 || len(s.Annotations) != 0 || len(s.Status.Images) != 0 {
		t.Errorf("slim node kept managedFields, annotations or images: %+v", s)
	}
	if len(s.Status.Conditions) != 1 || s.Status.Conditions[0].Type != corev1.NodeNetworkUnavailable {
		t.Errorf("slim node conditions: %+v", s.Status.Conditions)
	}
	if !(model.View{Self: kubenode.ToNode(s, kubenode.AddressPolicy{})}).Equal(model.View{Self: kubenode.ToNode(n, kubenode.AddressPolicy{})}) {
		t.Errorf("slim node maps to a different cluster node")
	}
}

func TestStoreKicksOnlyOnChangesKindnetUses(t *testing.T) {
	base := node("b", []string{"10.244.2.0/24"}, "InternalIP=192.168.0.2")
	with := func(f func(n *corev1.Node)) *corev1.Node { n := base.DeepCopy(); f(n); return n }
	unavailable := func(s corev1.ConditionStatus) func(n *corev1.Node) {
		return func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeNetworkUnavailable, Status: s}}
		}
	}
	for _, tc := range []struct {
		name     string
		old, new *corev1.Node
		self     string
		want     bool
	}{
		{"resourceVersion only", base, with(func(n *corev1.Node) { n.ResourceVersion = "9" }), "a", false},
		{"Ready condition of a peer", base, with(func(n *corev1.Node) {
			n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady}}
		}), "a", false},
		{"new InternalIP", base, with(func(n *corev1.Node) { n.Status.Addresses[0].Address = "192.168.0.9" }), "a", true},
		{"podCIDRs set", node("b", nil), base, "a", true},
		{"NetworkUnavailable of a peer", base, with(unavailable(corev1.ConditionTrue)), "a", false},
		{"NetworkUnavailable of this node", base, with(unavailable(corev1.ConditionTrue)), "b", true},
		{"NetworkUnavailable flips on this node", with(unavailable(corev1.ConditionTrue)), with(unavailable(corev1.ConditionFalse)), "b", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kicks := 0
			st := newNodeStore(tc.self, kubenode.AddressPolicy{}, func() { kicks++ })
			if err := st.Add(tc.old); err != nil {
				t.Fatal(err)
			}
			kicks = 0
			if err := st.Update(tc.new); err != nil {
				t.Fatal(err)
			}
			if got := kicks > 0; got != tc.want {
				t.Errorf("kicked = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStoreReplaceDropsNodesMissingFromAFreshList(t *testing.T) {
	st := newNodeStore("a", kubenode.AddressPolicy{}, func() {})
	for _, n := range []*corev1.Node{node("a", nil), node("b", []string{"10.244.2.0/24"}), node("c", []string{"10.244.3.0/24"})} {
		_ = st.Add(n)
	}
	if st.synced.Load() {
		t.Fatal("synced before a complete list")
	}
	_ = st.Replace([]any{node("a", nil), node("c", []string{"10.244.3.0/24"})}, "7")
	if got := st.peers(); len(got) != 1 || got[0].Name != "c" || !st.synced.Load() {
		t.Errorf("after a fresh list without b: peers %+v, synced %v", got, st.synced.Load())
	}
	_ = st.Delete(cache.DeletedFinalStateUnknown{Key: "c", Obj: node("c", nil)})
	if got := st.peers(); len(got) != 0 {
		t.Errorf("after deleting c: %+v", got)
	}
}

func countListCalls(client *fake.Clientset) int {
	n := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "list" && a.GetResource().Resource == "nodes" {
			n++
		}
	}
	return n
}

func TestClientGoLogsGoToDebugWithoutRequestDumps(t *testing.T) {
	var buf strings.Builder
	l := clientGoLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	l.Error(errors.New("connection refused"), "Failed to watch")
	l.V(2).Info("Listing and watching")
	l.V(8).Info("Request Body", "body", "secret")
	out := buf.String()
	if strings.Count(out, "level=DEBUG") != 2 || strings.Contains(out, "Request Body") || strings.Contains(out, "level=ERROR") {
		t.Errorf("client-go log:\n%s", out)
	}
	buf.Reset()
	l = clientGoLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})))
	l.Error(errors.New("connection refused"), "Failed to watch")
	if buf.Len() != 0 {
		t.Errorf("client-go logged at info level: %s", buf.String())
	}
}
