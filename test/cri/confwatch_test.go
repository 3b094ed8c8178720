package cri

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestContainerdStartedBeforeTheConfigSeesTheAgentWriteIt is the node that
// boots with containerd up before kindnet has written its CNI config (an
// agent started by hand, by another supervisor, or in scripts/cluster.sh,
// none of which has the unit's private /tmp). The agent's TMPDIR is on the
// same file system as the conf dir, where a rename from there works: the
// config must still appear in the conf dir as a move from a temporary file
// in that directory, which containerd 2.x's config syncer acts on; renamed
// in from TMPDIR it is a "create", which containerd ignores until it
// restarts (NetworkReady=false, "cni plugin not initialized").
func TestContainerdStartedBeforeTheConfigSeesTheAgentWriteIt(t *testing.T) {
	f := containerd2(containerd2D)
	requireTools(t, f)
	l := newLab(t, f)
	n1 := l.Nodes[0]
	if err := l.StopAgent(n1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(n1.CNIConfPath()); err != nil {
		t.Fatal(err)
	}
	d := startContainerd(t, f, n1, filepath.Join(binDir, "kindnet-cni"))
	if ok, msg, err := d.networkReady(); err != nil || ok {
		t.Fatalf("NetworkReady with no CNI config: %v %q %v; want false", ok, msg, err)
	}

	tmp := filepath.Join(n1.Dir, "tmp") // same file system as the conf dir
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	n1.AgentEnv = append(n1.AgentEnv, "TMPDIR="+tmp)
	if err := l.StartAgent(n1); err != nil {
		t.Fatal(err)
	}
	// A generous bound, not a timing goal: containerd reloads at once on
	// the event it acts on, and never without one.
	err := eventually(60*time.Second, func() error {
		if _, err := os.Stat(n1.CNIConfPath()); err != nil {
			return err
		}
		ok, msg, err := d.networkReady()
		if err == nil && !ok {
			err = errNotReady(msg)
		}
		return err
	})
	if err != nil {
		t.Fatalf("containerd never took the config the agent wrote: %v\n%s", err, d.tailLog(20))
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("agent left files in TMPDIR: %v", left)
	}
}

type errNotReady string

func (e errNotReady) Error() string { return "NetworkReady=false: " + string(e) }
