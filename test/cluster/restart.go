package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
)

// RestartTimes says how long each step of a node restart took.
type RestartTimes struct {
	// Killed is the number of processes killed (node programs, shims,
	// containers).
	Killed int
	// StaleVeths is the number of host-side pod veths still there once
	// the pod network namespaces were gone, and deleted by RestartNode.
	StaleVeths                 int
	Kill, Clear, Agent, Others time.Duration
}

// RestartNode restarts node name as a reboot does: every process of the
// node is killed at once (SIGKILL: its recorded programs, and whatever
// else lives in its mount namespace, network namespace or cgroups — shims,
// pod sandboxes, containers); every mount made on the node since it was
// set up is dropped and its /run emptied, as tmpfs is at boot (the pod
// network namespaces, pinned under /run/netns, go with it, and their
// veths with them); its cgroups are made afresh; then its programs start
// again in the order Up starts them: the kindnet agent until READY=1,
// containerd, kubelet, kube-proxy. Disk state (/var/lib/kubelet,
// /var/lib/containerd, /etc) is kept, as a reboot keeps it. o gives the
// binaries, the repository and the log, as for Up; o.Images are not
// imported again (they are on the node's disk).
func (c *Cluster) RestartNode(ctx context.Context, name string, o Options) (RestartTimes, error) {
	var t RestartTimes
	n := c.Node(name)
	if n == nil {
		return t, fmt.Errorf("cluster %s has no node %q", c.ID, name)
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	start := time.Now()
	killed, err := c.killNode(ctx, n)
	t.Killed, t.Kill = killed, time.Since(start)
	if err != nil {
		return t, err
	}
	o.Log("cluster %s: %s: %d processes killed in %s", c.ID, name, killed, t.Kill.Round(time.Millisecond))

	start = time.Now()
	if err := n.clearVolatile(ctx); err != nil {
		return t, err
	}
	stale, err := n.removeStaleVeths(ctx)
	t.StaleVeths = stale
	if err != nil {
		return t, err
	}
	if err := n.flushRuntimeNetwork(ctx); err != nil {
		return t, err
	}
	// A fresh cgroup tree, as at boot (kubelet makes its pod cgroups again).
	if err := removeCgroupRoot(n.CgroupRoot); err != nil {
		return t, err
	}
	if err := makeCgroupRoot(n.CgroupRoot); err != nil {
		return t, err
	}
	// What systemd makes at boot: RuntimeDirectory=kindnet, /run/systemd.
	if err := n.prepareDirs(); err != nil {
		return t, err
	}
	t.Clear = time.Since(start)

	u := &upper{c: c, o: o}
	start = time.Now()
	agentDone := time.Time{}
	err = u.startServicesTimed(ctx, n, &agentDone)
	if !agentDone.IsZero() {
		t.Agent = agentDone.Sub(start)
		t.Others = time.Since(agentDone)
	}
	return t, err
}

// startServicesTimed is startServices without the image import, noting
// when the agent said READY=1.
func (u *upper) startServicesTimed(ctx context.Context, n *Node, agentReady *time.Time) error {
	u.onAgentReady = func() { *agentReady = time.Now() }
	defer func() { u.onAgentReady = nil }()
	return u.startServices(ctx, n, false)
}

// killNode SIGKILLs every process of the node until none is left, and
// drops the node's processes from the saved state.
func (c *Cluster) killNode(ctx context.Context, n *Node) (int, error) {
	killed := map[int]bool{}
	var keep []Proc
	for _, p := range c.Procs {
		if p.Node != n.Name {
			keep = append(keep, p)
			continue
		}
		// Only if the PID still has the recorded start time.
		if kubetest.StartTime(p.PID) == p.Start {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
			killed[p.PID] = true
		}
	}
	err := waitUntil(ctx, 60*time.Second, "every process of "+n.Name+" to die", func() (bool, error) {
		left := n.pids()
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			killed[pid] = true
		}
		for _, p := range c.Procs {
			if p.Node == n.Name && kubetest.StartTime(p.PID) == p.Start && !zombie(p.PID) {
				left = append(left, p.PID)
			}
		}
		if len(left) > 0 {
			return false, fmt.Errorf("still alive: %v", left)
		}
		return true, nil
	})
	c.Procs = keep
	if serr := c.Save(); err == nil {
		err = serr
	}
	return len(killed), err
}

// pids lists the processes living on the node: in its mount namespace,
// its network namespace or its cgroups.
func (n *Node) pids() []int {
	seen := map[int]bool{}
	for _, pid := range mountNSPIDs(n.MountNS()) {
		seen[pid] = true
	}
	for _, pid := range cgroupPIDs(n.CgroupRoot) {
		seen[pid] = true
	}
	if out, err := exec.Command("ip", "netns", "pids", n.NS).Output(); err == nil {
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil {
				seen[pid] = true
			}
		}
	}
	var out []int
	for pid := range seen {
		if !zombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// zombie says whether pid has exited and waits for its parent to reap it
// (it holds nothing any more).
func zombie(pid int) bool {
	b, err := readProcStat(pid)
	if err != nil {
		return true // gone
	}
	// "pid (comm) S ...": the state follows the last ')'.
	i := strings.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z' || b[i+2] == 'X'
}

// volatileDirs are the node's own directories whose mounts a reboot
// drops: what is mounted below them was mounted by the node's programs.
var volatileDirs = []string{"/run", "/var/lib/kubelet", "/var/lib/containerd"}

// clearVolatile drops, inside the node's mount namespace, every mount
// made below the node's /run, /var/lib/kubelet and /var/lib/containerd
// since the node was set up (pod network namespaces, shm, container root
// file systems, pod volumes), deepest first, and empties /run: what a
// reboot leaves of them. The node's own mounts (its /run itself, the
// overlays, the sysctl files) stay, and so do the machine's mounts that
// propagated under the directories those cover (they are not the node's).
func (n *Node) clearVolatile(ctx context.Context) error {
	mounts, err := n.volatileMounts(ctx)
	if err != nil {
		return err
	}
	script := `for m; do umount -l "$m" || echo "umount $m failed"; done
find /run -mindepth 1 -maxdepth 1 -exec rm -rf {} +
[ -z "$(ls -A /run)" ] || { echo "/run not empty:"; ls -A /run; exit 1; }
`
	argv := append([]string{"nsenter", "--mount=" + n.MountNS(), "--", "/bin/sh", "-c", script, "sh"}, mounts...)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("clear /run of %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	if left, err := n.volatileMounts(ctx); err != nil || len(left) > 0 {
		return fmt.Errorf("mounts left on %s after clearing: %v %v (%s)", n.Name, left, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// volatileMounts lists the mount points of the mounts below the node's
// volatileDirs mounts (the topmost mount at each), children before their
// parents, from the node's mountinfo.
func (n *Node) volatileMounts(ctx context.Context) ([]string, error) {
	out, err := exec.CommandContext(ctx, "nsenter", "--mount="+n.MountNS(), "--", "cat", "/proc/self/mountinfo").Output()
	if err != nil {
		return nil, fmt.Errorf("read the mounts of %s: %w", n.Name, err)
	}
	type mount struct{ id, parent, target string }
	var all []mount
	children := map[string][]mount{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		m := mount{id: f[0], parent: f[1], target: unescapeMountinfo(f[4])}
		all = append(all, m)
		children[m.parent] = append(children[m.parent], m)
	}
	var result []string
	var walk func(id string)
	walk = func(id string) { // post-order: children first
		for _, c := range children[id] {
			walk(c.id)
			result = append(result, c.target)
		}
	}
	for _, dir := range volatileDirs {
		top := ""
		for _, m := range all { // later lines are mounted later: on top
			if m.target == dir {
				top = m.id
			}
		}
		if top != "" {
			walk(top)
		}
	}
	return result, nil
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, "\\") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// removeStaleVeths waits for the pod veths to vanish from the node's
// network namespace (a veth goes when the namespace of its peer is
// destroyed, which the kernel does asynchronously), and deletes any still
// there after 30 s, returning how many it had to delete. The node's own
// eth0 (its port on the switch) is kept.
func (n *Node) removeStaleVeths(ctx context.Context) (int, error) {
	var left []string
	err := waitUntil(ctx, 30*time.Second, "the pod veths of "+n.Name+" to vanish", func() (bool, error) {
		var err error
		left, err = n.podVeths()
		return err == nil && len(left) == 0, err
	})
	if err == nil {
		return 0, nil
	}
	if len(left) == 0 {
		return 0, err
	}
	for _, l := range left {
		if out, err := exec.Command("ip", "-n", n.NS, "link", "del", l).CombinedOutput(); err != nil {
			return len(left), fmt.Errorf("delete stale veth %s on %s: %v: %s", l, n.Name, err, out)
		}
	}
	return len(left), nil
}

// podVeths lists the veths of the node's network namespace other than
// its eth0.
func (n *Node) podVeths() ([]string, error) {
	out, err := exec.Command("ip", "-j", "-n", n.NS, "link", "show", "type", "veth").Output()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s link show: %w", n.NS, err)
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip -j link show: %w", err)
	}
	var names []string
	for _, l := range links {
		if l.Name != "eth0" {
			names = append(names, l.Name)
		}
	}
	return names, nil
}

func readProcStat(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return string(b), err
}

// flushRuntimeNetwork drops, in the node's network namespace, what its
// programs put there and a reboot loses: every nftables table (kindnet's,
// kube-proxy's) and kindnet's routes (protocol 107). The node's eth0, its
// addresses and default routes stay: they are the boot-time network
// configuration the node's OS would set up again.
func (n *Node) flushRuntimeNetwork(ctx context.Context) error {
	for _, argv := range [][]string{
		{"ip", "netns", "exec", n.NS, "nft", "flush", "ruleset"},
		{"ip", "-n", n.NS, "-4", "route", "flush", "proto", "107"},
		{"ip", "-n", n.NS, "-6", "route", "flush", "proto", "107"},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}
