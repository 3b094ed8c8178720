package nodesfile

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

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
	write := func(s string) {
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
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
			// Replaced whole, as a writer should: WriteFile truncates first, and
			// a slow machine (or an emulated run) may read the empty file.
			if err := os.WriteFile(path+".new", []byte(c.body), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
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
