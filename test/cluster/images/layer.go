package images

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
)

// Layer is the file tree of an image's one layer, built in memory and
// written as a tar by WriteArchive. Paths are absolute and clean; a path
// whose directory is a symlink in the layer (/bin -> usr/bin) is stored
// under the symlink's target, as the runtime would resolve it, so a tar
// entry never has a symlink among its parents.
type Layer struct {
	entries map[string]*entry
}

type entryKind int

const (
	kindDir entryKind = iota
	kindFile
	kindSymlink
)

// entry is one file of the layer. A regular file's bytes are either in
// data or, for large host files, read from src when the tar is written.
type entry struct {
	kind     entryKind
	mode     fs.FileMode // permission bits
	uid, gid int
	target   string // symlink target, as written
	data     []byte
	src      string // host file to copy
	size     int64
	srcStamp string // size and mtime of src when added, for the cache key
}

// NewLayer returns a layer holding only the root directory.
func NewLayer() *Layer {
	return &Layer{entries: map[string]*entry{"/": {kind: kindDir, mode: 0o755}}}
}

// maxLinks bounds symlink resolution, as the kernel does (ELOOP).
const maxLinks = 40

// resolve returns where p lands in the layer once every symlink among its
// directories (not p itself) is followed. Missing directories are fine.
func (l *Layer) resolve(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("layer path %q is not absolute", p)
	}
	p = path.Clean(p)
	for range maxLinks {
		cur, redirected := "/", false
		parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
		for i, c := range parts[:len(parts)-1] {
			next := path.Join(cur, c)
			e := l.entries[next]
			if e != nil && e.kind == kindSymlink {
				t := e.target
				if !path.IsAbs(t) {
					t = path.Join(cur, t)
				}
				p = path.Join(append([]string{t}, parts[i+1:]...)...)
				redirected = true
				break
			}
			if e != nil && e.kind != kindDir {
				return "", fmt.Errorf("layer path %s: %s is not a directory", p, next)
			}
			cur = next
		}
		if !redirected {
			return p, nil
		}
	}
	return "", fmt.Errorf("layer path %s: too many levels of symlinks", p)
}

// put stores e at p (resolved), creating its missing parent directories.
// Adding the same thing twice is fine; two different things at one path
// are an error naming it.
func (l *Layer) put(p string, e *entry) error {
	p, err := l.resolve(p)
	if err != nil {
		return err
	}
	if old, ok := l.entries[p]; ok {
		if old.same(e) {
			return nil
		}
		return fmt.Errorf("layer path %s is added twice with different content", p)
	}
	if p != "/" {
		if err := l.Dir(path.Dir(p), 0o755); err != nil {
			return err
		}
	}
	l.entries[p] = e
	return nil
}

func (e *entry) same(o *entry) bool {
	return e.kind == o.kind && e.mode == o.mode && e.uid == o.uid && e.gid == o.gid &&
		e.target == o.target && string(e.data) == string(o.data) && e.src == o.src
}

// Dir adds a directory (and its missing parents, mode 0755).
func (l *Layer) Dir(p string, mode fs.FileMode) error {
	return l.DirOwned(p, mode, 0, 0)
}

// DirOwned adds a directory owned by uid:gid.
func (l *Layer) DirOwned(p string, mode fs.FileMode, uid, gid int) error {
	// Resolving a name inside p follows p itself too when it is a
	// symlink, as mkdir -p does.
	inside, err := l.resolve(path.Join(p, "x"))
	if err != nil {
		return err
	}
	r := path.Dir(inside)
	if e, ok := l.entries[r]; ok && e.kind == kindDir {
		if e.mode != mode.Perm() || e.uid != uid || e.gid != gid {
			// An implicit parent made earlier takes the explicit mode.
			e.mode, e.uid, e.gid = mode.Perm()|mode&fs.ModeSticky, uid, gid
		}
		return nil
	}
	return l.put(r, &entry{kind: kindDir, mode: mode.Perm() | mode&fs.ModeSticky, uid: uid, gid: gid})
}

// File adds a regular file with the given content.
func (l *Layer) File(p string, mode fs.FileMode, data []byte) error {
	return l.put(p, &entry{kind: kindFile, mode: mode.Perm(), data: data, size: int64(len(data))})
}

// Symlink adds a symlink at p pointing to target (written as given).
func (l *Layer) Symlink(p, target string) error {
	if target == "" {
		return fmt.Errorf("symlink %s: empty target", p)
	}
	return l.put(p, &entry{kind: kindSymlink, mode: 0o777, target: target})
}

// HostFile adds the host's regular file src at p with the given mode; its
// content is read when the archive is written.
func (l *Layer) HostFile(p, src string, mode fs.FileMode) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("layer %s: %w", p, err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("layer %s: %s is not a regular file", p, src)
	}
	return l.put(p, &entry{kind: kindFile, mode: mode.Perm(), src: src, size: st.Size(),
		srcStamp: fmt.Sprintf("%d/%d", st.Size(), st.ModTime().UnixNano())})
}

// Mirror adds the host path hostPath at the same path in the layer, with
// every symlink met on the way (among its directories or the path itself)
// reproduced as a symlink, so that a path that works on the host (the
// dynamic loader /lib64/ld-linux-x86-64.so.2 on a merged-/usr Debian)
// works in the image. Regular files keep their host mode; directories are
// added empty.
func (l *Layer) Mirror(hostPath string) error {
	return l.mirror(filepath.Clean(hostPath), 0)
}

func (l *Layer) mirror(p string, depth int) error {
	if depth > maxLinks {
		return fmt.Errorf("mirror %s: too many levels of symlinks", p)
	}
	if !filepath.IsAbs(p) {
		return fmt.Errorf("mirror %s: not an absolute path", p)
	}
	parts := strings.Split(strings.TrimPrefix(p, "/"), "/")
	cur := "/"
	for i, c := range parts {
		next := filepath.Join(cur, c)
		st, err := os.Lstat(next)
		if err != nil {
			return fmt.Errorf("mirror %s: %w", p, err)
		}
		last := i == len(parts)-1
		switch {
		case st.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(next)
			if err != nil {
				return fmt.Errorf("mirror %s: %w", p, err)
			}
			if err := l.Symlink(next, target); err != nil {
				return err
			}
			abs := target
			if !filepath.IsAbs(abs) {
				abs = filepath.Join(cur, target)
			}
			return l.mirror(filepath.Join(append([]string{abs}, parts[i+1:]...)...), depth+1)
		case st.IsDir():
			if err := l.Dir(next, st.Mode().Perm()); err != nil {
				return err
			}
		case last && st.Mode().IsRegular():
			return l.HostFile(next, next, st.Mode().Perm())
		default:
			return fmt.Errorf("mirror %s: %s is neither a directory, a regular file nor a symlink", p, next)
		}
		cur = next
	}
	return nil
}

// Has reports whether p exists in the layer (following symlinks among its
// directories, not p itself).
func (l *Layer) Has(p string) bool {
	r, err := l.resolve(p)
	if err != nil {
		return false
	}
	_, ok := l.entries[r]
	return ok
}

// paths lists the layer's paths in the order they are written: sorted, so
// a directory always comes before what it holds and the tar is the same
// byte for byte whenever the layer is.
func (l *Layer) paths() []string {
	ps := make([]string, 0, len(l.entries))
	for p := range l.entries {
		ps = append(ps, p)
	}
	slices.Sort(ps)
	return ps
}

// key is a digest of what the layer will hold, cheap to compute: host
// files count by path, size and mtime rather than by content.
func (l *Layer) key(w io.Writer) {
	for _, p := range l.paths() {
		e := l.entries[p]
		d := sha256.Sum256(e.data)
		fmt.Fprintf(w, "%s\x00%d\x00%o\x00%d:%d\x00%s\x00%s\x00%s\x00%s\n",
			p, e.kind, e.mode, e.uid, e.gid, e.target, hex.EncodeToString(d[:]), e.src, e.srcStamp)
	}
}

// errChanged says a host file changed between being added and being
// written: the archive would not be what its cache key says.
var errChanged = errors.New("changed while the image was being written")
