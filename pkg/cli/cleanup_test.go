package cli

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
)

// cleanup, run inside a node namespace, removes what the CNI plugin made
// there too: the hostPort table, the bridge and the IPAM directory; and it
// leaves a foreign nftables table and link alone.
func TestCleanupRemovesThePluginsTableBridgeAndIPAMDir(t *testing.T) {
	ns := netnstest.New(t)
	dir := t.TempDir()
	runDir := filepath.Join(dir, "run")
	cfg := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf("nodeName: n1\nnodesFile: %s/nodes.yaml\nrunDir: %s\nstateDir: %s/state\ncni:\n  confDir: %s/net.d\n",
		dir, runDir, dir, dir)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}

	// What the plugin leaves on a node: a pod's allocation, its hostPort
	// rules, the bridge.
	if _, err := ipam.New(filepath.Join(runDir, "ipam"), "kindnet").Allocate(ipam.Key{ContainerID: "c", IfName: "eth0"},
		[]ipam.Pool{{Range: netip.MustParsePrefix("10.244.1.0/24")}}, true); err != nil {
		t.Fatal(err)
	}
	table := hostport.Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	if err := table.Add("kindnet/c/eth0", []netip.Addr{netip.MustParseAddr("10.244.1.2")}, nil,
		[]hostport.Mapping{{HostPort: 80, ContainerPort: 80, Protocol: "tcp"}}); err != nil {
		t.Fatal(err)
	}
	ns.Exec(t, "nft", "add", "table", "inet", "someone_else")
	ns.Exec(t, "ip", "link", "add", "kindnet0", "type", "bridge")
	// A pod's host end with route_localnet on (a hostPort on 127.0.0.1),
	// and someone else's link with it on too.
	ns.Exec(t, "ip", "link", "add", "kn0123456789ab", "type", "veth", "peer", "name", "podend")
	ns.Exec(t, "ip", "link", "set", "kn0123456789ab", "alias", "kindnet:kindnet/c/eth0")
	ns.Exec(t, "ip", "link", "add", "theirs", "type", "veth", "peer", "name", "theirsp")
	ns.Exec(t, "sysctl", "-qw", "net.ipv4.conf.kn0123456789ab.route_localnet=1", "net.ipv4.conf.theirs.route_localnet=1")

	var out, errb bytes.Buffer
	var code int
	if err := ns.Do(func() error {
		code = Execute([]string{"cleanup", "--config", cfg}, &out, &errb, nil)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code != ExitOK {
		t.Fatalf("cleanup exited %d: %s%s", code, out.String(), errb.String())
	}
	for _, want := range []string{"table inet kindnet_hostport removed", "bridge: kindnet0 removed", "route_localnet: turned off on 1 pod links", "IPAM: " + runDir + "/ipam removed"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("cleanup output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(runDir, "ipam")); !os.IsNotExist(err) {
		t.Error("IPAM dir still there")
	}
	if _, err := ns.NL.LinkByName("kindnet0"); err == nil {
		t.Error("bridge still there")
	}
	for link, want := range map[string]string{"kn0123456789ab": "0", "theirs": "1"} {
		if got := strings.TrimSpace(ns.Exec(t, "sysctl", "-n", "net.ipv4.conf."+link+".route_localnet")); got != want {
			t.Errorf("route_localnet on %s after cleanup = %s, want %s", link, got, want)
		}
	}
	tables := ns.Exec(t, "nft", "list", "tables")
	if strings.Contains(tables, "kindnet_hostport") || !strings.Contains(tables, "someone_else") {
		t.Errorf("tables after cleanup:\n%s", tables)
	}

	// A link called kindnet0 that is not a bridge is not kindnet's.
	la := netlink.NewLinkAttrs()
	la.Name = "kindnet0"
	if err := ns.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "kindnet0p"}); err != nil {
		t.Fatal(err)
	}
	_ = ns.Do(func() error { code = Execute([]string{"cleanup", "--config", cfg}, &out, &errb, nil); return nil })
	if _, err := ns.NL.LinkByName("kindnet0"); err != nil || code == ExitOK {
		t.Errorf("cleanup removed a veth named kindnet0 (exit %d)", code)
	}
}
