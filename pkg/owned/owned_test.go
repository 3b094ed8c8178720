package owned

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/atomicfile"
	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

func testConfig(t *testing.T) *config.Config {
	dir := t.TempDir()
	cfg := config.Defaults()
	cfg.RunDir = filepath.Join(dir, "run")
	cfg.StateDir = filepath.Join(dir, "state")
	cfg.CNI.ConfDir = filepath.Join(dir, "net.d")
	return &cfg
}

// makeKindnetFiles creates every file kindnet creates, through the code
// that creates them (not by their names copied here): the IPAM store and
// its lock, the status socket, the cache, the conflist.
func makeKindnetFiles(t *testing.T, cfg *config.Config) {
	t.Helper()
	if _, err := ipam.New(cfg.IPAMDir(), "kindnet").Allocate(ipam.Key{ContainerID: "c", IfName: "eth0"},
		[]ipam.Pool{{Range: netip.MustParsePrefix("10.244.1.0/24")}}, false); err != nil {
		t.Fatal(err)
	}
	ln, err := status.Listen(cfg.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	// A listener closed without unlinking: what a killed agent leaves.
	ln.SetUnlinkOnClose(false)
	ln.UnixListener.Close()
	if _, err := (&cache.File{Path: cfg.CachePath(), Node: "n1"}).Save(model.View{}); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.CNI.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := atomicfile.Write(cfg.CNIConfPath(), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Leftovers of killed writers, named as their writers name them.
	for _, p := range []string{filepath.Join(filepath.Dir(cfg.CNIConfPath()), "."+filepath.Base(cfg.CNIConfPath())+"123"),
		filepath.Join(cfg.StateDir, "."+filepath.Base(cfg.CachePath())+"42"),
		cfg.SocketPath() + ".77.tmp"} {
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func write(t *testing.T, p string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not kindnet's"), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool { _, err := os.Lstat(p); return err == nil }

// Everything kindnet made goes, and so do its directories once empty; the
// CNI config directory, shared with the runtime, stays.
func TestRemoveTakesEverythingKindnetMadeAndItsEmptyDirs(t *testing.T) {
	cfg := testConfig(t)
	makeKindnetFiles(t, cfg)
	for _, d := range []Dir{ConfDir(cfg), RunDir(cfg), StateDir(cfg)} {
		res, err := Remove(d)
		if err != nil {
			t.Fatalf("Remove(%s): %v", d.Path, err)
		}
		if len(res.Kept) != 0 {
			t.Errorf("Remove(%s) kept %v", d.Path, res.Kept)
		}
	}
	for _, p := range []string{cfg.RunDir, cfg.StateDir} {
		if exists(p) {
			left, _ := os.ReadDir(p)
			t.Errorf("%s still there with %v", p, left)
		}
	}
	left, err := os.ReadDir(cfg.CNI.ConfDir)
	if err != nil || len(left) != 0 {
		t.Errorf("CNI conf dir: %v, entries %v; want it kept and empty", err, left)
	}
}

// runDir pointed at a directory with other programs' files (the issue's
// runDir: /etc/kubernetes): only kindnet's files go; theirs, their
// subdirectories, files in kindnet's IPAM directories that the store did not
// make, and every directory holding one stay. Before pkg/owned, cleanup ran
// a recursive remove on runDir.
func TestRemoveKeepsForeignFilesAndTheirDirectories(t *testing.T) {
	cfg := testConfig(t)
	makeKindnetFiles(t, cfg)
	foreign := []string{
		filepath.Join(cfg.RunDir, "admin.conf"),
		filepath.Join(cfg.RunDir, "pki", "ca.key"),
		filepath.Join(cfg.RunDir, "kindnet.sock.bak"),
		filepath.Join(cfg.IPAMDir(), "notes.txt"),
		filepath.Join(cfg.IPAMDir(), "kindnet", "allocations.json.orig"),
		filepath.Join(cfg.StateDir, "cluster-view.json.orig"),
		filepath.Join(cfg.CNI.ConfDir, "05-other.conflist"),
		filepath.Join(cfg.CNI.ConfDir, ".10-kindnet.conflistx"),
	}
	for _, p := range foreign {
		write(t, p)
	}
	// A symbolic link named like a kindnet file, and one where the IPAM
	// directory should be: neither followed nor removed.
	target := filepath.Join(t.TempDir(), "target")
	write(t, filepath.Join(target, "kindnet", "allocations.json"))
	if err := os.Symlink(filepath.Join(target, "kindnet", "allocations.json"), filepath.Join(cfg.StateDir, "."+filepath.Base(cfg.CachePath())+"9")); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other")
	cfg2 := *cfg
	cfg2.RunDir = other
	write(t, filepath.Join(other, "keep"))
	if err := os.Symlink(target, cfg2.IPAMDir()); err != nil {
		t.Fatal(err)
	}

	var removed []string
	for _, d := range []Dir{ConfDir(cfg), RunDir(cfg), StateDir(cfg), RunDir(&cfg2)} {
		res, err := Remove(d)
		if err != nil {
			t.Fatalf("Remove(%s): %v", d.Path, err)
		}
		removed = append(removed, res.Removed...)
	}
	for _, p := range foreign {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	for _, p := range []string{filepath.Join(target, "kindnet", "allocations.json"), cfg2.IPAMDir(), filepath.Join(cfg.StateDir, "."+filepath.Base(cfg.CachePath())+"9")} {
		if !exists(p) {
			t.Errorf("%s was removed through or as a symbolic link", p)
		}
	}
	for _, p := range []string{cfg.SocketPath(), cfg.SocketPath() + ".77.tmp", filepath.Join(cfg.IPAMDir(), "kindnet", ipam.StateFile),
		filepath.Join(cfg.IPAMDir(), "kindnet", "lock"), cfg.CachePath(), cfg.CNIConfPath()} {
		if exists(p) {
			t.Errorf("kindnet's %s is still there", p)
		}
		if !slices.Contains(removed, p) {
			t.Errorf("%s not reported removed: %v", p, removed)
		}
	}
}

func TestOwnedNamesMatchTheirWriters(t *testing.T) {
	cfg := testConfig(t)
	sock := cfg.SocketPath()
	for name, want := range map[string]bool{
		"kindnet.sock.123.tmp": true, "kindnet.sock.tmp": false, "kindnet.sock.x.tmp": false, "kindnet.sock.+1.tmp": false,
		"kindnet.sock.1.tmp.bak": false,
	} {
		if got := status.IsTempSocket(sock, name); got != want {
			t.Errorf("IsTempSocket(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{"allocations.json": true, "lock": true, ".allocations.json.tmp-123": true, "allocations.json~": false, "locks": false} {
		if got := ipam.OwnsFile(name); got != want {
			t.Errorf("ipam.OwnsFile(%q) = %v, want %v", name, got, want)
		}
	}
}
