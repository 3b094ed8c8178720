package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/pkg/sysctl"
)

// Issue 14 item 9: status and metrics report what is on the host, with the
// error, never a guess — with a full disk, and with a corrupt cache and no
// source.

// truthConfig writes a config whose state and CNI directories are under
// disk (a small tmpfs in the ENOSPC test) and loads it.
func truthConfig(t *testing.T, disk string) *config.Loaded {
	t.Helper()
	dir := t.TempDir()
	body := "nodeName: n1\nnodesFile: " + dir + "/nodes.yaml\nclusterCIDRs: [10.244.0.0/16]\n" +
		"stateDir: " + disk + "/state\nrunDir: " + dir + "/run\ncni:\n  confDir: " + disk + "/net.d\n  mtu: 1500\ncri:\n  endpoint: none\n"
	cfgPath := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Sources{File: cfgPath, FileRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	// No plugin check: these tests are about the disk and the cache, and
	// waiting for a plugin binary is pkg/cniconf's (TestConflistWaitsForThePluginToAnswerVersion).
	cfg.CNI.BinDir = ""
	return cfg
}

// agentIn builds the agent as the service does (New), with its netlink
// handle and nftables connections in ns. Sysctls are left out: they are
// not what these tests are about.
func agentIn(t *testing.T, ns *netnstest.NS, cfg *config.Loaded) *Agent {
	t.Helper()
	var a *Agent
	if err := ns.Do(func() (err error) {
		a, err = New(cfg, Options{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Version: "test"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.nl.Close() })
	a.sysctls = &sysctl.Reconciler{}
	a.masq.NetNSFd = ns.Fd()
	// The agent is up and its source synced: only the faults below may
	// make the verdict anything but healthy.
	a.store.Update(func(r *status.Record) {
		r.Agent.Running, r.Bootstrapped = true, true
		sourceSynced(&r.Source, "nodes file", t0)
	})
	return a
}

func reconcileIn(t *testing.T, ns *netnstest.NS, a *Agent) status.Record {
	t.Helper()
	if err := ns.Do(func() error { a.reconcile(context.Background(), "test"); return nil }); err != nil {
		t.Fatal(err)
	}
	r := a.store.Get()
	r.Stamp(t0)
	return r
}

// metric is the value of the named metric (with the label, if given).
func metric(t *testing.T, a *Agent, name, label, value string) float64 {
	t.Helper()
	fams, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label == "" || hasLabel(m, label, value) {
				if m.GetGauge() != nil {
					return m.GetGauge().GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Errorf("no metric %s{%s=%q}", name, label, value)
	return -1
}

func hasLabel(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

func hasReason(v status.Verdict, parts ...string) bool {
	for _, r := range v.Reasons {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(r, p)
		}
		if ok {
			return true
		}
	}
	return false
}

func truthView(peers ...string) model.View {
	v := model.View{Self: model.Node{Name: "n1", Addresses: []string{"192.168.50.1"}, PodCIDRs: []string{"10.244.1.0/24"}}}
	for i, p := range peers {
		v.Peers = append(v.Peers, model.Node{Name: p, Addresses: []string{netip.AddrFrom4([4]byte{192, 168, 50, byte(2 + i)}).String()},
			PodCIDRs: []string{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(2 + i), 0}), 24).String()}})
	}
	return v
}

const fullDiskChild = "KINDNET_TEST_FULL_DISK_CHILD"

// With the disk under the state and CNI directories full (a 256 KiB tmpfs,
// mounted in a private mount namespace of a child process, so the machine
// never sees it), a failed cache save makes status degraded with the error
// and counts an error in the metrics; a failed write of a new CNI config
// leaves the old file, and status shows it present (degraded: stale, with
// ENOSPC), never "down: no CNI config", and the metric says 1.
func TestStatusTellsTheTruthWhenTheDiskIsFull(t *testing.T) {
	// In a user namespace the host's root-owned /tmp shows the overflow
	// uid, so the trusted-file check rightly degrades status before the
	// disk is full, and this test needs a healthy start.
	netnstest.RequireHostRoot(t, "a healthy verdict needs /tmp owned by root, which a user namespace shows as the overflow uid")
	if os.Getenv(fullDiskChild) == "" {
		if _, err := exec.LookPath("unshare"); err != nil {
			t.Skip("unshare (util-linux) not found: `make deps` installs it")
		}
		cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--", os.Args[0],
			"-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), fullDiskChild+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "full disk reached: ENOSPC") || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
			t.Fatalf("child in a private mount namespace: %v\n%s", err, out)
		}
		return
	}

	disk := t.TempDir()
	if err := unix.Mount("tmpfs", disk, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=256k,mode=0700"); err != nil {
		t.Fatalf("mount a tmpfs in the private mount namespace: %v", err)
	}
	t.Cleanup(func() { _ = unix.Unmount(disk, unix.MNT_DETACH) }) // before TempDir's removal
	ns := routedNS(t)
	a := agentIn(t, ns, truthConfig(t, disk))
	a.setView(truthView("n2"), "nodes file")
	r := reconcileIn(t, ns, a)
	if r.Verdict.State != status.Healthy || !r.CNI.Present {
		t.Fatalf("before the disk is full: verdict %s, CNI %+v", r.Verdict, r.CNI)
	}
	old, err := os.ReadFile(a.cfg.CNIConfPath())
	if err != nil {
		t.Fatal(err)
	}

	fill(t, filepath.Join(disk, "filler"))

	// A new peer: the cache must be saved again, the CNI config is the same.
	a.setView(truthView("n2", "n3"), "nodes file")
	r = reconcileIn(t, ns, a)
	if !hasReason(r.Verdict, "cache: not saved", "no space left on device") || r.Verdict.State == status.Healthy {
		t.Errorf("failed cache save: verdict %s; want degraded naming the cache and ENOSPC", r.Verdict)
	}
	if got := metric(t, a, "kindnet_reconcile_errors_total", "reconciler", "cache"); got != 1 {
		t.Errorf("kindnet_reconcile_errors_total{reconciler=cache} = %v, want 1", got)
	}
	if c := r.Counts(); c[status.PeerRouted] != 2 {
		t.Errorf("peers %+v: routes do not depend on the disk", r.Peers)
	}

	// A new MTU: the CNI config must change and cannot be written.
	a.cni.MTU = 1400
	r = reconcileIn(t, ns, a)
	sum := sha256.Sum256(old)
	if !r.CNI.Present || r.CNI.Hash != hex.EncodeToString(sum[:]) || r.CNI.MTU != 1500 {
		t.Errorf("CNI config after a failed write: %+v; want present with the old file's hash and MTU 1500", r.CNI)
	}
	if r.Verdict.State != status.Degraded || !hasReason(r.Verdict, "CNI config stale", "no space left on device") {
		t.Errorf("failed CNI config write: verdict %s; want degraded: CNI config stale with ENOSPC", r.Verdict)
	}
	if got := metric(t, a, "kindnet_cni_config_present", "", ""); got != 1 {
		t.Errorf("kindnet_cni_config_present = %v with the old config on disk, want 1", got)
	}
	if now, _ := os.ReadFile(a.cfg.CNIConfPath()); string(now) != string(old) {
		t.Errorf("the CNI config on disk changed:\n%s", now)
	}
}

// fill writes to path until the filesystem is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for range 1 << 10 { // 64 MiB at most: far past a 256 KiB tmpfs
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	t.Log("full disk reached: ENOSPC")
}

// With a corrupt cache and no source yet, the agent has no cluster view:
// it leaves the routes and the masquerade table it finds, and status and
// metrics count what is on the host (not 0 and "absent"), with the cache's
// error.
func TestStatusCountsTheHostWithACorruptCacheAndNoSource(t *testing.T) {
	ns := routedNS(t)
	cfg := truthConfig(t, t.TempDir())
	// What a previous run installed: three routes and the table.
	snap := model.Snapshot{ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")}}
	for i := range 3 {
		snap.Peers = append(snap.Peers, model.Peer{Name: "p", Addrs: []netip.Addr{netip.AddrFrom4([4]byte{192, 168, 50, byte(2 + i)})},
			PodCIDRs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(2 + i), 0}), 24)}})
	}
	if _, err := (&routes.Reconciler{Handle: ns.NL}).Reconcile(context.Background(), &snap); err != nil {
		t.Fatal(err)
	}
	if _, err := (&masq.Reconciler{Table: cfg.Masquerade.Table, Enabled: true, NetNSFd: ns.Fd()}).Reconcile(context.Background(), &snap); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.CachePath(), []byte(`{"version": 1, "node": "n1", "view": {`), 0o600); err != nil {
		t.Fatal(err)
	}
	// and the CNI config it wrote (the runtime keeps using it).
	if err := os.MkdirAll(cfg.CNI.ConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.CNIConfPath(), []byte("{}\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	a := agentIn(t, ns, cfg)
	a.bootstrap() // no nodes file, corrupt cache: no view
	if a.haveView {
		t.Fatal("a view from a corrupt cache")
	}
	r := reconcileIn(t, ns, a)
	if r.Routes.Installed != 3 || r.Routes.Error != "" {
		t.Errorf("routes in status: %+v; 3 kindnet routes are on the host", r.Routes)
	}
	if !r.Masquerade.Present || r.Masquerade.Error != "" {
		t.Errorf("masquerade in status: %+v; the table is on the host", r.Masquerade)
	}
	if !hasReason(r.Verdict, "cache: unusable, ignored", "is corrupt") {
		t.Errorf("verdict %s does not name the corrupt cache", r.Verdict)
	}
	if got := metric(t, a, "kindnet_routes_installed", "", ""); got != 3 {
		t.Errorf("kindnet_routes_installed = %v, want 3", got)
	}
	if got := metric(t, a, "kindnet_masquerade_table_present", "", ""); got != 1 {
		t.Errorf("kindnet_masquerade_table_present = %v, want 1", got)
	}
	if got := metric(t, a, "kindnet_reconcile_errors_total", "reconciler", "cache"); got != 1 {
		t.Errorf("kindnet_reconcile_errors_total{reconciler=cache} = %v, want 1", got)
	}
	if rs, err := routes.List(ns.NL); err != nil || len(rs) != 3 {
		t.Errorf("routes on the host after the run: %d, %v; an unknown cluster removes nothing", len(rs), err)
	}
}
