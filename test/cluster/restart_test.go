package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// TestNodeRestartComesBack brings up a 2-node cluster, restarts node2 as
// a reboot does (CheckNodeRestart: the scenario make conformance reports)
// and checks that the node and its pods come back with working
// networking and consistent addresses; then tears the cluster down and
// checks that nothing is left. It takes minutes, so it is not part of
// make test: it runs only with KINDNET_CLUSTER_RESTART=1.
func TestNodeRestartComesBack(t *testing.T) {
	if os.Getenv("KINDNET_CLUSTER_RESTART") != "1" {
		t.Skip("the node-restart scenario takes minutes: set KINDNET_CLUSTER_RESTART=1 to run it (make conformance runs it too)")
	}
	netnstest.RequireHostRoot(t, "a cluster of machines with systemd and containerd")
	repo, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := FindBinaries(os.Args[0], os.Args[0]); err != nil {
		t.Fatalf("the cluster needs the cached tools: %v", err)
	}
	binDir, err := lab.BuildCommands(repo, map[string]string{"kindnet": "./cmd/kindnet", "kindnet-cluster": "./test/cluster/kindnet-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	bins, err := FindBinaries(filepath.Join(binDir, "kindnet"), filepath.Join(binDir, "kindnet-cluster"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	o := Options{Nodes: 2, StateRoot: t.TempDir(), RepoRoot: repo, Bins: bins, Log: t.Logf,
		BuildImages: func(dir string) ([]Image, error) { return BuildImages(ctx, repo, dir, t.Logf) }}
	c, err := Up(ctx, o, false)
	if c != nil {
		t.Cleanup(func() { tearDown(t, c) })
	}
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c, bins)
		}
	})
	md, err := CheckNodeRestart(ctx, c, o)
	t.Logf("report section:\n%s", md)
	if err != nil {
		t.Fatal(err)
	}
}
