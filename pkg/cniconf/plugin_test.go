package cniconf

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// writePlugin installs an executable script as <dir>/kindnet.
func writePlugin(t *testing.T, dir, script string) {
	t.Helper()
	p := filepath.Join(dir, PluginType)
	// Replace, as a package manager does: a new inode, never a file that a
	// running probe still executes.
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

func TestConflistWaitsForThePluginToAnswerVersion(t *testing.T) {
	bin := t.TempDir()
	path := filepath.Join(t.TempDir(), "net.d", "10-kindnet.conflist")
	r := &Reconciler{Path: path, Mode: "ptp", MTU: 1500, CNIVersion: "1.0.0", IPAMDir: "/run/kindnet/ipam", BinDir: bin}
	ctx := context.Background()
	s := snap("10.244.1.0/24")

	waits := func(step, want string) {
		t.Helper()
		res, err := r.Reconcile(ctx, s)
		if err != nil || res.Written || !strings.Contains(res.Waiting, want) {
			t.Fatalf("%s: want waiting %q, nothing written; got %+v %v", step, want, res, err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("%s: the conflist was written (%v)", step, err)
		}
	}
	waits("no plugin", "is not installed yet")
	writePlugin(t, bin, "#!/bin/sh\nexit 3\n")
	waits("plugin failing", "does not answer VERSION")
	writePlugin(t, bin, "#!/bin/sh\necho not json\n")
	waits("plugin answering garbage", "not a version list")
	writePlugin(t, bin, "#!/bin/sh\necho '{\"cniVersion\":\"0.4.0\",\"supportedVersions\":[\"0.3.1\",\"0.4.0\"]}'\n")
	waits("plugin too old", "supports CNI 0.3.1, 0.4.0, not the config's cniVersion 1.0.0")

	// The plugin the packages ship, which must do for the agent's config.
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "kindnet.new"), "github.com/kindnet-dev/kindnet/cmd/kindnet-cni")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build cmd/kindnet-cni: %v\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(bin, "kindnet.new"), filepath.Join(bin, PluginType)); err != nil {
		t.Fatal(err)
	}
	res, err := r.Reconcile(ctx, s)
	if err != nil || !res.Written || res.Waiting != "" {
		t.Fatalf("with the real plugin: want the conflist written, got %+v %v", res, err)
	}

	// The plugin goes away (a package removed, a bin dir wiped): the
	// existing file stays, as when the podCIDR is unknown, and status says
	// why it may be stale.
	if err := os.Remove(filepath.Join(bin, PluginType)); err != nil {
		t.Fatal(err)
	}
	res, err = r.Reconcile(ctx, s)
	if err != nil || res.Written || res.Hash == "" || !strings.Contains(res.Waiting, "is not installed yet") {
		t.Fatalf("plugin removed: want the file kept and a waiting reason, got %+v %v", res, err)
	}
}
