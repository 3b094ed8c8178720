// Package e2e runs whole kindnet agents in the network-namespace lab
// (test/lab) and checks what a user would: pods reach each other over IPv4
// and IPv6, traffic leaving the cluster is masqueraded, routes follow the
// cluster, and nothing survives that should not. These tests need root and
// skip without it; they never touch the machine's own network namespace.
package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// binDir holds kindnet and kindnet-lab built once for the whole package.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if !netnstest.IsHostRoot() {
		fmt.Println("e2e: not the host's root: the lab tests skip (run `sudo make test`)")
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

// labOptions are the defaults of the e2e labs; tests adjust them.
func labOptions(t testing.TB) lab.Options {
	return lab.Options{
		Nodes: 3, PodsPerNode: 1,
		Kindnet: filepath.Join(binDir, "kindnet"), LabTool: filepath.Join(binDir, "kindnet-lab"),
		CNIPlugin: "ptp", CNIBinDir: binDir, // binDir/kindnet is the plugin the conflist names
		Log: t.Logf,
	}
}

// newLab builds a lab for one test and removes it when the test ends, also
// when it fails. On failure the agents' logs are attached to the test output.
func newLab(t testing.TB, o lab.Options) *lab.Lab {
	t.Helper()
	netnstest.RequireHostRoot(t, "builds the network-namespace lab")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, o)
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes {
				if b, err := os.ReadFile(n.LogPath()); err == nil {
					t.Logf("---- agent log of %s ----\n%s", n.Name, tail(b, 60))
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	return l
}

// tail returns the last n lines of b.
func tail(b []byte, n int) string {
	lines := 0
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '\n' {
			lines++
			if lines > n {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// eventually polls cond every 20ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still not %s: %v", d, what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
