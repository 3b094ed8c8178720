package agent

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// TestAgentReportsUfwForwardDropInStatus: in a throwaway namespace where
// ufw's chains (through iptables-nft) drop forwarded traffic by policy,
// the agent's firewall check makes `kindnet status` degraded, naming ufw
// and the fix; removing the drop makes it healthy again on the next check.
func TestAgentReportsUfwForwardDropInStatus(t *testing.T) {
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables not found: `make deps` installs it")
	}
	ns := netnstest.New(t)
	up := ns.AddVeth(t, "uplink0")
	ns.AddAddrs(t, up, "192.168.50.1/24")
	for _, c := range [][]string{
		{"-N", "ufw-before-forward"}, {"-N", "ufw-user-forward"},
		{"-P", "FORWARD", "DROP"},
		{"-A", "FORWARD", "-j", "ufw-before-forward"},
		{"-A", "ufw-before-forward", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "ufw-before-forward", "-p", "icmp", "--icmp-type", "echo-request", "-j", "ACCEPT"},
		{"-A", "ufw-before-forward", "-j", "ufw-user-forward"},
	} {
		ns.Exec(t, append([]string{"iptables"}, c...)...)
	}

	cfg := &config.Loaded{}
	cfg.CNI.Plugin = config.PluginPTP
	a := &Agent{cfg: cfg, nl: ns.NL, log: slog.New(slog.NewTextHandler(io.Discard, nil)), store: status.NewStore("test", t0)}
	a.store.Update(func(r *status.Record) {
		r.Agent.Running, r.Bootstrapped = true, true
		r.Source = status.Source{Name: "nodes file", Healthy: true, Synced: true}
		r.CNI = status.CNI{Path: "/etc/cni/net.d/10-kindnet.conflist", Present: true}
	})
	snap := model.Snapshot{
		ClusterCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.0.0/16")},
		Peers:        []model.Peer{{Name: "b", Addrs: []netip.Addr{netip.MustParseAddr("192.168.50.2")}}},
	}
	check := func() status.Record {
		t.Helper()
		if err := ns.Do(func() error { a.checkFirewalls(snap); return nil }); err != nil {
			t.Fatal(err)
		}
		r := a.store.Get()
		r.Stamp(t0)
		return r
	}

	r := check()
	if r.Firewall.Error != "" || len(r.Firewall.Drops) != 1 {
		t.Fatalf("want one drop, got %+v", r.Firewall)
	}
	var out bytes.Buffer
	if err := status.Render(&out, &r, status.RenderOptions{}); err != nil {
		t.Fatal(err)
	}
	want := "degraded: ufw drops forwarded pod traffic (ip filter FORWARD: policy drop); fix: ufw route allow from 10.244.0.0/16; ufw route allow to 10.244.0.0/16\n"
	if !strings.HasPrefix(out.String(), want) || r.Verdict.ExitCode() != status.ExitDegraded {
		t.Errorf("kindnet status shows:\n%s\nwant it to start with:\n%s", out.String(), want)
	}

	ns.Exec(t, "iptables", "-P", "FORWARD", "ACCEPT")
	if r := check(); len(r.Firewall.Drops) != 0 || r.Verdict.State != status.Healthy {
		t.Errorf("after the policy is accept: %+v, verdict %s", r.Firewall, r.Verdict)
	}
}
