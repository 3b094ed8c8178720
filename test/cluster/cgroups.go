package cluster

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cgroupMounts lists the mounted cgroup hierarchies (v1 controllers, named
// ones like name=systemd, and the unified v2 tree): kubelet's cgroupfs
// driver makes the pod cgroups in every one of them, so each node's
// cgroupRoot is made, and removed, in all of them.
func cgroupMounts() ([]string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 1 || (g[0] != "cgroup" && g[0] != "cgroup2") {
			continue
		}
		out = append(out, f[4])
	}
	return out, nil
}

// makeCgroupRoot creates root in every hierarchy. A fresh v1 cpuset
// cgroup has no CPUs or memory nodes, and no process may join it until it
// has: copy its parent's.
func makeCgroupRoot(root string) error {
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	for _, m := range mounts {
		dir := filepath.Join(m, root)
		if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			parent, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
			if err != nil {
				continue // not the cpuset hierarchy
			}
			if err := os.WriteFile(filepath.Join(dir, f), parent, 0o644); err != nil {
				return fmt.Errorf("copy %s to %s: %w", f, dir, err)
			}
		}
	}
	return nil
}

// cgroupPIDs lists every process in root or below it, in every hierarchy.
func cgroupPIDs(root string) []int {
	mounts, _ := cgroupMounts()
	seen := map[int]bool{}
	for _, m := range mounts {
		_ = filepath.WalkDir(filepath.Join(m, root), func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				return nil
			}
			for _, f := range strings.Fields(string(b)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
					seen[pid] = true
				}
			}
			return nil
		})
	}
	var out []int
	for pid := range seen {
		out = append(out, pid)
	}
	return out
}

// removeCgroupRoot kills what is left in root's cgroups (pods' processes
// belong to the node, which is going away) and removes the cgroups,
// deepest first, in every hierarchy.
func removeCgroupRoot(root string) error {
	if root == "" || root == "/" || strings.Contains(root, "..") {
		return fmt.Errorf("refusing to remove cgroup %q", root)
	}
	mounts, err := cgroupMounts()
	if err != nil {
		return err
	}
	var errs []error
	for try := 0; ; try++ {
		for _, pid := range cgroupPIDs(root) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		errs = nil
		for _, m := range mounts {
			var dirs []string
			_ = filepath.WalkDir(filepath.Join(m, root), func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
			for _, d := range dirs {
				if err := syscall.Rmdir(d); err != nil && !errors.Is(err, syscall.ENOENT) {
					errs = append(errs, fmt.Errorf("remove cgroup %s: %w", d, err))
				}
			}
		}
		if len(errs) == 0 || try == 50 {
			return errors.Join(errs...)
		}
		time.Sleep(100 * time.Millisecond) // killed processes leave their cgroups when reaped
	}
}
