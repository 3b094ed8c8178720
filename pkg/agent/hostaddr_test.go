package agent

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// The CNI plugin gave the first pod 10.244.1.1 while the node itself held
// that address: an own podCIDR holding an address of this host, read from
// the kernel, is refused with the reason (bridge mode's own gateway on the
// host excepted).
func TestOwnPodCIDRHoldingAnAddressOfTheHostIsRefused(t *testing.T) {
	ns := routedNS(t)
	link := ns.AddVeth(t, "dummy0")
	ns.AddAddrs(t, link, "10.244.1.1/32")
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "config.yaml")
	body := "nodeName: n1\nnodesFile: " + dir + "/nodes.yaml\nclusterCIDRs: [10.244.0.0/16]\n"
	if err := os.WriteFile(cfgPath, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Sources{File: cfgPath, FileRequired: true})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: cfg, nl: ns.NL}
	a.view = model.View{Self: model.Node{Name: "n1", Addresses: []string{"192.168.50.1"}, PodCIDRs: []string{"10.244.1.0/24"}}}

	snap, err := a.snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Self.PodCIDRs) != 0 || !strings.Contains(snap.SelfProblem, "contains 10.244.1.1, an address of this host") {
		t.Fatalf("ptp: self %v problem %q", snap.Self.PodCIDRs, snap.SelfProblem)
	}

	cfg.CNI.Plugin = config.PluginBridge // the bridge holds 10.244.1.1
	if snap, err = a.snapshot(); err != nil || snap.SelfProblem != "" || len(snap.Self.PodCIDRs) != 1 {
		t.Fatalf("bridge: self %v problem %q err %v", snap.Self.PodCIDRs, snap.SelfProblem, err)
	}
	ns.AddAddrs(t, link, "10.244.1.7/32")
	if snap, err = a.snapshot(); err != nil || !strings.Contains(snap.SelfProblem, "contains 10.244.1.7") {
		t.Fatalf("bridge, another host address: problem %q err %v", snap.SelfProblem, err)
	}
}
