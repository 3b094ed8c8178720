package nodesfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

func TestParseKubectlListOutput(t *testing.T) {
	data, err := os.ReadFile("testdata/kubectl-list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	v := kubenode.ToView("n1", nodes, kubenode.AddressPolicy{})
	if !slices.Equal(v.Self.Addresses, []string{"192.168.100.11", "fd00:100::11"}) ||
		!slices.Equal(v.Self.PodCIDRs, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}) {
		t.Fatalf("self = %+v", v.Self)
	}
	// n2: only spec.podCIDR; ExternalIPs ignored by default.
	if len(v.Peers) != 1 || !slices.Equal(v.Peers[0].Addresses, []string{"192.168.100.12"}) || !slices.Equal(v.Peers[0].PodCIDRs, []string{"10.244.2.0/24"}) {
		t.Fatalf("peers = %+v", v.Peers)
	}
	// With ExternalIP allowed, only the family lacking an InternalIP gains one.
	v = kubenode.ToView("n1", nodes, kubenode.AddressPolicy{AllowExternalIP: true})
	if !slices.Equal(v.Peers[0].Addresses, []string{"192.168.100.12", "2001:db8::2"}) {
		t.Fatalf("with ExternalIP: %v", v.Peers[0].Addresses)
	}
}

func TestParseMultiDocumentAndNodeList(t *testing.T) {
	multi := `# two nodes
apiVersion: v1
kind: Node
metadata: {name: a}
---
---
{"apiVersion": "v1", "kind": "Node", "metadata": {"name": "b"}}
---
apiVersion: v1
kind: NodeList
items:
- metadata: {name: c}
`
	nodes, err := Parse([]byte(multi))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	if !slices.Equal(names, []string{"a", "b", "c"}) {
		t.Fatalf("names = %v", names)
	}
}

func TestParseErrorsNameTheDocument(t *testing.T) {
	for body, want := range map[string]string{
		"apiVersion: v1\nkind: Pod\nmetadata: {name: a}\n":              "document 1: kind \"Pod\"",
		"apiVersion: v1\nkind: Node\n---\napiVersion: v2\nkind: Node\n": "document 2: apiVersion \"v2\"",
		"apiVersion: v1\nkind: List\nitems:\n- kind: Pod\n":             "items[0]: kind \"Pod\"",
		"apiVersion: v1\nkind: Node\nspec: {podCIDRs: 5}\n":             "not a valid Node",
		"apiVersion: v1\nkind: Node\nmetadata: [\n":                     "document 1",
	} {
		_, err := Parse([]byte(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", body, err, want)
		}
	}
}

func TestNodesFileFollowsChangesAndKeepsLastGoodView(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	write := func(s string) { replaceWhole(t, path, s) }
	node := func(name, cidr string) string {
		return "apiVersion: v1\nkind: Node\nmetadata: {name: " + name + "}\nspec: {podCIDRs: [" + cidr + "]}\n---\n"
	}
	write(node("n1", "10.244.1.0/24") + node("n2", "10.244.2.0/24"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan model.Update, 8)
	src := &Source{Path: path, Self: "n1", Interval: 10 * time.Millisecond}
	go src.Run(ctx, out)
	next := func() model.Update {
		select {
		case u := <-out:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update from the nodes file source")
		}
		return model.Update{}
	}
	if u := next(); u.View == nil || len(u.View.Peers) != 1 {
		t.Fatalf("first update %+v", u)
	}
	write("apiVersion: v1\nkind: Node\nmetadata: [\n")
	if u := next(); u.Err == nil || !strings.Contains(u.Err.Error(), path) {
		t.Fatalf("broken file: %+v", u)
	}
	os.Remove(path)
	if u := next(); u.Err == nil || !strings.Contains(u.Err.Error(), "keeping the last good view") {
		t.Fatalf("removed file: %+v", u)
	}
	write(node("n1", "10.244.1.0/24") + node("n2", "10.244.2.0/24") + node("n3", "10.244.3.0/24"))
	if u := next(); u.View == nil || len(u.View.Peers) != 2 {
		t.Fatalf("after fix: %+v", u)
	}
}

// A file that cannot be the whole cluster is an error, never a view: one
// without this node (empty, comments only, an empty list, cut off before
// it) would withdraw every route; one naming this node twice could replace
// its pod ranges. Both Read (the boot) and Run refuse it.
func TestPartialOrAmbiguousNodesFileIsRefused(t *testing.T) {
	node := func(name, cidr string) string {
		return "apiVersion: v1\nkind: Node\nmetadata: {name: " + name + "}\nspec: {podCIDRs: [" + cidr + "]}\n---\n"
	}
	good := node("n1", "10.244.1.0/24") + node("n2", "10.244.2.0/24")
	for name, c := range map[string]struct{ body, want string }{
		"0 bytes":        {"", `this node "n1" is not among its 0 nodes`},
		"comments only":  {"# nodes\n# none yet\n", `this node "n1" is not among its 0 nodes`},
		"items: []":      {"apiVersion: v1\nkind: List\nitems: []\n", `this node "n1" is not among its 0 nodes`},
		"cut before n1":  {node("n2", "10.244.2.0/24"), `this node "n1" is not among its 1 nodes`},
		"n1 twice":       {good + node("n1", "10.244.66.0/24"), `this node "n1" is named by 2 entries`},
		"n1 twice first": {node("n1", "10.244.66.0/24") + good, `this node "n1" is named by 2 entries`},
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "nodes.yaml")
			if err := os.WriteFile(path, []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			src := &Source{Path: path, Self: "n1", Interval: 10 * time.Millisecond}
			v, err := src.Read()
			var se *model.SourceError
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &se) || se.Reason != model.SourceInvalid {
				t.Fatalf("Read: view %+v err %v, want an invalid-source error %q", v, err, c.want)
			}
			// Run: a good file first, then the bad one: an error, no view.
			if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			out := make(chan model.Update, 8)
			done := make(chan struct{})
			go func() { defer close(done); _ = src.Run(ctx, out) }()
			defer func() { cancel(); <-done }()
			if u := <-out; u.View == nil {
				t.Fatalf("good file: %+v", u)
			}
			replaceWhole(t, path, c.body)
			select {
			case u := <-out:
				if u.View != nil || u.Err == nil || !strings.Contains(u.Err.Error(), c.want) {
					t.Fatalf("bad file: view %+v err %v, want error %q", u.View, u.Err, c.want)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no update for the bad file")
			}
		})
	}
}

func TestNodesFileThatIsNotARegularFileIsRefusedWithoutBlocking(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "nodes.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "a named pipe (FIFO)", dir: "a directory", "/dev/zero": "a character device"} {
		done := make(chan error, 1)
		go func() {
			_, err := (&Source{Path: path, Self: "n1"}).Read()
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "is "+kind+", not a regular file") {
				t.Errorf("%s: err = %v", path, err)
			}
		case <-time.After(5 * time.Second):
			// Unblock the reader stuck in open(2), so no goroutine leaks.
			if w, err := os.OpenFile(path, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				w.Close()
			}
			<-done
			t.Errorf("%s: reading blocked for 5s", path)
		}
	}
}

// Content that was refused is not parsed again while it stays the same:
// polled every second, a broken 60 MB file used to be re-parsed every
// second. Touching the file (same bytes, new mtime) does not re-parse it
// either; new content is parsed and applied.
func TestBrokenContentIsParsedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	broken := "apiVersion: v1\nkind: Node\nmetadata: [\n"
	if err := os.WriteFile(path, []byte(broken), 0o644); err != nil {
		t.Fatal(err)
	}
	var parses, polls atomic.Int64
	src := &Source{Path: path, Self: "n1", Interval: time.Millisecond,
		parse:  func(b []byte) ([]corev1.Node, error) { parses.Add(1); return Parse(b) },
		polled: func() { polls.Add(1) },
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan model.Update, 8)
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	waitPolls := func(n int64) {
		t.Helper()
		for start := polls.Load(); polls.Load() < start+n; {
			select {
			case <-done:
				t.Fatal("source stopped")
			case <-time.After(time.Millisecond):
			}
		}
	}
	if u := <-out; u.Err == nil || !strings.Contains(u.Err.Error(), "document 1") {
		t.Fatalf("broken file: %+v", u)
	}
	waitPolls(50)
	if n := parses.Load(); n != 1 {
		t.Fatalf("unchanged broken content parsed %d times in 50 polls, want once", n)
	}
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	waitPolls(20)
	if n := parses.Load(); n != 1 {
		t.Fatalf("touched broken content parsed %d times, want once", n)
	}
	select {
	case u := <-out:
		t.Fatalf("unchanged broken content reported again: %+v", u)
	default:
	}
	good := "apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [10.244.1.0/24]}\n"
	replaceWhole(t, path, good)
	if u := <-out; u.View == nil || u.View.Self.Name != "n1" {
		t.Fatalf("fixed file: %+v", u)
	}
	waitPolls(20)
	if n := parses.Load(); n != 2 {
		t.Fatalf("parses = %d after the fix, want 2", n)
	}
}

// A file over the bound is refused from its size, without being read or
// parsed, with an error naming the bound; by Read (the boot) and by Run.
func TestTooLargeNodesFileIsRefusedNamingTheBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	// Sparse: 60 MB of size without 60 MB of disk.
	if err := fh.Truncate(60 << 20); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	var parses atomic.Int64
	src := &Source{Path: path, Self: "n1", Interval: time.Millisecond,
		parse: func(b []byte) ([]corev1.Node, error) { parses.Add(1); return Parse(b) }}
	want := fmt.Sprintf("%d bytes: larger than the 16 MiB limit", 60<<20)
	if _, err := src.Read(); err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Read: err = %v, want %q", err, want)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan model.Update, 8)
	done := make(chan struct{})
	go func() { defer close(done); _ = src.Run(ctx, out) }()
	defer func() { cancel(); <-done }()
	if u := <-out; u.Err == nil || !strings.Contains(u.Err.Error(), want) || !strings.Contains(u.Err.Error(), path) {
		t.Fatalf("Run: %+v, want %q", u, want)
	}
	if n := parses.Load(); n != 0 {
		t.Fatalf("a too-large file was parsed %d times", n)
	}
	// Parse itself refuses more than the bound, whoever calls it.
	if _, err := Parse(make([]byte, maxNodesFileSize+1)); err == nil || !strings.Contains(err.Error(), "16 MiB limit") {
		t.Fatalf("Parse over the bound: %v", err)
	}
}

// BenchmarkPollUnchangedBrokenFile is what a broken nodes file near the
// bound costs per poll (once a second) once it was parsed: just changed, a
// read and a hash; settled (changed over a second before), a stat. Never a
// parse: before, each poll parsed it again (0.47 CPU-s per poll at 60 MB).
func BenchmarkPollUnchangedBrokenFile(b *testing.B) {
	for _, settled := range []bool{false, true} {
		b.Run(map[bool]string{false: "just-changed", true: "settled"}[settled], func(b *testing.B) { benchPollBroken(b, settled) })
	}
}

func benchPollBroken(b *testing.B, settled bool) {
	path := filepath.Join(b.TempDir(), "nodes.yaml")
	node := "- apiVersion: v1\n  kind: Node\n  metadata: {name: n%06d}\n  spec: {podCIDRs: [10.%d.%d.0/24]}\n  status: {addresses: [{type: InternalIP, address: 192.168.%d.%d}]}\n"
	var sb strings.Builder
	sb.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for i := 0; sb.Len() < maxNodesFileSize-4096; i++ {
		fmt.Fprintf(&sb, node, i, i>>8&255, i&255, i>>8&255, i&255)
	}
	sb.WriteString("- {apiVersion: v1, kind: Node, metadata: [\n") // broken at the very end
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	if settled {
		time.Sleep(1100 * time.Millisecond)
	}
	src := &Source{Path: path, Self: "n000000"}
	var last outcome
	if _, _, err := src.poll(&last); err == nil {
		b.Fatal("the broken file parsed")
	}
	if !settled {
		b.SetBytes(int64(sb.Len()))
	}
	b.ResetTimer()
	for range b.N {
		if _, changed, err := src.poll(&last); err == nil || changed {
			b.Fatalf("poll: changed %v err %v", changed, err)
		}
	}
}

// A settled file whose stat is unchanged is not read again, but any write,
// even in place and of the same size, or a file renamed over it with the
// old times restored, is: the shortcut never hides a change.
func TestSettledFileShortcutSeesEveryChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nodes.yaml")
	body := func(cidr string) []byte {
		return []byte("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\nspec: {podCIDRs: [" + cidr + "]}\n")
	}
	if err := os.WriteFile(path, body("10.244.1.0/24"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // let the file settle
	src := &Source{Path: path, Self: "n1"}
	var last outcome
	if _, changed, err := src.poll(&last); err != nil || !changed || !last.stable {
		t.Fatalf("first poll: changed %v err %v stable %v", changed, err, last.stable)
	}
	if _, changed, err := src.poll(&last); err != nil || changed {
		t.Fatalf("unchanged: changed %v err %v", changed, err)
	}
	// In place, same size, at once.
	if err := os.WriteFile(path, body("10.244.2.0/24"), 0o644); err != nil {
		t.Fatal(err)
	}
	if v, changed, err := src.poll(&last); err != nil || !changed || v.Self.PodCIDRs[0] != "10.244.2.0/24" {
		t.Fatalf("in-place write: changed %v err %v view %+v", changed, err, v.Self)
	}
	// Renamed over it, with the first file's times put back.
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, body("10.244.3.0/24"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tmp, fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	if v, changed, err := src.poll(&last); err != nil || !changed || v.Self.PodCIDRs[0] != "10.244.3.0/24" {
		t.Fatalf("renamed over: changed %v err %v view %+v", changed, err, v.Self)
	}
}

// replaceWhole puts content at path as a careful writer does (a new file
// renamed over the old): os.WriteFile truncates first, and a slow machine
// (or an emulated run) may read the empty file in between.
func replaceWhole(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}
