package cni

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// The conflist the agent writes, loaded with libcni and run as a runtime
// runs it: ADD (with a hostPort), CHECK, STATUS, GC keeping the pod, DEL,
// GC of everything, STATUS once the store is unusable, for both modes.
func TestLibcniRunsTheAgentWrittenConflist(t *testing.T) {
	netnstest.RequireRoot(t)
	for _, mode := range []Mode{ModePTP, ModeBridge} {
		t.Run(string(mode), func(t *testing.T) {
			n := newNode(t)
			dir := t.TempDir()
			// The agent's reconciler writes the file, as on a node.
			rec := &cniconf.Reconciler{Path: filepath.Join(dir, "net.d", "10-kindnet.conflist"), Mode: string(mode), MTU: 1400,
				CNIVersion: "1.1.0", IPAMDir: n.ipamDir, HostPortTable: hostport.DefaultTable}
			snap := &model.Snapshot{Self: model.Peer{PodCIDRs: []netip.Prefix{netip.MustParsePrefix(range4), netip.MustParsePrefix(range6)}}}
			if _, err := rec.Reconcile(context.Background(), snap); err != nil {
				t.Fatal(err)
			}
			list, err := libcni.ConfListFromFile(rec.Path)
			if err != nil {
				t.Fatalf("libcni cannot load the agent's conflist: %v", err)
			}
			// CNI_PATH holds "kindnet": this test binary, which is the plugin.
			bin := filepath.Join(dir, "bin")
			self, _ := os.Executable()
			if err := os.MkdirAll(bin, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(self, filepath.Join(bin, "kindnet")); err != nil {
				t.Fatal(err)
			}
			cni := libcni.NewCNIConfigWithCacheDir([]string{bin}, filepath.Join(dir, "cache"), nil)
			pod := netnstest.New(t)
			rt := &libcni.RuntimeConf{ContainerID: "libcni-pod", NetNS: pod.Path(), IfName: "eth0",
				CapabilityArgs: map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			inNode := func(what string, f func() error) error {
				t.Helper()
				var err error
				if derr := n.ns.Do(func() error { err = f(); return nil }); derr != nil {
					t.Fatal(derr)
				}
				return err
			}

			var res *types100.Result
			if err := inNode("ADD", func() error {
				r, err := cni.AddNetworkList(ctx, list, rt)
				if err == nil {
					res, err = types100.NewResultFromResult(r)
				}
				return err
			}); err != nil {
				t.Fatalf("ADD: %v", err)
			}
			ips := checkPodWiring(t, mode, pod, res)
			if rules := n.hostPortRules(); len(rules) == 0 || !strings.HasPrefix(rules[0], "kindnet/libcni-pod/eth0 ") {
				t.Errorf("hostPort rules after ADD: %v", rules)
			}
			ping(t, pod, nodeV4)
			ping(t, n.ns, ips[1])
			if err := inNode("CHECK", func() error { return cni.CheckNetworkList(ctx, list, rt) }); err != nil {
				t.Errorf("CHECK: %v", err)
			}
			if err := inNode("STATUS", func() error { return cni.GetStatusNetworkList(ctx, list) }); err != nil {
				t.Errorf("STATUS: %v", err)
			}
			valid := &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "libcni-pod", IfName: "eth0"}}}
			if err := inNode("GC", func() error { return cni.GCNetworkList(ctx, list, valid) }); err != nil {
				t.Errorf("GC keeping the pod: %v", err)
			}
			if len(n.allocations()) != 1 || len(n.hostLinks()) != 1 || len(n.hostPortRules()) == 0 {
				t.Errorf("GC removed a valid attachment: %+v %v %v", n.allocations(), n.hostLinks(), n.hostPortRules())
			}
			if err := inNode("DEL", func() error { return cni.DelNetworkList(ctx, list, rt) }); err != nil {
				t.Errorf("DEL: %v", err)
			}
			n.assertNothingLeft("after DEL through libcni")
			if err := inNode("GC", func() error { return cni.GCNetworkList(ctx, list, &libcni.GCArgs{}) }); err != nil {
				t.Errorf("GC of nothing: %v", err)
			}

			// A store the plugin cannot use: STATUS says so.
			if err := os.RemoveAll(n.ipamDir); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(n.ipamDir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			err = inNode("STATUS", func() error { return cni.GetStatusNetworkList(ctx, list) })
			if err == nil || !strings.Contains(err.Error(), "cannot allocate") {
				t.Errorf("STATUS with an unusable store: %v", err)
			}
			_ = os.Remove(n.ipamDir)
		})
	}
}
