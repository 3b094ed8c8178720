package config

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TrustedFiles lists the files the agent believes as root, by what they
// are: the config file it was loaded from, the nodes file (whoever writes
// it decides where this node's pod traffic goes) or, with the Kubernetes
// source, the kubeconfig (whoever writes it chooses the API server).
func (l *Loaded) TrustedFiles() map[string]string {
	out := map[string]string{}
	if l.File != "" {
		out["config file"] = l.File
	}
	if l.NodesFile != "" {
		out["nodes file"] = l.NodesFile
	} else if l.Kubeconfig != "" {
		out["kubeconfig"] = l.Kubeconfig
	}
	return out
}

// FileWarnings says, for each trusted file that exists, who other than
// root could change it: the file or a directory on its path owned by
// another user, or writable by group or others (a directory with the
// sticky bit excepted, where only a file's owner may replace it). These
// are warnings, not errors: the agent still runs, loudly.
func (l *Loaded) FileWarnings() []string {
	var out []string
	files := l.TrustedFiles()
	for _, what := range []string{"config file", "nodes file", "kubeconfig"} {
		path, ok := files[what]
		if !ok {
			continue
		}
		if why := WritableByNonRoot(path); why != "" {
			out = append(out, fmt.Sprintf("%s %s: %s: a user other than root can change what kindnet installs; make it and its directories owned by root and not writable by group or others", what, path, why))
		}
	}
	return out
}

// WritableByNonRoot says why a user other than root could change the file
// at path (after following symbolic links), or returns "" when only root
// can, or when the file does not exist.
func WritableByNonRoot(path string) string {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return ""
	}
	fi, err := os.Stat(real)
	if err != nil {
		return ""
	}
	if why := notRootOnly(fi, "it"); why != "" {
		return why
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		di, err := os.Stat(dir)
		if err == nil {
			if why := notRootOnly(di, "its directory "+dir); why != "" {
				return why
			}
		}
		if dir == "/" || dir == "." {
			return ""
		}
	}
}

// notRootOnly says why fi may be changed by someone other than root.
func notRootOnly(fi fs.FileInfo, name string) string {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
		return fmt.Sprintf("%s is owned by uid %d", name, st.Uid)
	}
	m := fi.Mode()
	if m.Perm()&0o022 != 0 && !(m.IsDir() && m&fs.ModeSticky != 0) {
		return fmt.Sprintf("%s is writable by group or others (mode %04o)", name, m.Perm())
	}
	return ""
}
