package lab

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// A lab whose builder was killed before it saved its state still comes
// down completely: `kindnet-lab down` finds its namespaces by the ID.
func TestLabKilledBeforeItSavedItsStateIsStillRemoved(t *testing.T) {
	netnstest.RequireHostRoot(t, "the lab keeps its state under /run and runs agents as root")
	id := newID()
	dir := filepath.Join(StateRoot, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	ns := id + "-n1"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run(); _ = os.RemoveAll(dir) })

	l, err := ForID(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Down(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), ns) {
		t.Errorf("namespace %s left behind", ns)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left behind (stat: %v)", dir, err)
	}
}

func TestForIDTakesOnlyLabIDs(t *testing.T) {
	for _, id := range []string{"", "..", "../etc", "kl12/..", "x1234", "kl"} {
		if _, err := ForID(id); err == nil {
			t.Errorf("ForID(%q) accepted it", id)
		}
	}
}
