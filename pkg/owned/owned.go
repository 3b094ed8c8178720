// Package owned names the files kindnet creates in the directories it is
// configured with — the run directory (status socket, IPAM store), the
// state directory (cache) and the CNI config directory (its conflist) — and
// removes exactly those, for `kindnet cleanup`.
//
// The names come from the packages that create the files (pkg/status,
// pkg/ipam, pkg/cache via config.CachePath, pkg/atomicfile's temporary
// files), so a file one of them starts to create is covered once that
// package names it.
//
// It never removes a file it does not name, never follows a symbolic link
// or descends into a directory it does not name, and removes a directory
// only when it is empty (rmdir, which the kernel refuses on a non-empty
// directory): with runDir pointing at a directory holding other files,
// those files and the directory stay. The CNI config directory is shared
// with the container runtime and other plugins: it is never removed.
package owned

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/kindnet-dev/kindnet/pkg/atomicfile"
	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// Dir is a directory and what kindnet creates in it.
type Dir struct {
	Path string
	// Owns reports whether a file named so directly in Path is kindnet's.
	Owns func(name string) bool
	// Subdirs are directories in Path that kindnet creates; a nil Dir
	// result means name is not one of them.
	Subdirs func(name string) *Dir
	// Shared directories are never removed, even when empty.
	Shared bool
}

// Result is what Remove did to one directory tree.
type Result struct {
	Removed []string // files and directories removed
	// Kept are directories left because they hold files kindnet did not
	// create, with how many entries remain.
	Kept map[string]int
}

// RunDir is the run directory: the status socket (and the temporary
// socket a killed agent may leave), and the IPAM directory with one store
// directory per CNI network.
func RunDir(cfg *config.Config) Dir {
	sock := cfg.SocketPath()
	ipamDir := cfg.IPAMDir()
	return Dir{
		Path: cfg.RunDir,
		Owns: func(name string) bool {
			return name == filepath.Base(sock) || status.IsTempSocket(sock, name)
		},
		Subdirs: func(name string) *Dir {
			if filepath.Join(cfg.RunDir, name) != filepath.Clean(ipamDir) {
				return nil
			}
			d := IPAMDir(ipamDir)
			return &d
		},
	}
}

// IPAMDir is the plugin's IPAM directory: one store per network
// (<ipamDir>/<network>), each holding only the store's own files.
func IPAMDir(dir string) Dir {
	return Dir{
		Path: dir,
		Owns: func(string) bool { return false },
		Subdirs: func(name string) *Dir {
			return &Dir{Path: filepath.Join(dir, name), Owns: ipam.OwnsFile}
		},
	}
}

// StateDir is the state directory: the cache and its temporary files.
func StateDir(cfg *config.Config) Dir {
	cache := cfg.CachePath()
	return Dir{
		Path: cfg.StateDir,
		Owns: func(name string) bool {
			return name == filepath.Base(cache) || atomicfile.IsTemp(cache, name)
		},
	}
}

// ConfDir is the CNI config directory: kindnet's conflist and its
// temporary files; the directory itself is the runtime's.
func ConfDir(cfg *config.Config) Dir {
	conf := cfg.CNIConfPath()
	return Dir{
		Path: cfg.CNI.ConfDir,
		Owns: func(name string) bool {
			return name == filepath.Base(conf) || atomicfile.IsTemp(conf, name)
		},
		Shared: true,
	}
}

// Remove deletes what d names, depth first, then d itself if it is empty
// and not shared. A directory that does not exist is not an error.
func Remove(d Dir) (Result, error) {
	res := Result{Kept: map[string]int{}}
	err := remove(d, &res)
	return res, err
}

func remove(d Dir, res *Result) error {
	fi, err := os.Lstat(d.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		// A symbolic link or a file where kindnet's directory should be
		// is not kindnet's: leave it and what it points to.
		return fmt.Errorf("%s is not a directory (%s): left alone", d.Path, fi.Mode().Type())
	}
	entries, err := os.ReadDir(d.Path)
	if err != nil {
		return fmt.Errorf("list %s: %w", d.Path, err)
	}
	var errs []error
	for _, e := range entries {
		p := filepath.Join(d.Path, e.Name())
		switch {
		case e.IsDir():
			if d.Subdirs == nil {
				continue
			}
			if sub := d.Subdirs(e.Name()); sub != nil {
				errs = append(errs, remove(*sub, res))
			}
		case e.Type()&fs.ModeSymlink == 0 && d.Owns != nil && d.Owns(e.Name()):
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", p, err))
				continue
			}
			res.Removed = append(res.Removed, p)
		}
	}
	if d.Shared {
		return errors.Join(errs...)
	}
	// rmdir: the kernel refuses a directory that is not empty, so a file
	// someone else put there (or created since the listing) keeps it.
	err = syscall.Rmdir(d.Path)
	switch {
	case err == nil:
		res.Removed = append(res.Removed, d.Path)
	case errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST):
		left, _ := os.ReadDir(d.Path)
		res.Kept[d.Path] = len(left)
	default:
		errs = append(errs, fmt.Errorf("remove directory %s: %w", d.Path, err))
	}
	return errors.Join(errs...)
}

// Summary is one line for cleanup's output: what was removed, what was
// kept and why.
func (r Result) Summary() string {
	s := fmt.Sprintf("removed %d", len(r.Removed))
	kept := make([]string, 0, len(r.Kept))
	for k := range r.Kept {
		kept = append(kept, k)
	}
	slices.Sort(kept)
	for _, k := range kept {
		s += fmt.Sprintf("; kept %s: not empty (%d entries kindnet did not create or could not remove)", k, r.Kept[k])
	}
	return s
}
