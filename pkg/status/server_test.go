package status

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// serve starts a status server on a socket in a temp dir.
func serve(t *testing.T, st *Store, refresh func(*Record)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "kindnet.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Store: st, Refresh: refresh}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return path
}

func TestSocketIsRootOnly(t *testing.T) {
	path := serve(t, NewStore("1.0", t0), nil)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Type() != fs.ModeSocket || st.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v, want a socket with 0600", st.Mode())
	}
	if left, _ := filepath.Glob(path + ".*"); len(left) > 0 {
		t.Errorf("temporary names left behind: %v", left)
	}
}

func TestFetchReturnsTheStampedRecordWithRefresh(t *testing.T) {
	st := NewStore("1.0", time.Now().Add(-time.Hour))
	st.Update(func(r *Record) {
		r.Node.Name = "a"
		r.Peers = []Peer{{Name: "x", State: PeerRejected, Reason: "bad"}}
	})
	path := serve(t, st, func(r *Record) { r.IPAM.Note = "refreshed" })
	rec, err := Fetch(context.Background(), path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !rec.Agent.Running || rec.Node.Name != "a" || rec.IPAM.Note != "refreshed" || rec.UptimeSeconds < 3599 ||
		rec.Verdict.State != Down || rec.Generation != 1 {
		t.Fatalf("record %+v", rec)
	}
}

func TestFetchWaitsForANewerRecord(t *testing.T) {
	st := NewStore("1.0", t0)
	st.Update(func(r *Record) { r.Node.Name = "a" })
	path := serve(t, st, nil)
	// Nothing changes: the wait runs out and the same generation comes back.
	rec, err := Fetch(context.Background(), path, 1, 50*time.Millisecond)
	if err != nil || rec.Generation != 1 {
		t.Fatalf("gen %v err %v", rec, err)
	}
	// A change while waiting ends the wait with the new record.
	go func() {
		time.Sleep(50 * time.Millisecond)
		st.Update(func(r *Record) { r.Node.Name = "b" })
	}()
	rec, err = Fetch(context.Background(), path, 1, time.Minute)
	if err != nil || rec.Generation != 2 || rec.Node.Name != "b" {
		t.Fatalf("record %+v err %v", rec, err)
	}
}

func TestFetchWithoutAgentIsErrNoAgent(t *testing.T) {
	dir := t.TempDir()
	_, err := Fetch(context.Background(), filepath.Join(dir, "kindnet.sock"), 0, 0)
	if !errors.Is(err, ErrNoAgent) || !strings.Contains(err.Error(), "no socket at") {
		t.Fatalf("missing socket: %v", err)
	}
	// A socket file nobody listens on (an agent killed with SIGKILL).
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := Fetch(context.Background(), stale, 0, 0); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("stale socket: %v", err)
	}
	// A listener that never answers: the context bounds the wait.
	silent := filepath.Join(dir, "silent.sock")
	sl, err := net.Listen("unix", silent)
	if err != nil {
		t.Fatal(err)
	}
	defer sl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Fetch(ctx, silent, 0, 0); !errors.Is(err, ErrNoAgent) {
		t.Fatalf("silent listener: %v", err)
	}
}

func TestListenReplacesAStaleSocketButNotALiveOne(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kindnet.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	// Live: refused, and the other agent's socket is left alone.
	if _, err := Listen(path); err == nil || !errors.Is(err, ErrAgentRunning) {
		t.Fatalf("live socket: %v", err)
	}
	old.SetUnlinkOnClose(false)
	old.Close()
	// Stale: replaced.
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	ln.Close()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket not removed on close: %v", err)
	}
	// A regular file is never deleted.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("regular file: %v", err)
	}
}
