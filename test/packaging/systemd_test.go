package packaging

import (
	"github.com/kindnet-dev/kindnet/test/sandbox"

	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The lab node inside the systemd sandbox: node1 with two peers on its
// link, as the packaged config would describe a real node.
const (
	// logLevel debug: a routed peer and each route change are debug lines
	// (info has one summary per reconcile), and the journal-field and
	// upgrade checks below read them.
	sdConfig = `# written by the systemd sandbox test
nodeName: node1
nodesFile: /etc/kindnet/nodes.yaml
clusterCIDRs: [10.244.0.0/16]
logLevel: debug
`
	sdNodes = `apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Node, metadata: {name: node1}, spec: {podCIDRs: [10.244.1.0/24]}, status: {addresses: [{type: InternalIP, address: 10.99.0.1}]}}
- {apiVersion: v1, kind: Node, metadata: {name: node2}, spec: {podCIDRs: [10.244.2.0/24]}, status: {addresses: [{type: InternalIP, address: 10.99.0.2}]}}
- {apiVersion: v1, kind: Node, metadata: {name: node3}, spec: {podCIDRs: [10.244.3.0/24]}, status: {addresses: [{type: InternalIP, address: 10.99.0.3}]}}
`
	// kubelet stand-in: records what it finds the moment it starts (in
	// ExecStartPre=, so that `systemctl start` returns only once recorded).
	stubKubelet = `[Unit]
Description=stub kubelet: records the pod network it finds at start
[Service]
ExecStartPre=/bin/sh -c 'systemctl is-active kindnet.service >/run/kubelet-stub.state; ip -4 route show proto 107 >/run/kubelet-stub.routes; ls /etc/cni/net.d >/run/kubelet-stub.cni'
ExecStart=/bin/sleep infinity
`
)

// kindnetRoutes lists the agent's routes by protocol name: that the name
// resolves also shows the package's rt_protos.d entry works.
func kindnetRoutes(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	return s.MustRun("ip", "-4", "route", "show", "proto", "kindnet")
}

func wantRoutes(t *testing.T, when, routes string) {
	t.Helper()
	for _, r := range []string{"10.244.2.0/24 via 10.99.0.2 dev eth0", "10.244.3.0/24 via 10.99.0.3 dev eth0"} {
		if !strings.Contains(routes, r) {
			t.Errorf("%s: no route %q in:\n%s", when, r, routes)
		}
	}
}

// TestSystemdRunsPackagedUnitReadyBeforeKubeletRestartsAndKeepsRoutes boots
// a throwaway systemd as PID 1 of new namespaces (package test/sandbox), with
// the kindnet.service and kubelet drop-in exactly as the .deb installed
// them, and drives it with systemctl.
func TestSystemdRunsPackagedUnitReadyBeforeKubeletRestartsAndKeepsRoutes(t *testing.T) {
	needRoot(t)
	needTools(t, "unshare", "nsenter", "ip", "nft", "journalctl", "systemctl")
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		needTools(t, "systemd") // names the package to install
	}
	p := packagesFor(t, "1.0.0")
	s := sandbox.New(t, sandbox.Options{Mode: sandbox.Systemd})

	// Install offline, as an image build would, then configure the node.
	s.CopyIn(p.deb, "/tmp/kindnet.deb", 0o644)
	s.MustRun("dpkg", "-i", "/tmp/kindnet.deb")
	s.WriteFile("/etc/kindnet/config.yaml", sdConfig, 0o644)
	s.WriteFile("/etc/kindnet/nodes.yaml", sdNodes, 0o644)
	s.Sh("ip link add eth0 type veth peer name lan0 && ip addr add 10.99.0.1/24 dev eth0 && ip link set lan0 up && ip link set eth0 up")
	units := s.BootWithPackagedUnits(map[string]string{"kubelet.service": stubKubelet})

	// kubelet pulls kindnet in (Wants=) and starts after it (After=): after
	// its READY=1, i.e. with the pod network already in place.
	s.MustRun("systemctl", "start", "kubelet.service")
	k := s.UnitProps("kindnet.service", "ActiveState", "SubState", "StatusText", "MainPID", "NRestarts", "Type")
	if k["ActiveState"] != "active" || k["SubState"] != "running" || k["Type"] != "notify" {
		o, _, _ := s.Run("journalctl", "-u", "kindnet", "--no-pager")
		t.Fatalf("kindnet.service: %v\n%s", k, o)
	}
	if got := strings.TrimSpace(s.Sh("cat /run/kubelet-stub.state")); got != "active" {
		t.Errorf("kubelet started while kindnet was %q", got)
	}
	wantRoutes(t, "when kubelet started", s.Sh("cat /run/kubelet-stub.routes"))
	if got := s.Sh("cat /run/kubelet-stub.cni"); !strings.Contains(got, "10-kindnet.conflist") {
		t.Errorf("when kubelet started /etc/cni/net.d held %q, want 10-kindnet.conflist", got)
	}
	t.Run("ready only after the bootstrap state", func(t *testing.T) {
		// The agent logs each peer's route before READY=1; systemd logs
		// "Started" once READY=1 arrived. Both go through the journal's
		// one datagram socket in that order, so the journal's order is
		// the order they happened in.
		log := s.MustRun("journalctl", "-o", "cat", "--no-pager")
		peer := strings.Index(log, "peer routed peer=node3")
		started := strings.Index(log, "Started kindnet.service")
		if started < 0 {
			started = strings.Index(log, "Started kindnet node agent")
		}
		if peer < 0 || started < 0 || peer > started {
			t.Errorf("want the agent's route log before systemd's Started line (at %d, %d):\n%s", peer, started, log)
		}
	})

	t.Run("status line", func(t *testing.T) {
		want := "2 peers routed, CNI config ready, nodes file"
		if k["StatusText"] != want {
			t.Errorf("StatusText = %q, want %q", k["StatusText"], want)
		}
		if st, _, _ := s.Run("systemctl", "status", "kindnet.service", "--no-pager"); !strings.Contains(st, `Status: "`+want+`"`) {
			t.Errorf("systemctl status does not show the status line:\n%s", st)
		}
	})

	t.Run("the container runtime's answer, asked under the hardened unit", func(t *testing.T) {
		// A fake runtime at containerd's well-known socket, root's with
		// mode 0660 like containerd's, reporting what containerd reports
		// when it has loaded no CNI config. The agent (cri.endpoint auto,
		// root with only CAP_NET_ADMIN, ProtectSystem=strict, filtered
		// system calls) finds it, asks it, and its STATUS= says so.
		b, err := os.ReadFile(buildLabTool(t))
		if err != nil {
			t.Fatal(err)
		}
		s.WriteFile("/tmp/kindnet-lab", string(b), 0o755)
		s.MustRun("mkdir", "-p", "/run/containerd")
		s.MustRun("systemd-run", "--unit=fake-cri", "--collect", "--", "/tmp/kindnet-lab", "fake-cri", "--socket", "/run/containerd/containerd.sock")
		want := "2 peers routed, CNI config written but fakerd reports NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized, nodes file"
		sandbox.WaitFor(t, "the runtime's answer in the status line", 30*time.Second, func() (bool, string) {
			st := s.UnitProps("kindnet.service", "StatusText")["StatusText"]
			return st == want, st
		})
		log := s.MustRun("journalctl", "-u", "kindnet", "-o", "cat", "--no-pager")
		if !strings.Contains(log, "container runtime reports NetworkReady=false although kindnet's CNI config is written") {
			t.Errorf("no warning about the runtime in the journal:\n%s", log)
		}
		// Gone again (its socket removed): nothing to ask, nothing said.
		s.MustRun("systemctl", "stop", "fake-cri.service")
		sandbox.WaitFor(t, "the status line without a runtime", 30*time.Second, func() (bool, string) {
			st := s.UnitProps("kindnet.service", "StatusText")["StatusText"]
			return st == "2 peers routed, CNI config ready, nodes file", st
		})
	})

	t.Run("journal fields", func(t *testing.T) {
		for _, q := range []struct{ match, want string }{
			{"PEER=node2", "peer routed peer=node2 cidr=10.244.2.0/24 reconciler=routes via=10.99.0.2"},
			{"CIDR=10.244.3.0/24", "peer routed peer=node3 cidr=10.244.3.0/24"},
			{"RECONCILER=cni", "CNI config written reconciler=cni"},
			{"SYSLOG_IDENTIFIER=kindnet", "bootstrap state applied"},
		} {
			got := s.MustRun("journalctl", "-u", "kindnet", q.match, "-o", "cat", "--no-pager")
			if !strings.Contains(got, q.want) {
				t.Errorf("journalctl -u kindnet %s: want %q in:\n%s", q.match, q.want, got)
			}
		}
		if other := s.MustRun("journalctl", "-u", "kindnet", "PEER=node2", "-o", "cat", "--no-pager"); strings.Contains(other, "node3") {
			t.Errorf("PEER=node2 also matched node3's entries:\n%s", other)
		}
	})

	t.Run("host state under the hardened unit", func(t *testing.T) {
		wantRoutes(t, "now", kindnetRoutes(t, s))
		s.MustRun("nft", "list", "table", "inet", "kindnet")
		if got := strings.TrimSpace(s.Sh("cat /proc/sys/net/ipv4/ip_forward")); got != "1" {
			t.Errorf("ip_forward = %s: the agent could not write /proc/sys/net", got)
		}
		for dir, mode := range map[string]string{"/var/lib/kindnet": "drwx------", "/run/kindnet": "drwx------"} {
			if fi, err := os.Stat(s.Path(dir)); err != nil || fi.Mode().String() != mode {
				t.Errorf("%s: %v %v, want %s", dir, fi.Mode(), err, mode)
			}
		}
		if _, err := os.Stat(s.Path("/var/lib/kindnet/cluster-view.json")); err != nil {
			t.Errorf("no cache in the state directory: %v", err)
		}
		if sec, _, err := s.Run("systemd-analyze", "security", "--no-pager", "kindnet.service"); err == nil {
			lines := strings.Split(strings.TrimSpace(sec), "\n")
			t.Logf("systemd-analyze security kindnet.service: %s", lines[len(lines)-1])
		}
		// Only CAP_NET_ADMIN (bit 12), in every set, and no way to gain more.
		status := s.Sh("cat /proc/" + k["MainPID"] + "/status")
		for _, want := range []string{"CapPrm:\t0000000000001000", "CapEff:\t0000000000001000", "CapBnd:\t0000000000001000", "NoNewPrivs:\t1", "Seccomp:\t2"} {
			if !strings.Contains(status, want) {
				t.Errorf("agent's /proc/PID/status lacks %q:\n%s", want, status)
			}
		}
	})

	t.Run("SIGKILL: systemd restarts it", func(t *testing.T) {
		before := s.UnitProps("kindnet.service", "MainPID", "NRestarts")
		s.MustRun("kill", "-KILL", before["MainPID"])
		sandbox.WaitFor(t, "a restarted agent", 20*time.Second, func() (bool, string) {
			now := s.UnitProps("kindnet.service", "ActiveState", "MainPID", "NRestarts")
			n, _ := strconv.Atoi(now["NRestarts"])
			b, _ := strconv.Atoi(before["NRestarts"])
			return now["ActiveState"] == "active" && n == b+1 && now["MainPID"] != before["MainPID"], fmt.Sprint(now)
		})
		wantRoutes(t, "after the restart", kindnetRoutes(t, s))
	})

	t.Run("watchdog: pinged while healthy, restarted when the loop stalls", func(t *testing.T) {
		// A shorter watchdog for the test only; the agent pings at half of
		// whatever systemd tells it (WATCHDOG_USEC).
		s.WriteFile(filepath.Join(units, "kindnet.service.d/50-test-watchdog.conf"), "[Service]\nWatchdogSec=2s\nTimeoutAbortSec=1s\n", 0o644)
		s.MustRun("systemctl", "daemon-reload")
		s.MustRun("systemctl", "restart", "kindnet.service")
		before := s.UnitProps("kindnet.service", "MainPID", "NRestarts", "WatchdogUSec")
		if before["WatchdogUSec"] != "2s" {
			t.Fatalf("WatchdogUSec = %q, want 2s", before["WatchdogUSec"])
		}
		time.Sleep(5 * time.Second) // 2.5 watchdog periods
		if now := s.UnitProps("kindnet.service", "ActiveState", "MainPID", "NRestarts"); now["MainPID"] != before["MainPID"] || now["NRestarts"] != before["NRestarts"] {
			t.Fatalf("a healthy agent was restarted by the watchdog: before %v, now %v", before, now)
		}
		// A stopped process sends nothing: the loop "hangs".
		s.MustRun("kill", "-STOP", before["MainPID"])
		sandbox.WaitFor(t, "the watchdog to restart the stalled agent", 30*time.Second, func() (bool, string) {
			now := s.UnitProps("kindnet.service", "ActiveState", "MainPID", "NRestarts", "Result")
			j, _, _ := s.Run("journalctl", "--no-pager", "-n", "40")
			return now["ActiveState"] == "active" && now["MainPID"] != before["MainPID"], fmt.Sprint(now) + "\n" + j
		})
		if log := s.MustRun("journalctl", "-u", "kindnet", "-o", "cat", "--no-pager"); !strings.Contains(log, "Watchdog timeout") {
			t.Errorf("no watchdog timeout in the journal:\n%s", log)
		}
	})

	t.Run("upgrade under systemd: dpkg -i restarts the agent, routes untouched", func(t *testing.T) {
		v2 := packagesFor(t, "1.0.1")
		s.CopyIn(v2.deb, "/tmp/kindnet-v2.deb", 0o644)
		routesBefore := kindnetRoutes(t, s)
		before := s.UnitProps("kindnet.service", "MainPID")
		kubelet := s.UnitProps("kubelet.service", "MainPID")
		cursor := strings.TrimSpace(s.Sh("journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'"))
		s.MustRun("dpkg", "-i", "/tmp/kindnet-v2.deb")
		now := s.UnitProps("kindnet.service", "ActiveState", "MainPID")
		if now["ActiveState"] != "active" || now["MainPID"] == before["MainPID"] {
			t.Fatalf("the upgrade did not restart the agent: before %v, now %v", before, now)
		}
		if got := kindnetRoutes(t, s); got != routesBefore {
			t.Errorf("routes changed across the upgrade:\nbefore:\n%s\nafter:\n%s", routesBefore, got)
		}
		since := s.MustRun("journalctl", "-u", "kindnet", "--after-cursor", cursor, "-o", "cat", "--no-pager")
		if !strings.Contains(since, "kindnet 1.0.1") {
			t.Errorf("the restarted agent is not the new version:\n%s", since)
		}
		// The new agent adopts the routes it finds: it adds or deletes none.
		summaries := 0
		for _, l := range strings.Split(since, "\n") {
			if strings.HasPrefix(l, "add ") || strings.HasPrefix(l, "delete ") || strings.HasPrefix(l, "replace ") {
				t.Errorf("the upgrade changed a route: %s", l)
			}
			if strings.HasPrefix(l, "reconciled why=") {
				summaries++
				if !strings.Contains(l, " routes.added=0 routes.replaced=0 routes.removed=0 ") {
					t.Errorf("the upgrade changed a route: %s", l)
				}
			}
		}
		if summaries == 0 {
			t.Errorf("the restarted agent logged no reconcile summary:\n%s", since)
		}
		if k := s.UnitProps("kubelet.service", "MainPID"); k["MainPID"] != kubelet["MainPID"] {
			t.Errorf("the upgrade restarted kubelet: %v -> %v", kubelet, k)
		}
	})

	t.Run("stop leaves the network in place; kubelet keeps running", func(t *testing.T) {
		s.MustRun("systemctl", "stop", "kindnet.service")
		if st := s.UnitProps("kindnet.service", "ActiveState"); st["ActiveState"] != "inactive" {
			t.Errorf("after stop: %v", st)
		}
		wantRoutes(t, "after stop", kindnetRoutes(t, s))
		s.MustRun("nft", "list", "table", "inet", "kindnet")
		if _, err := os.Stat(s.Path("/etc/cni/net.d/10-kindnet.conflist")); err != nil {
			t.Errorf("CNI config gone after stop: %v", err)
		}
		if _, err := os.Stat(s.Path("/run/kindnet")); err != nil {
			t.Errorf("run dir (IPAM) gone after stop: %v", err)
		}
		if log := s.MustRun("journalctl", "-u", "kindnet", "-o", "cat", "--no-pager"); !strings.Contains(log, "stopping; routes, rules and CNI config stay in place") {
			t.Errorf("no clean-stop line in the journal:\n%s", log)
		}
		if st := s.UnitProps("kubelet.service", "ActiveState"); st["ActiveState"] != "active" {
			t.Errorf("stopping kindnet stopped kubelet: %v", st)
		}
	})

	t.Run("purge runs kindnet cleanup: routes, table, CNI config, state and config gone; others' files kept", func(t *testing.T) {
		// A file kindnet did not create, in its run directory: purge
		// removes kindnet's files and keeps this one, and so the directory.
		foreign := "/run/kindnet/not-kindnets"
		s.MustRun("sh", "-c", "echo keep >"+foreign)
		s.MustRun("dpkg", "--purge", "kindnet")
		if _, err := os.Lstat(s.Path(foreign)); err != nil {
			t.Errorf("purge removed %s, which kindnet did not create: %v", foreign, err)
		}
		if left := s.MustRun("ls", "-A", "/run/kindnet"); strings.TrimSpace(left) != "not-kindnets" {
			t.Errorf("/run/kindnet after purge holds:\n%s\nwant only the foreign file", left)
		}
		// By number: the purge also removed the rt_protos.d name.
		if got := s.MustRun("ip", "-4", "route", "show", "proto", "107"); got != "" {
			t.Errorf("kindnet routes left after purge:\n%s", got)
		}
		if _, _, err := s.Run("nft", "list", "table", "inet", "kindnet"); err == nil {
			t.Error("nftables table inet kindnet left after purge")
		}
		for _, p := range []string{"/etc/cni/net.d/10-kindnet.conflist", "/var/lib/kindnet", "/etc/kindnet", "/usr/bin/kindnet"} {
			if _, err := os.Lstat(s.Path(p)); err == nil {
				t.Errorf("left after purge: %s", p)
			}
		}
		if got := strings.TrimSpace(s.Sh("ip route show | grep -c 'via 10.99.0' || true")); got != "0" {
			t.Errorf("%s routes via the peers left after purge", got)
		}
	})
}
