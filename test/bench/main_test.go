package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// binDir holds kindnet and kindnet-lab, built once for the root tests.
var binDir string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if !netnstest.IsHostRoot() {
		fmt.Println("bench: not the host's root: the lab tests skip (run `sudo make test`)")
		return m.Run()
	}
	dir, err := lab.BuildBinaries("../..")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	return m.Run()
}

// testEnv is the environment of the root tests; it skips without root.
func testEnv(t *testing.T) Env {
	t.Helper()
	netnstest.RequireHostRoot(t, "builds the network-namespace lab")
	return Env{Kindnet: filepath.Join(binDir, "kindnet"), LabTool: filepath.Join(binDir, "kindnet-lab"), Log: t.Logf}
}

// requireGone fails the test if anything of lab id is left behind.
func requireGone(t *testing.T, id string) {
	t.Helper()
	if id == "" {
		t.Fatal("the section did not say which lab it built")
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if len(e.Name()) > len(id) && e.Name()[:len(id)+1] == id+"-" {
			t.Errorf("namespace %s of lab %s is left behind", e.Name(), id)
		}
	}
	if _, err := os.Stat(filepath.Join("/run/kindnet-lab", id)); err == nil {
		t.Errorf("the directory of lab %s is left behind", id)
	}
}
