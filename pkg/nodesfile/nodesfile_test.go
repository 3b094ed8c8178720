package nodesfile

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
