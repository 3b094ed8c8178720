// Package cache keeps the last good cluster view on disk, under the agent's
// state directory, so that after a reboot the agent installs routes, the
// masquerade rules and the CNI config before any source can be read.
//
// It owns that one file (written atomically, mode 0600) and its format; it
// never touches another file, the kernel or a source.
package cache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kindnet-dev/kindnet/pkg/atomicfile"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

const cacheVersion = 1

// cacheFile is the on-disk form of the cache.
type cacheFile struct {
	Version int        `json:"version"`
	Node    string     `json:"node"`
	View    model.View `json:"view"`
}

// File is the last good View, kept under the state directory so that after
// a reboot the agent can install routes before the API server is reachable.
type File struct {
	Path string
	Node string // a cache written for another node name is ignored
}

// Load reads the cache. It returns (nil, nil) when there is none.
func (c *File) Load() (*model.View, error) {
	data, err := os.ReadFile(c.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read cache: %w", err)
	}
	var f cacheFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("cache %s is corrupt: %w", c.Path, err)
	}
	if f.Version != cacheVersion {
		return nil, fmt.Errorf("cache %s has version %d, expected %d", c.Path, f.Version, cacheVersion)
	}
	if f.Node != c.Node {
		return nil, fmt.Errorf("cache %s was written for node %q, not %q", c.Path, f.Node, c.Node)
	}
	return &f.View, nil
}

// Save writes the view atomically; it reports whether the file changed.
func (c *File) Save(v model.View) (bool, error) {
	data, err := json.MarshalIndent(cacheFile{Version: cacheVersion, Node: c.Node, View: v}, "", " ")
	if err != nil {
		return false, err
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return false, fmt.Errorf("create state dir: %w", err)
	}
	return atomicfile.Write(c.Path, append(data, '\n'), 0o600)
}
