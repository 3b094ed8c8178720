package e2e

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestFilesKindnetCreatesHaveDeliberateModes walks everything the agent and
// the CNI plugin created for a node and checks each mode: what only root
// uses is private, what the container runtime reads is world-readable.
func TestFilesKindnetCreatesHaveDeliberateModes(t *testing.T) {
	l := newLab(t, labOptions(t))
	n := l.Nodes[0]
	converged(t, l, l.Objects(), 10*time.Second)
	want := map[string]fs.FileMode{
		"state":                             0o700 | fs.ModeDir, // cache of the cluster view
		"state/cluster-view.json":           0o600,
		"run":                               0o700 | fs.ModeDir, // socket and IPAM store
		"run/kindnet.sock":                  0o600 | fs.ModeSocket,
		"run/ipam":                          0o700 | fs.ModeDir,
		"run/ipam/kindnet":                  0o700 | fs.ModeDir,
		"run/ipam/kindnet/allocations.json": 0o600,
		"run/ipam/kindnet/lock":             0o600,
		"cni":                               0o755 | fs.ModeDir, // the runtime reads it
		"cni/10-kindnet.conflist":           0o644,
	}
	for rel, mode := range want {
		st, err := os.Lstat(filepath.Join(n.Dir, rel))
		if err != nil {
			t.Errorf("%s: %v", rel, err)
			continue
		}
		if got := st.Mode() & (fs.ModePerm | fs.ModeDir | fs.ModeSocket); got != mode {
			t.Errorf("%s: mode %v, want %v", rel, got, mode)
		}
	}
	// Nothing else appeared under the run and state dirs that this list
	// does not account for.
	for _, dir := range []string{"state", "run"} {
		_ = filepath.WalkDir(filepath.Join(n.Dir, dir), func(p string, d fs.DirEntry, err error) error {
			rel, _ := filepath.Rel(n.Dir, p)
			if _, ok := want[rel]; !ok && err == nil {
				t.Errorf("unexpected %s created by kindnet: give it a deliberate mode and list it here", rel)
			}
			return nil
		})
	}
}
