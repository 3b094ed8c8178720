package cache

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

func TestCacheRoundTripAndRefusals(t *testing.T) {
	dir := t.TempDir()
	c := &File{Path: filepath.Join(dir, "state", "cluster-view.json"), Node: "n1"}
	if v, err := c.Load(); v != nil || err != nil {
		t.Fatalf("empty cache: %v %v", v, err)
	}
	want := model.View{Self: model.Node{Name: "n1", PodCIDRs: []string{"10.244.1.0/24"}}, Peers: []model.Node{{Name: "n2", Addresses: []string{"192.168.100.12"}}}}
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
	if _, err := (&File{Path: c.Path, Node: "other"}).Load(); err == nil || !strings.Contains(err.Error(), "written for node") {
		t.Fatalf("other node: %v", err)
	}
	os.WriteFile(c.Path, []byte("{"), 0o600)
	if _, err := c.Load(); err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt: %v", err)
	}
}
