package cache

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/modeltest"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// FuzzCache: a corrupt cache file is an error, never a panic or a bad view.
func FuzzCache(f *testing.F) {
	f.Add([]byte(`{"version":1,"node":"n1","view":{"self":{"name":"n1"},"peers":[{"name":"n2","addresses":["192.168.100.12"],"podCIDRs":["10.244.2.0/24"]}]}}`))
	f.Add([]byte(`{"version":1,"node":"n1","view":{"peers":null}}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "cluster-view.json")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		v, err := (&File{Path: path, Node: "n1"}).Load()
		if err != nil || v == nil {
			return
		}
		pol := modeltest.Policy()
		modeltest.CheckSnapshot(t, model.Validate(*v, pol), pol)
	})
}
