package cniconf

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/cni"
)

// asPlugin, set in the environment, makes this test binary the CNI plugin
// itself (cni.Main, what cmd/kindnet-cni runs): the real plugin's answer
// to VERSION, without building a binary inside a test.
const asPlugin = "KINDNET_CNICONF_TEST_AS_PLUGIN"

func TestMain(m *testing.M) {
	if os.Getenv(asPlugin) == "1" {
		os.Exit(cni.Main())
	}
	os.Exit(m.Run())
}

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

	// The plugin the packages ship (cni.Main, run by this test binary),
	// which must do for the agent's config.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	writePlugin(t, bin, "#!/bin/sh\n"+asPlugin+"=1 exec "+strconv.Quote(self)+" \"$@\"\n")
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
