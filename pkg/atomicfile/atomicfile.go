// Package atomicfile writes files so that a reader (a container runtime
// reading the CNI config, the agent reading its cache after a crash) sees
// either the old content or the new one, never a torn write.
//
// It touches only the file it is asked to write and a temporary file next to
// it in the same directory, named "." + the file's name + digits: a name no
// container runtime loads as a CNI config (libcni reads only .conf,
// .conflist and .json files), and that it removes again if the write fails.
//
// Why the same directory, always: an inotify watcher of the directory (the
// CNI config syncer of containerd 2.x) sees a rename from elsewhere as a
// file *created* there, and containerd ignores create events, so a config
// renamed in from $TMPDIR can go unnoticed until the runtime restarts. A
// rename within the directory is a move there, which it does act on.
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"
)

// Write replaces path with data unless it already holds exactly data. The
// new content goes to a temporary file in the same directory, is fsynced,
// renamed over path, and the directory is fsynced so the rename survives a
// power cut. It reports whether the file changed.
func Write(path string, data []byte, perm fs.FileMode) (bool, error) {
	old, err := os.ReadFile(path)
	if err == nil && bytes.Equal(old, data) {
		if st, err := os.Stat(path); err == nil && st.Mode().Perm() == perm {
			return false, nil
		}
		// same bytes, wrong mode: fall through and rewrite with the right mode
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	// WithTempDir(dir): without it renameio puts the temporary file in
	// $TMPDIR whenever a rename from there works, and probes both
	// directories with files of its own first.
	if err := renameio.WriteFile(path, data, perm, renameio.WithTempDir(dir), renameio.WithStaticPermissions(perm)); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(dir); err != nil {
		return true, fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return true, nil
}

// IsTemp reports whether name (a base name in path's directory) is a
// temporary file of a write of path: "." + base name + the random digits
// renameio appends. A killed writer can leave one behind; `kindnet
// cleanup` removes them with the file.
func IsTemp(path, name string) bool {
	digits, ok := strings.CutPrefix(name, "."+filepath.Base(path))
	if !ok || digits == "" {
		return false
	}
	for _, c := range digits {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
