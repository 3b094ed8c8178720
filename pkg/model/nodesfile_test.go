package model

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseKubectlListOutput(t *testing.T) {
	data, err := os.ReadFile("testdata/kubectl-list.yaml")
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := ParseNodes(data)
	if err != nil {
		t.Fatal(err)
	}
	v := ViewFromNodes("n1", nodes, AddressPolicy{})
	if !slices.Equal(v.Self.Addresses, []string{"192.168.100.11", "fd00:100::11"}) ||
		!slices.Equal(v.Self.PodCIDRs, []string{"10.244.1.0/24", "fd00:10:244:1::/64"}) {
		t.Fatalf("self = %+v", v.Self)
	}
	// n2: only spec.podCIDR; ExternalIPs ignored by default.
	if len(v.Peers) != 1 || !slices.Equal(v.Peers[0].Addresses, []string{"192.168.100.12"}) || !slices.Equal(v.Peers[0].PodCIDRs, []string{"10.244.2.0/24"}) {
		t.Fatalf("peers = %+v", v.Peers)
	}
	// With ExternalIP allowed, only the family lacking an InternalIP gains one.
	v = ViewFromNodes("n1", nodes, AddressPolicy{AllowExternalIP: true})
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
	nodes, err := ParseNodes([]byte(multi))
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
		_, err := ParseNodes([]byte(body))
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
	out := make(chan Update, 8)
	src := &NodesFile{Path: path, Self: "n1", Interval: 10 * time.Millisecond}
	go src.Run(ctx, out)
	next := func() Update {
		select {
		case u := <-out:
			return u
		case <-time.After(5 * time.Second):
			t.Fatal("no update from the nodes file source")
		}
		return Update{}
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

func TestCacheRoundTripAndRefusals(t *testing.T) {
	dir := t.TempDir()
	c := &Cache{Path: filepath.Join(dir, "state", "cluster-view.json"), Node: "n1"}
	if v, err := c.Load(); v != nil || err != nil {
		t.Fatalf("empty cache: %v %v", v, err)
	}
	want := View{Self: Node{Name: "n1", PodCIDRs: []string{"10.244.1.0/24"}}, Peers: []Node{{Name: "n2", Addresses: []string{"192.168.100.12"}}}}
	if changed, err := c.Save(want); err != nil || !changed {
		t.Fatalf("save: %v %v", changed, err)
	}
	if changed, _ := c.Save(want); changed {
		t.Fatal("saving the same view rewrote the file")
	}
	st, _ := os.Stat(c.Path)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("cache mode %v, want 0600", st.Mode().Perm())
	}
	got, err := c.Load()
	if err != nil || !got.Equal(want) {
		t.Fatalf("load = %+v, %v", got, err)
	}
	if _, err := (&Cache{Path: c.Path, Node: "other"}).Load(); err == nil || !strings.Contains(err.Error(), "written for node") {
		t.Fatalf("other node: %v", err)
	}
	os.WriteFile(c.Path, []byte("{"), 0o600)
	if _, err := c.Load(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt: %v", err)
	}
}
