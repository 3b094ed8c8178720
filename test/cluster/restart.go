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

// clearVolatile drops, inside the node's mount namespace, every mount
// made under /run, /var/lib/kubelet and /var/lib/containerd since the
// node was set up (pod network namespaces, shm, container root file
// systems, pod volumes), deepest first, and empties /run: what a reboot
// leaves of them. The node's own mounts (its /run itself, the overlays,
// the sysctl files) stay.
func (n *Node) clearVolatile(ctx context.Context) error {
	script := `set -u
findmnt -rn -o TARGET | grep -E '^/(run|var/lib/kubelet|var/lib/containerd)/' | sort -r |
while read -r m; do umount -l "$(printf '%b' "$m")" || exit 1; done
find /run -mindepth 1 -maxdepth 1 -exec rm -rf {} +
left=$(findmnt -rn -o TARGET | grep -cE '^/run/' || true)
[ "$left" = 0 ] || { echo "$left mounts left under /run"; exit 1; }
[ -z "$(ls -A /run)" ] || { echo "/run not empty:"; ls -A /run; exit 1; }
`
	argv := append([]string{"nsenter", "--mount=" + n.MountNS(), "--"}, "/bin/sh", "-c", script)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("clear /run of %s: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	return nil
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
