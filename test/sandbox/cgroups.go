package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"
)

// A cgroupSet is the sandbox's own cgroup in each hierarchy it uses: the
// cgroup v2 tree (Unified), or that and every cgroup v1 hierarchy of the
// machine (Hybrid). Each is a new empty directory below the test
// process's own cgroup in that hierarchy; the sandbox's PID 1 joins them
// before it unshares its cgroup namespace, so they are its roots.
type cgroupSet struct {
	dirs []string      // host paths, one per hierarchy
	v1   []v1Hierarchy // Hybrid only
}

// v1Hierarchy is a cgroup v1 hierarchy as the machine mounts it.
type v1Hierarchy struct {
	name string // the mount point's base name: cpu, memory, systemd, ...
	opts string // its controllers (or none,name=...) for mount -o
}

// hierarchy is one mounted cgroup hierarchy of the machine.
type hierarchy struct {
	mount string
	v2    bool
	keys  []string // v1: controllers and name=..., as /proc/self/cgroup names them
}

func mountedHierarchies() ([]hierarchy, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	var hs []hierarchy
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		switch g[0] {
		case "cgroup2":
			hs = append(hs, hierarchy{mount: f[4], v2: true})
		case "cgroup":
			h := hierarchy{mount: f[4]}
			for _, o := range strings.Split(g[2], ",") {
				if o == "rw" || o == "ro" || strings.HasPrefix(o, "release_agent=") || o == "clone_children" || o == "noprefix" || o == "xattr" || o == "cpuset_v2_mode" || o == "favordynmods" {
					continue
				}
				h.keys = append(h.keys, o)
			}
			hs = append(hs, h)
		}
	}
	return hs, nil
}

// ownCgroups maps "0" (v2) and each v1 hierarchy's sorted key list to this
// process's cgroup path in it.
func ownCgroups() (map[string]string, error) {
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	own := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" {
			own["0"] = parts[2]
			continue
		}
		keys := strings.Split(parts[1], ",")
		sort.Strings(keys)
		own[strings.Join(keys, ",")] = parts[2]
	}
	return own, nil
}

func newCgroupSet(layout Cgroups) (*cgroupSet, error) {
	hs, err := mountedHierarchies()
	if err != nil {
		return nil, err
	}
	own, err := ownCgroups()
	if err != nil {
		return nil, err
	}
	cs := &cgroupSet{}
	found2 := false
	for _, h := range hs {
		var key string
		if h.v2 {
			key = "0"
		} else {
			if layout != Hybrid {
				continue
			}
			keys := append([]string{}, h.keys...)
			sort.Strings(keys)
			key = strings.Join(keys, ",")
		}
		path, ok := own[key]
		if !ok {
			cs.remove()
			return nil, fmt.Errorf("this process is in no cgroup of the hierarchy at %s", h.mount)
		}
		dir, err := os.MkdirTemp(filepath.Join(h.mount, path), "kindnet-sandbox-")
		if err != nil {
			cs.remove()
			return nil, fmt.Errorf("create a cgroup for the sandbox: %w", err)
		}
		cs.dirs = append(cs.dirs, dir)
		if h.v2 {
			found2 = true
			continue
		}
		// A fresh v1 cpuset cgroup has no CPUs or memory nodes, and no
		// process may join it until it has: copy its parent's.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0o644); err != nil {
					cs.remove()
					return nil, fmt.Errorf("copy %s to %s: %w", f, dir, err)
				}
			}
		}
		opts := strings.Join(h.keys, ",")
		if len(h.keys) == 1 && strings.HasPrefix(h.keys[0], "name=") {
			// A named hierarchy without controllers: without "none"
			// the kernel would try to bind every controller to it.
			opts = "none," + opts
		}
		cs.v1 = append(cs.v1, v1Hierarchy{name: filepath.Base(h.mount), opts: opts})
	}
	if !found2 {
		cs.remove()
		return nil, errors.New("no cgroup2 mount in /proc/self/mountinfo")
	}
	if layout == Hybrid && len(cs.v1) == 0 {
		cs.remove()
		return nil, errors.New("no cgroup v1 hierarchy on this machine (a unified host): nothing to give a hybrid sandbox")
	}
	return cs, nil
}

// v1Mounts lists, for the init script, "name options" per line.
func (cs *cgroupSet) v1Mounts() string {
	var b strings.Builder
	for _, h := range cs.v1 {
		fmt.Fprintf(&b, "%s %s\n", h.name, h.opts)
	}
	return b.String()
}

// joinScript is shell that moves the shell itself into every cgroup of
// the set.
func (cs *cgroupSet) joinScript() string {
	var b strings.Builder
	for _, d := range cs.dirs {
		fmt.Fprintf(&b, "echo $$ >%q/cgroup.procs && ", d)
	}
	return b.String()
}

// remove removes every cgroup of the set and everything made below them
// (by systemd, kubelet, runc), once the processes in them are gone.
func (cs *cgroupSet) remove() error {
	var errs []error
	for _, d := range cs.dirs {
		if err := removeCgroup(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeCgroup(dir string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		var dirs []string
		_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		var last error
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := syscall.Rmdir(dirs[i]); err != nil && !errors.Is(err, syscall.ENOENT) {
				last = fmt.Errorf("remove cgroup %s: %w", dirs[i], err)
			}
		}
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
}
