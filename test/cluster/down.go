package cluster

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// Down removes the cluster: every process it started (recorded PIDs, in
// reverse start order), whatever else runs in its namespaces or its
// cgroups (containers, shims), the files pinning each node's mount and
// UTS namespaces (so every mount made inside a node goes with it), the
// nodes' cgroups in every hierarchy, its network namespaces and its
// directory. It works on a half-built cluster, on one whose Up was
// killed, and more than once.
func (c *Cluster) Down() error {
	var errs []error
	for i := len(c.Procs) - 1; i >= 0; i-- {
		p := c.Procs[i]
		if err := kubetest.StopPID(p.PID, p.Start, 10*time.Second); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", p.Name, err))
		}
	}
	// Anything left: in a node's mount namespace (found by its inode), in
	// one of the cluster's network namespaces, or in a node's cgroups.
	nsNames := c.netnsNames()
	for range 3 {
		for _, n := range c.nodes() {
			killInMountNS(n.MountNS())
		}
		for _, ns := range nsNames {
			lab.KillNSProcesses(ns)
		}
		for _, n := range c.nodes() {
			for _, pid := range cgroupPIDs(n.CgroupRoot) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, n := range c.nodes() {
		for _, f := range []string{n.MountNS(), n.UTSNS()} {
			if err := syscall.Unmount(f, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) && !errors.Is(err, syscall.ENOENT) {
				errs = append(errs, fmt.Errorf("unmount %s: %w", f, err))
			}
		}
		if err := removeCgroupRoot(n.CgroupRoot); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ns := range nsNames {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("ip netns del %s: %v: %s", ns, err, out))
		}
	}
	if clusterID.MatchString(c.ID) && filepath.Base(c.Dir) == c.ID {
		if err := os.RemoveAll(c.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// nodes are the cluster's nodes, the control-plane node's included; for
// a cluster whose state was never saved, the node directories found on
// disk.
func (c *Cluster) nodes() []*Node {
	if all := c.AllNodes(); len(all) > 0 {
		return all
	}
	var out []*Node
	entries, _ := os.ReadDir(c.Dir)
	for _, e := range entries {
		if e.IsDir() && (strings.HasPrefix(e.Name(), "node") || e.Name() == ControlPlaneNodeName) {
			out = append(out, &Node{Name: e.Name(), Dir: filepath.Join(c.Dir, e.Name()), CgroupRoot: "/" + c.ID + "-" + e.Name()})
		}
	}
	return out
}

// netnsNames lists the network namespaces named "<ID>-…".
func (c *Cluster) netnsNames() []string {
	var out []string
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), c.ID+"-") {
			out = append(out, e.Name())
		}
	}
	return out
}

// killInMountNS kills every process whose mount namespace is the one
// pinned at file (compared by inode).
func killInMountNS(file string) {
	for _, pid := range mountNSPIDs(file) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// mountNSPIDs lists the processes whose mount namespace is the one
// pinned at file (compared by inode).
func mountNSPIDs(file string) []int {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(file, &fs); err != nil || fs.Type != nsfsMagic {
		return nil // not pinned (a plain file): no namespace to look for
	}
	var st syscall.Stat_t
	if err := syscall.Stat(file, &st); err != nil {
		return nil
	}
	want := fmt.Sprintf("mnt:[%d]", st.Ino)
	var out []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 1 || pid == os.Getpid() {
			continue
		}
		if link, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); err == nil && link == want {
			out = append(out, pid)
		}
	}
	return out
}

// nsfsMagic is NSFS_MAGIC: the file system of a pinned namespace.
const nsfsMagic = 0x6e736673
