package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kindnet-dev/kindnet/internal/filekind"
)

// sharedSystemDirs are directories other programs own: kindnet keeps its
// own files in a directory of its own (stateDir, runDir) and writes into
// cni.confDir, so none of these may be one of them — `kindnet cleanup`
// removes what it created there, and a stray file in /etc/kubernetes or
// /var/lib is someone else's business. Every top-level directory, and
// everything under the trees in systemTrees, is refused as well.
var sharedSystemDirs = []string{
	"/var/lib", "/var/run", "/var/log", "/var/cache", "/var/tmp", "/var/spool",
	"/etc/kubernetes",
}

// systemTrees are trees kindnet never writes into at any depth: the
// operating system's files, the kernel's and the devices' filesystems, and
// the cluster's credentials and static pod manifests.
var systemTrees = []string{"/usr", "/proc", "/sys", "/dev", "/etc/kubernetes"}

// ownedDirKeys are the directory fields kindnet writes into.
var ownedDirKeys = []string{"stateDir", "runDir", "cni.confDir"}

// systemDirProblem says why kindnet must not use dir as one of its own
// directories, or returns "". dir is absolute (checked before).
func systemDirProblem(dir string) string {
	clean := filepath.Clean(dir)
	switch {
	case clean == "/":
		return "is the root directory"
	case filepath.Dir(clean) == "/":
		return "is a top-level directory of the system"
	}
	for _, t := range systemTrees {
		if clean == t || strings.HasPrefix(clean, t+"/") {
			return fmt.Sprintf("is in %s, which belongs to the system or the cluster", t)
		}
	}
	for _, d := range sharedSystemDirs {
		if clean == d {
			return "is a directory shared by the whole system"
		}
	}
	return ""
}

// ownedDirs refuses a directory kindnet writes into that is not its own
// (see systemDirProblem), and a CNI config directory shared with the state
// or run directory: the runtime loads every .conf, .conflist and .json
// file there, and kindnet's cache is a .json file.
func (v *validator) ownedDirs(c *Config) {
	dirs := map[string]string{"stateDir": c.StateDir, "runDir": c.RunDir, "cni.confDir": c.CNI.ConfDir}
	for _, key := range ownedDirKeys {
		d := dirs[key]
		if !filepath.IsAbs(d) {
			continue // reported as not absolute
		}
		if why := systemDirProblem(d); why != "" {
			v.fail(key, d, "%s: expected a directory of kindnet's own, e.g. %s", why, defaultDir(key))
		}
	}
	conf := filepath.Clean(c.CNI.ConfDir)
	for _, key := range []string{"stateDir", "runDir"} {
		if filepath.IsAbs(dirs[key]) && filepath.Clean(dirs[key]) == conf {
			v.fail("cni.confDir", c.CNI.ConfDir, "is also %s: the container runtime loads every .conf, .conflist and .json file there; expected a directory of its own, e.g. %s", key, DefaultCNIConfDir)
		}
	}
}

func defaultDir(key string) string {
	switch key {
	case "stateDir":
		return DefaultStateDir
	case "runDir":
		return DefaultRunDir
	}
	return DefaultCNIConfDir
}

// nodesFileType refuses a nodes file that exists and is not a regular
// file: opening a FIFO blocks until someone writes to it (the agent would
// hang at start, deaf to SIGTERM), and a device or a directory is no file
// of Node objects. A file that does not exist yet is fine: the agent
// starts from its cache and waits for it.
func (v *validator) nodesFileType(path string) {
	fi, err := os.Stat(path)
	if err != nil {
		return // missing, or unreadable: the agent reports it when it reads
	}
	if !fi.Mode().IsRegular() {
		v.fail("nodesFile", path, "is %s, not a regular file: expected a file of Node objects", filekind.Of(fi.Mode()))
	}
}
