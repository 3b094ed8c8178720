package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// archive is an OCI archive read back: its files, the image config and
// the layer's entries.
type archive struct {
	names    []string // in archive order
	files    map[string][]byte
	index    index
	manifest manifest
	config   imageConfig
	layer    []byte
	entries  []*tar.Header
	content  map[string][]byte // regular files of the layer
}

func readArchive(t *testing.T, p string) *archive {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := &archive{files: map[string][]byte{}, content: map[string][]byte{}}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if !h.ModTime.Equal(stamp) {
			t.Errorf("%s: %s has mtime %v, want the fixed %v", p, h.Name, h.ModTime, stamp)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		a.names = append(a.names, h.Name)
		a.files[h.Name] = b
	}
	blobOf := func(d descriptor) []byte {
		t.Helper()
		b, ok := a.files["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("%s: no blob %s", p, d.Digest)
		}
		sum := sha256.Sum256(b)
		if got := "sha256:" + hex.EncodeToString(sum[:]); got != d.Digest || int64(len(b)) != d.Size {
			t.Fatalf("%s: blob %s has digest %s and size %d, descriptor says size %d", p, d.Digest, got, len(b), d.Size)
		}
		if d.MediaType == "" {
			t.Errorf("%s: descriptor of %s has no media type", p, d.Digest)
		}
		return b
	}
	if string(a.files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("%s: oci-layout = %q", p, a.files["oci-layout"])
	}
	if err := json.Unmarshal(a.files["index.json"], &a.index); err != nil || len(a.index.Manifests) != 1 {
		t.Fatalf("%s: index.json %s: %v", p, a.files["index.json"], err)
	}
	if err := json.Unmarshal(blobOf(a.index.Manifests[0]), &a.manifest); err != nil || len(a.manifest.Layers) != 1 {
		t.Fatalf("%s: manifest: %v %+v", p, err, a.manifest)
	}
	if err := json.Unmarshal(blobOf(a.manifest.Config), &a.config); err != nil {
		t.Fatalf("%s: config: %v", p, err)
	}
	a.layer = blobOf(a.manifest.Layers[0])
	if a.config.RootFS.Type != "layers" || !slices.Equal(a.config.RootFS.DiffIDs, []string{a.manifest.Layers[0].Digest}) {
		t.Errorf("%s: rootfs %+v, want the uncompressed layer's digest %s", p, a.config.RootFS, a.manifest.Layers[0].Digest)
	}
	lr := tar.NewReader(bytes.NewReader(a.layer))
	for {
		h, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("%s: layer: %v", p, err)
		}
		if !h.ModTime.Equal(stamp) || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: layer entry %s: mtime %v, owner names %q %q", p, h.Name, h.ModTime, h.Uname, h.Gname)
		}
		a.entries = append(a.entries, h)
		if h.Typeflag == tar.TypeReg {
			b, _ := io.ReadAll(lr)
			a.content[h.Name] = b
		}
	}
	return a
}

func (a *archive) entry(name string) *tar.Header {
	for _, h := range a.entries {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// A layer with a merged-/usr /bin symlink, a sticky /tmp, a directory
// owned by a user, a host file and a symlink is written as an OCI layout
// that names the image, with the entries sorted, paths under /bin stored
// under /usr/bin, and the same bytes every time.
func TestWriteArchiveLayout(t *testing.T) {
	dir := t.TempDir()
	hostFile := filepath.Join(dir, "prog")
	if err := os.WriteFile(hostFile, []byte("#!/bin/sh\necho hi\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	l := NewLayer()
	must(t, l.Symlink("/bin", "usr/bin"))
	must(t, l.File("/bin/sh", 0o755, []byte("shell")))
	must(t, l.HostFile("/prog", hostFile, 0o755))
	must(t, l.Symlink("/prog-2", "prog"))
	must(t, l.Dir("/tmp", fs.ModeSticky|0o777))
	must(t, l.DirOwned("/home/u", 0o750, 1000, 1000))
	img := Image{Ref: "registry.example/team/tool:1.2-3", Layer: l, Entrypoint: []string{"/prog"}, Cmd: []string{"pause"}, User: "65535:65535"}

	out := filepath.Join(dir, "img.tar")
	must(t, WriteArchive(img, out))
	a := readArchive(t, out)

	if want := []string{"oci-layout", "index.json"}; !slices.Equal(a.names[:2], want) {
		t.Errorf("archive starts with %v, want %v", a.names[:2], want)
	}
	m := a.index.Manifests[0]
	if m.MediaType != mediaManifest || m.Annotations["io.containerd.image.name"] != img.Ref ||
		m.Annotations["org.opencontainers.image.ref.name"] != "1.2-3" || m.Platform == nil || m.Platform.OS != "linux" {
		t.Errorf("index manifest descriptor %+v", m)
	}
	if a.manifest.Layers[0].MediaType != mediaLayer || a.manifest.Config.MediaType != mediaConfig {
		t.Errorf("media types: %+v", a.manifest)
	}
	c := a.config.Config
	if !slices.Equal(c.Entrypoint, img.Entrypoint) || !slices.Equal(c.Cmd, img.Cmd) || c.User != img.User ||
		!slices.Equal(c.Env, []string{defaultPath}) || a.config.OS != "linux" {
		t.Errorf("config %+v", a.config)
	}

	var names []string
	for _, h := range a.entries {
		names = append(names, h.Name)
	}
	want := []string{"bin", "home/", "home/u/", "prog", "prog-2", "tmp/", "usr/", "usr/bin/", "usr/bin/sh"}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries %v, want %v", names, want)
	}
	if h := a.entry("bin"); h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "usr/bin" {
		t.Errorf("bin: %+v", h)
	}
	if h := a.entry("tmp/"); h == nil || h.Mode != 0o1777 {
		t.Errorf("tmp: %+v", h)
	}
	if h := a.entry("home/u/"); h == nil || h.Mode != 0o750 || h.Uid != 1000 || h.Gid != 1000 {
		t.Errorf("home/u: %+v", h)
	}
	if h := a.entry("prog"); h == nil || h.Mode != 0o755 || string(a.content["prog"]) != "#!/bin/sh\necho hi\n" {
		t.Errorf("prog: %+v %q", h, a.content["prog"])
	}
	if string(a.content["usr/bin/sh"]) != "shell" {
		t.Errorf("usr/bin/sh holds %q", a.content["usr/bin/sh"])
	}

	again := filepath.Join(dir, "again.tar")
	must(t, WriteArchive(img, again))
	b1, _ := os.ReadFile(out)
	b2, _ := os.ReadFile(again)
	if !bytes.Equal(b1, b2) {
		t.Error("the same image written twice differs")
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// Mirror reproduces the host's symlinks on the way to a file (a directory
// symlink, then a symlink to the file), so the host path works in the
// image.
func TestMirrorKeepsTheHostPath(t *testing.T) {
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "usr", "lib"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "usr", "lib", "ld.so.real"), []byte("loader"), 0o755))
	must(t, os.Symlink("ld.so.real", filepath.Join(dir, "usr", "lib", "ld.so")))
	must(t, os.Symlink("usr/lib", filepath.Join(dir, "lib")))

	l := NewLayer()
	must(t, l.Mirror(filepath.Join(dir, "lib", "ld.so")))
	lib := filepath.Join(dir, "lib")
	if e := l.entries[lib]; e == nil || e.kind != kindSymlink || e.target != "usr/lib" {
		t.Errorf("%s: %+v, want a symlink to usr/lib", lib, e)
	}
	ld := filepath.Join(dir, "usr", "lib", "ld.so")
	if e := l.entries[ld]; e == nil || e.kind != kindSymlink || e.target != "ld.so.real" {
		t.Errorf("%s: %+v, want a symlink to ld.so.real", ld, e)
	}
	real := filepath.Join(dir, "usr", "lib", "ld.so.real")
	if e := l.entries[real]; e == nil || e.kind != kindFile || e.mode != 0o755 || e.src != real {
		t.Errorf("%s: %+v, want the host file", real, e)
	}
	if !l.Has(filepath.Join(dir, "lib", "ld.so.real")) {
		t.Error("the file is not found through the mirrored directory symlink")
	}
}

// Bad input is refused with an error that names it.
func TestBadInput(t *testing.T) {
	l := NewLayer()
	must(t, l.File("/a", 0o644, []byte("one")))
	if err := l.File("/a", 0o644, []byte("two")); err == nil || !strings.Contains(err.Error(), "/a") {
		t.Errorf("two contents at /a: %v", err)
	}
	must(t, l.File("/a", 0o644, []byte("one"))) // the same twice is fine
	if err := l.File("/a/b", 0o644, nil); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file under a file: %v", err)
	}
	if err := l.File("rel", 0o644, nil); err == nil || !strings.Contains(err.Error(), "not absolute") {
		t.Errorf("relative path: %v", err)
	}
	must(t, l.Symlink("/loop", "/loop/x"))
	if err := l.File("/loop/f", 0o644, nil); err == nil || !strings.Contains(err.Error(), "symlinks") {
		t.Errorf("symlink loop: %v", err)
	}
	if err := l.HostFile("/h", filepath.Join(t.TempDir(), "absent"), 0o644); err == nil || !strings.Contains(err.Error(), "absent") {
		t.Errorf("absent host file: %v", err)
	}
	for _, ref := range []string{"registry.k8s.io/pause", "host:5000/pause", "pause:", "a b:1"} {
		if err := WriteArchive(Image{Ref: ref, Layer: NewLayer()}, filepath.Join(t.TempDir(), "x.tar")); err == nil || !strings.Contains(err.Error(), ref) {
			t.Errorf("ref %q: %v", ref, err)
		}
	}
}

// An archive is written again only when its recipe changes.
func TestWriteCached(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.tar")
	var logged []string
	log := func(f string, a ...any) { logged = append(logged, f) }
	l := NewLayer()
	must(t, l.File("/f", 0o644, []byte("v1")))
	img := Image{Ref: "example/x:1", Layer: l}
	must(t, writeCached(img, p, log))
	st1, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.Chtimes(p, stamp, stamp)) // so a rewrite would show
	must(t, writeCached(img, p, log))
	if st, _ := os.Stat(p); !st.ModTime().Equal(stamp) {
		t.Errorf("unchanged image rewritten (log %v)", logged)
	}
	l2 := NewLayer()
	must(t, l2.File("/f", 0o644, []byte("v2")))
	must(t, writeCached(Image{Ref: "example/x:1", Layer: l2}, p, log))
	if st, _ := os.Stat(p); st.ModTime().Equal(stamp) || st.Size() != st1.Size() {
		t.Errorf("changed image not rewritten, or of another size (log %v)", logged)
	}
	if a := readArchive(t, p); string(a.content["f"]) != "v2" {
		t.Errorf("f holds %q after the rewrite", a.content["f"])
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
