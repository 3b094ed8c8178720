package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binDir holds kindnet and kindnet-lab, built once for the root tests.
var binDir string

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("bench: not root: the lab tests skip (run `sudo make test`)")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kindnet-bench-bin-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	for out, pkg := range map[string]string{"kindnet": "./cmd/kindnet", "kindnet-lab": "./test/lab/kindnet-lab"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("build %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	return m.Run()
}

// testEnv is the environment of the root tests; it skips without root.
func testEnv(t *testing.T) Env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to build the network-namespace lab: run `sudo make test`")
	}
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
