package agent

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

func TestNodesFileOthersCanWriteIsLoggedOnceAndDegradesStatus(t *testing.T) {
	netnstest.RequireHostRoot(t, "the files must be owned by root to tell the modes apart")
	dir := t.TempDir()
	nodes := filepath.Join(dir, "nodes.yaml")
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(nodes, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(nodes, 0o666); err != nil { // past the umask
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgPath, []byte("nodeName: n1\nnodesFile: "+nodes+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Sources{File: cfgPath, FileRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	a := &Agent{cfg: cfg, log: slog.New(slog.NewTextHandler(&logs, nil)), store: status.NewStore("test", t0)}
	a.checkFiles()
	a.checkFiles()
	if n := strings.Count(logs.String(), "INSECURE"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, logs.String())
	}
	r := a.store.Get()
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "nodes file "+nodes) || !strings.Contains(r.Warnings[0], "mode 0666") {
		t.Fatalf("status warnings %q", r.Warnings)
	}
	if err := os.Chmod(nodes, 0o644); err != nil {
		t.Fatal(err)
	}
	a.checkFiles()
	if r := a.store.Get(); len(r.Warnings) != 0 || !strings.Contains(logs.String(), "root only again") {
		t.Errorf("after chmod 644: warnings %q, log:\n%s", r.Warnings, logs.String())
	}
}
