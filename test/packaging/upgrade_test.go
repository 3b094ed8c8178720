package packaging

import (
	"github.com/kindnet-dev/kindnet/test/sandbox"

	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The sandbox is node1 (its own network namespace, where systemd runs the
// packaged agent); node2 is a namespace inside the sandbox on the same
// link, with a static route back standing in for node2's own agent. Each
// has one pod wired by the installed CNI plugin.
const (
	upConfig = `# written by the upgrade test
nodeName: node1
nodesFile: /etc/kindnet/nodes.yaml
clusterCIDRs: [10.244.0.0/16]
`
	upNodes = `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: node1}, spec: {podCIDRs: [10.244.1.0/24]}, status: {addresses: [{type: InternalIP, address: 10.99.0.1}]}}
- {apiVersion: v1, kind: Node, metadata: {name: node2}, spec: {podCIDRs: [10.244.2.0/24]}, status: {addresses: [{type: InternalIP, address: 10.99.0.2}]}}
`
	// node2: its end of the link, forwarding, and the route to node1's
	// pods that node2's agent would install.
	upNode2 = `set -e
ip netns add node2
ip link add eth0 type veth peer name n2
ip link set n2 netns node2
ip -n node2 link set n2 name eth0
ip addr add 10.99.0.1/24 dev eth0
ip link set eth0 up
ip -n node2 link set lo up
ip -n node2 addr add 10.99.0.2/24 dev eth0
ip -n node2 link set eth0 up
ip netns exec node2 sysctl -qw net.ipv4.ip_forward=1
ip -n node2 route add 10.244.1.0/24 via 10.99.0.1 proto static
`
)

// upgradePing are the ping's figures: one every 10 ms for 20 s, enough for
// dpkg -i to stop the old agent and start the new one on a busy machine.
const (
	upgradePingCount    = 2000
	upgradePingInterval = 10 * time.Millisecond
)

var pingCounts = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// TestDebUpgradeUnderSystemdLosesNoPacket installs the previous release's
// .deb (built from lastRelease, as 1.0.0: its plugin is a link to the
// agent) in a throwaway systemd sandbox, runs the agent as the packaged
// unit, wires a pod on this node and one on a second node with the
// installed CNI plugin, and pings between them every 10 ms while `dpkg -i`
// upgrades to this tree's 1.0.1 (its postinst restarts the agent): every
// echo request is answered. Then the new plugin, now its own regular file,
// deletes the pod the old one made, and nothing of it is left behind.
func TestDebUpgradeUnderSystemdLosesNoPacket(t *testing.T) {
	needRoot(t)
	needTools(t, "unshare", "nsenter", "ip", "ping", "systemctl", "journalctl", "dpkg")
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		needTools(t, "systemd")
	}
	v1, v2 := releasedPackages(t, "1.0.0"), packagesFor(t, "1.0.1")
	labTool := buildLabTool(t)
	s := sandbox.New(t, sandbox.Options{Mode: sandbox.Systemd})
	s.CopyIn(v1.deb, "/tmp/kindnet-v1.deb", 0o644)
	s.CopyIn(v2.deb, "/tmp/kindnet-v2.deb", 0o644)
	b, err := os.ReadFile(labTool)
	if err != nil {
		t.Fatal(err)
	}
	s.WriteFile("/tmp/kindnet-lab", string(b), 0o755)

	s.MustRun("dpkg", "-i", "/tmp/kindnet-v1.deb")
	s.WriteFile("/etc/kindnet/config.yaml", upConfig, 0o644)
	s.WriteFile("/etc/kindnet/nodes.yaml", upNodes, 0o644)
	s.Sh(upNode2)
	s.BootWithPackagedUnits(map[string]string{"kubelet.service": stubKubelet})
	s.MustRun("systemctl", "start", "kindnet.service")
	if k := s.UnitProps("kindnet.service", "ActiveState"); k["ActiveState"] != "active" {
		o, _, _ := s.Run("journalctl", "-u", "kindnet", "--no-pager")
		t.Fatalf("kindnet.service: %v\n%s", k, o)
	}
	sandbox.WaitFor(t, "the route to node2's pods", 20*time.Second, func() (bool, string) {
		r := kindnetRoutes(t, s)
		return strings.Contains(r, "10.244.2.0/24 via 10.99.0.2"), r
	})

	if fi, err := os.Lstat(s.Path("/opt/cni/bin/kindnet")); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("the %s package should link /opt/cni/bin/kindnet to the agent: %v %v", lastRelease, fi, err)
	}
	clean := nodeState(s)

	// Pod A on node1 through the agent's conflist; pod B on node2 through
	// the same conflist with node2's range and its own IPAM directory.
	a := wirePod(t, s, "", "/etc/cni/net.d/10-kindnet.conflist", "pod-a")
	conf := s.Sh("cat /etc/cni/net.d/10-kindnet.conflist")
	n2conf := strings.ReplaceAll(conf, "10.244.1.0/24", "10.244.2.0/24")
	n2conf = strings.ReplaceAll(n2conf, `"/run/kindnet/ipam"`, `"/run/kindnet-node2/ipam"`)
	if n2conf == conf || !strings.Contains(n2conf, "/run/kindnet-node2/ipam") {
		t.Fatalf("cannot derive node2's conflist from:\n%s", conf)
	}
	s.WriteFile("/tmp/node2.conflist", n2conf, 0o644)
	bIP := wirePod(t, s, "node2", "/tmp/node2.conflist", "pod-b")
	s.MustRun("ip", "netns", "exec", "pod-a", "ping", "-n", "-q", "-c", "3", "-W", "1", bIP)
	t.Logf("pod-a %s on node1, pod-b %s on node2", a, bIP)

	before := s.UnitProps("kindnet.service", "MainPID")
	type result struct {
		out string
		err error
	}
	done := make(chan result, 1)
	pingStart := time.Now()
	go func() {
		o, e, err := s.Run("ip", "netns", "exec", "pod-a", "ping", "-n", "-q", "-c", strconv.Itoa(upgradePingCount),
			"-i", strconv.FormatFloat(upgradePingInterval.Seconds(), 'f', 3, 64), "-W", "1", bIP)
		done <- result{o + e, err}
	}()
	time.Sleep(2 * time.Second)
	upgradeStart := time.Now()
	// --force-confold: the test wrote its own config.yaml, and the
	// packaged one changed since lastRelease; keep the administrator's,
	// as an unattended upgrade does, rather than prompt.
	s.MustRun("dpkg", "--force-confold", "-i", "/tmp/kindnet-v2.deb")
	upgraded := time.Since(pingStart)
	now := s.UnitProps("kindnet.service", "ActiveState", "MainPID")
	if now["ActiveState"] != "active" || now["MainPID"] == before["MainPID"] {
		t.Fatalf("the upgrade did not restart the agent: before %v, now %v", before, now)
	}
	if v := strings.TrimSpace(s.MustRun("kindnet", "version", "--short")); v != "1.0.1" {
		t.Fatalf("after the upgrade kindnet is %q, want 1.0.1", v)
	}
	t.Logf("dpkg -i 1.0.0 -> 1.0.1 took %s; agent pid %s -> %s", time.Since(upgradeStart).Round(time.Millisecond), before["MainPID"], now["MainPID"])
	if window := time.Duration(upgradePingCount) * upgradePingInterval; upgraded > window-time.Second {
		t.Fatalf("the upgrade ended %s into a %s ping: the ping did not cover it", upgraded.Round(time.Millisecond), window)
	}

	r := <-done
	m := pingCounts.FindStringSubmatch(r.out)
	if m == nil {
		t.Fatalf("ping pod-a -> pod-b: no summary (%v):\n%s", r.err, r.out)
	}
	sent, _ := strconv.Atoi(m[1])
	received, _ := strconv.Atoi(m[2])
	t.Logf("ping pod-a -> pod-b every %s across the upgrade: %d sent, %d received", upgradePingInterval, sent, received)
	if sent != upgradePingCount || received != sent {
		t.Errorf("packets lost across the upgrade: %d sent, %d received:\n%s", sent, received, r.out)
	}

	// The new plugin deletes the pod the old one added.
	if fi, err := os.Lstat(s.Path("/opt/cni/bin/kindnet")); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("after the upgrade /opt/cni/bin/kindnet should be the lean plugin, a regular file: %v %v", fi, err)
	}
	s.MustRun("/tmp/kindnet-lab", "cni", "del", "--conflist", "/etc/cni/net.d/10-kindnet.conflist", "--bin-dir", "/opt/cni/bin",
		"--cache-dir", "/var/lib/cni-pod-a", "--netns", "/run/netns/pod-a", "--container-id", "pod-a", "--pod-name", "pod-a")
	if left := nodeState(s); left != clean {
		t.Errorf("DEL of pod-a (added by the %s plugin) with the new plugin left something behind:\nbefore ADD:\n%s\nafter DEL:\n%s", lastRelease, clean, left)
	}
	if held := s.Sh("grep -rl pod-a /run/kindnet/ipam || true"); strings.TrimSpace(held) != "" {
		t.Errorf("after DEL the IPAM store still holds pod-a's address: %s", held)
	}
}

// nodeState is what a pod's ADD adds to node1 and its DEL must remove:
// links, addresses and routes of both families (the IPAM store is checked
// on its own: its state file stays, without the pod). The IPv6 link-local
// address of node1's uplink, and its local route, are left out: they
// finish duplicate address detection during the test (a leftover pod
// link would still show in the link list).
func nodeState(s *sandbox.Sandbox) string {
	return s.Sh(`{
ip -o link show | sed 's/^[0-9]*: //; s/ qlen.*//; s/link-netns[^ ]*//'
ip -o addr show
ip route show table all
ip -6 route show table all
} | grep -v 'fe80::[0-9a-f:]*[0-9a-f]\(/64\)\? \(dev\|scope\)'`)
}

// wirePod creates a pod namespace inside the sandbox and runs CNI ADD for
// it with the installed plugin (/opt/cni/bin/kindnet) through libcni
// (kindnet-lab cni), from inside node namespace node ("" = the sandbox's
// own). It returns the pod's IPv4 address.
func wirePod(t *testing.T, s *sandbox.Sandbox, node, conflist, name string) string {
	t.Helper()
	s.MustRun("ip", "netns", "add", name)
	s.MustRun("ip", "-n", name, "link", "set", "lo", "up")
	args := []string{"/tmp/kindnet-lab", "cni", "add", "--conflist", conflist, "--bin-dir", "/opt/cni/bin",
		"--cache-dir", "/var/lib/cni-" + name, "--netns", "/run/netns/" + name, "--container-id", name, "--pod-name", name}
	if node != "" {
		args = append([]string{"ip", "netns", "exec", node}, args...)
	}
	out := s.MustRun(args...)
	var res struct {
		IPs []string `json:"ips"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.IPs) == 0 {
		t.Fatalf("CNI ADD for %s: %v: %q", name, err, out)
	}
	ip, _, _ := strings.Cut(res.IPs[0], "/")
	return ip
}

// buildLabTool builds kindnet-lab (the libcni driver) for the sandbox.
func buildLabTool(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "kindnet-lab")
	cmd := exec.Command("go", "build", "-o", out, "./test/lab/kindnet-lab")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build kindnet-lab: %v\n%s", err, fmt.Sprint(string(b)))
	}
	return out
}
