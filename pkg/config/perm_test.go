package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// loadedWith loads a config file (mode 0600) naming nodes as the nodes file.
func loadedWith(t *testing.T, dir, nodes string) *Loaded {
	t.Helper()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("nodeName: n1\nnodesFile: "+nodes+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Load(Sources{File: cfg, FileRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestFilesWritableByOthersThanRootAreWarnedAbout(t *testing.T) {
	netnstest.RequireHostRoot(t, "the files must be owned by root to tell the modes apart")
	dir := t.TempDir()
	nodes := filepath.Join(dir, "nodes.yaml")
	if err := os.WriteFile(nodes, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l := loadedWith(t, dir, nodes)
	if w := l.FileWarnings(); len(w) != 0 {
		t.Fatalf("root-only files warned about: %q", w)
	}
	check := func(what string, want ...string) {
		t.Helper()
		w := strings.Join(l.FileWarnings(), "\n")
		for _, s := range append(want, "a user other than root can change what kindnet installs") {
			if !strings.Contains(w, s) {
				t.Errorf("%s: warnings %q lack %q", what, w, s)
			}
		}
	}
	if err := os.Chmod(nodes, 0o666); err != nil {
		t.Fatal(err)
	}
	check("nodes file 0666", "nodes file "+nodes, "it is writable by group or others (mode 0666)")
	if err := os.Chmod(nodes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(l.File, 1000, 1000); err != nil {
		t.Fatal(err)
	}
	check("config file of uid 1000", "config file "+l.File, "it is owned by uid 1000")
	if err := os.Chown(l.File, 0, 0); err != nil {
		t.Fatal(err)
	}
	// A directory anyone may write to lets anyone replace the file in it.
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	check("directory 0777", "nodes file "+nodes, "its directory "+dir+" is writable by group or others (mode 0777)")
	// The sticky bit (as on /tmp) lets only a file's owner replace it.
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if w := l.FileWarnings(); len(w) != 0 {
		t.Errorf("sticky directory warned about: %q", w)
	}
	// Through a symbolic link, the file it points to is what counts.
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	other := t.TempDir()
	if err := os.Chmod(other, 0o770); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(other, "real-nodes.yaml")
	if err := os.WriteFile(target, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(nodes); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, nodes); err != nil {
		t.Fatal(err)
	}
	check("link to a group-writable directory", "its directory "+other+" is writable by group or others (mode 0770)")
}

func TestMissingTrustedFilesAreNotWarnedAbout(t *testing.T) {
	l := &Loaded{Config: Config{NodesFile: filepath.Join(t.TempDir(), "absent.yaml")}}
	if w := l.FileWarnings(); len(w) != 0 {
		t.Errorf("warnings for a missing file: %q", w)
	}
}
