package status

import (
	"bytes"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/golden"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// degradedRecord is a node with one rejected and one off-link peer.
func degradedRecord() Record {
	r := healthyRecord()
	r.Version, r.Started, r.Generation = "1.2.3", t0, 42
	r.Agent.PID, r.Agent.MetricsAddress, r.Agent.LastHeartbeat = 4321, "127.0.0.1:19080", t0.Add(3*time.Minute)
	r.Node.PodCIDRs = []string{"10.244.1.0/24", "fd00:10:244:1::/64"}
	r.Source.LastEvent, r.Source.LastSync, r.Source.Events = t0.Add(time.Minute), t0.Add(time.Minute), 3
	r.CNI = CNI{Path: "/etc/cni/net.d/10-kindnet.conflist", Present: true, Plugin: "ptp", MTU: 1500, Written: t0.Add(time.Second),
		Hash: "f6f2c678618e1ee839ba53db0231c08e3f9921053d2ce2dd83a37838dbedc0f8"}
	r.Masquerade.PodRanges = []string{"10.244.0.0/16"}
	r.Masquerade.NoMasquerade = []string{"10.244.0.0/16", "192.168.0.0/16"}
	r.IPAM = IPAM{Dir: "/run/kindnet/ipam/kindnet", Available: true, Ranges: []IPAMRange{{CIDR: "10.244.1.0/24", Used: 3, Capacity: 253}}}
	r.Routes.Installed = 2
	r.Runtime = Runtime{Endpoint: "unix:///run/containerd/containerd.sock", Auto: true, State: RuntimeReady, Name: "containerd",
		Version: "v2.4.2", NetworkReady: true, Checked: t0.Add(3*time.Minute - 2*time.Second), Since: t0.Add(10 * time.Second)}
	r.Peers = []Peer{
		{Name: "b", State: PeerRouted, Addresses: []string{"192.168.1.2", "fd00::2"}, PodCIDRs: []string{"10.244.2.0/24", "fd00:10:244:2::/64"}},
		{Name: "c", State: PeerPending, Reason: "no podCIDR yet", Addresses: []string{"192.168.1.3"}},
		{Name: "d", State: PeerOffLink, Reason: "192.168.9.4 is not on a directly connected network", Addresses: []string{"192.168.9.4"}, PodCIDRs: []string{"10.244.4.0/24"}},
		{Name: "evil", State: PeerRejected, Reason: "podCIDR 0.0.0.0/0 is a default route", Addresses: []string{"192.168.1.66"}, PodCIDRs: []string{"0.0.0.0/0"}},
	}
	r.Reconcilers = []Run{
		{Name: "routes", Last: t0.Add(2 * time.Minute), Duration: 412 * time.Microsecond, Changes: 1, Runs: 7},
		{Name: "masquerade", Last: t0.Add(2 * time.Minute), Duration: 3 * time.Millisecond, Runs: 7, Errors: 1,
			LastError: "netlink: EBUSY", LastErrorAt: t0.Add(time.Minute)},
		{Name: "cni", Last: t0.Add(2 * time.Minute), Duration: 90 * time.Microsecond, Runs: 7},
	}
	r.Stamp(t0.Add(3 * time.Minute))
	return r
}

func render(t *testing.T, r Record, o RenderOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := Render(&b, &r, o); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestRenderGolden(t *testing.T) {
	golden.Check(t, "testdata/human.golden", []byte(render(t, degradedRecord(), RenderOptions{})))
	golden.Check(t, "testdata/human-wide.golden", []byte(render(t, degradedRecord(), RenderOptions{Wide: true})))
}

func TestRenderHeaderIsTheVerdictAndReasonsAreShown(t *testing.T) {
	out := render(t, degradedRecord(), RenderOptions{})
	first := strings.SplitN(out, "\n", 2)[0]
	if first != "degraded: 1 peer rejected (evil); 1 peer off-link (d)" {
		t.Errorf("header %q", first)
	}
	for _, want := range []string{"podCIDR 0.0.0.0/0 is a default route", "is not on a directly connected network"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks the reason %q:\n%s", want, out)
		}
	}
}

func TestRenderColoursOnlyWhenAsked(t *testing.T) {
	plain := render(t, degradedRecord(), RenderOptions{})
	if strings.Contains(plain, "\x1b[") {
		t.Errorf("escape codes without Color:\n%q", plain)
	}
	col := render(t, degradedRecord(), RenderOptions{Color: true})
	if !strings.HasPrefix(col, yellow+"degraded") || !strings.Contains(col, green+"routed"+reset) || !strings.Contains(col, red+"rejected"+reset) {
		t.Errorf("colours missing:\n%q", col)
	}
	// Colour codes must not shift the columns: strip them and compare.
	stripped := strings.NewReplacer(green, "", yellow, "", red, "", bold, "", reset, "").Replace(col)
	if stripped != plain {
		t.Errorf("coloured output differs from plain once codes are removed:\n%s\n---\n%s", stripped, plain)
	}
}

func TestRenderAgentDownShowsHostFacts(t *testing.T) {
	r := Record{
		SchemaVersion: SchemaVersion,
		Agent:         Agent{Socket: "/run/kindnet/kindnet.sock", Error: "no socket at /run/kindnet/kindnet.sock"},
		Node:          Node{Name: "a", PodCIDRs: []string{"10.244.1.0/24"}},
		CNI:           CNI{Path: "/etc/cni/net.d/10-kindnet.conflist", Present: true, Written: t0},
		Masquerade:    Masq{Enabled: true, Table: "kindnet", Present: true},
		Peers:         []Peer{{Name: "b", State: PeerRouted, PodCIDRs: []string{"10.244.2.0/24"}}},
		Runtime: Runtime{Auto: true, State: RuntimeNotFound, Checked: t0.Add(time.Hour),
			Error: "none of the well-known sockets is there: /run/containerd/containerd.sock does not exist, /run/crio/crio.sock does not exist"},
		Host: &Host{
			Routes:    []HostRoute{{Dst: "10.244.2.0/24", Via: "192.168.1.2", Dev: "eth0"}},
			NftTables: []string{"kindnet"},
			Cache:     CacheInfo{Path: "/var/lib/kindnet/cluster-view.json", Present: true, Written: t0, Peers: 1},
		},
	}
	r.Stamp(t0.Add(time.Hour))
	out := render(t, r, RenderOptions{})
	for _, want := range []string{"down: agent not running (no socket at /run/kindnet/kindnet.sock)",
		"10.244.2.0/24 via 192.168.1.2 dev eth0", "cache /var/lib/kindnet/cluster-view.json written 1h ago, 1 peer",
		"table inet kindnet present", "1 kindnet routes on the host"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	golden.Check(t, "testdata/human-down.golden", []byte(out))
}

// The case of issue 13 as an operator sees it: kindnet wrote its CNI
// config two minutes ago, containerd still reports NetworkReady=false.
func TestRenderRuntimeThatDisagrees(t *testing.T) {
	r := healthyRecord()
	r.Started = t0
	r.CNI.Written = t0.Add(time.Minute)
	r.Runtime = Runtime{Endpoint: "unix:///run/containerd/containerd.sock", Auto: true, State: RuntimeNotReady, Name: "containerd",
		Version: "v2.4.2", Reason: "NetworkPluginNotReady", Message: "Network plugin returns error: cni plugin not initialized",
		Checked: t0.Add(3*time.Minute - time.Second), Since: t0.Add(30 * time.Second)}
	r.Stamp(t0.Add(3 * time.Minute))
	out := render(t, r, RenderOptions{})
	for _, want := range []string{
		"down: CNI config written 2m ago but containerd reports NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized\n",
		"runtime  containerd v2.4.2  NetworkReady=false since 2m ago: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized" +
			"  unix:///run/containerd/containerd.sock (auto)\n",
		"           hint: is /etc/cni/net.d the runtime's CNI conf dir?",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	golden.Check(t, "testdata/human-runtime.golden", []byte(out))

	// The plugin's own STATUS failing is no case for the hint.
	r.Runtime.Message = "Network plugin returns error: plugin type=\"kindnet\" failed (status): kindnet cannot allocate pod addresses"
	if out := render(t, r, RenderOptions{}); strings.Contains(out, "hint:") || !strings.HasPrefix(out, "down: CNI config written 2m ago but containerd") {
		t.Errorf("with kindnet's STATUS failing:\n%s", out)
	}

	// Not answering, then answering again: the runtime line says which.
	r.Runtime = Runtime{Endpoint: "unix:///run/crio/crio.sock", State: RuntimeUnanswered, Error: "no answer within 2s", Checked: t0.Add(3 * time.Minute)}
	r.Stamp(t0.Add(3 * time.Minute))
	out = render(t, r, RenderOptions{Wide: true})
	for _, want := range []string{"degraded: the runtime at unix:///run/crio/crio.sock does not answer: no answer within 2s\n",
		"runtime  the runtime at unix:///run/crio/crio.sock does not answer: no answer within 2s  unix:///run/crio/crio.sock  checked 0s ago\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestRenderFirewallThatDrops: the operator of a node where firewalld
// rejects forwarded traffic reads, in `kindnet status`, who drops it and the
// exact fix; `-o json` carries the same under "firewall".
func TestRenderFirewallThatDrops(t *testing.T) {
	r := healthyRecord()
	r.Started = t0
	r.Firewall = Firewall{Checked: t0, Drops: []FirewallDrop{{Owner: "firewalld", Table: "inet firewalld", Chain: "filter_FORWARD",
		What: "rule handle 12 in chain filter_FORWARD rejects",
		Fix:  "firewall-cmd --permanent --zone=trusted --add-source=10.244.0.0/16; firewall-cmd --reload"}}}
	r.Stamp(t0.Add(time.Minute))
	out := render(t, r, RenderOptions{})
	want := "degraded: firewalld drops forwarded pod traffic (inet firewalld filter_FORWARD: rule handle 12 in chain filter_FORWARD rejects); " +
		"fix: firewall-cmd --permanent --zone=trusted --add-source=10.244.0.0/16; firewall-cmd --reload\n"
	if !strings.HasPrefix(out, want) {
		t.Errorf("output does not start with %q:\n%s", want, out)
	}
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"firewall":{"checked":"2026-`) || !strings.Contains(string(b), `"owner":"firewalld","table":"inet firewalld","chain":"filter_FORWARD"`) {
		t.Errorf("json lacks the firewall drop: %s", b)
	}
}

func TestInsecureFilesDegradeAndAreShownWhateverTheVerdict(t *testing.T) {
	const w = "nodes file /etc/kindnet/nodes.yaml: it is writable by group or others (mode 0666): a user other than root can change what kindnet installs"
	r := healthyRecord()
	r.Warnings = []string{w}
	if v := Judge(&r); v.State != Degraded || !slices.Contains(v.Reasons, "insecure: "+w) {
		t.Fatalf("verdict %+v: an insecure file must degrade, naming it", v)
	}
	r.CNI.Present = false // down for another reason: the warning still shows
	r.Stamp(t0)
	if out := render(t, r, RenderOptions{}); !strings.Contains(out, "WARNING  "+w) {
		t.Fatalf("no WARNING line:\n%s", out)
	}
}
