package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Image is one image to write: its name and its one layer, and what a
// runtime reads from its config to start a container.
type Image struct {
	// Ref is the full name with a tag, registry.k8s.io/pause:3.10.2: the
	// name `ctr images import` gives the image.
	Ref        string
	Layer      *Layer
	Entrypoint []string
	Cmd        []string
	// Env defaults to a PATH naming the usual directories.
	Env        []string
	User       string
	WorkingDir string
}

// defaultPath is the PATH of a container started from an image whose Env
// does not set one (Debian's, as the upstream images have).
const defaultPath = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// stamp is every file's mtime, in the layer and in the archive: a fixed
// one, so the same image always makes the same bytes and digests.
var stamp = time.Unix(0, 0).UTC()

// Media types of an OCI image (image-spec v1.1), uncompressed layer:
// compressing would cost the 2-core machine more than it saves for
// archives that never leave it.
const (
	mediaIndex    = "application/vnd.oci.image.index.v1+json"
	mediaManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaConfig   = "application/vnd.oci.image.config.v1+json"
	mediaLayer    = "application/vnd.oci.image.layer.v1.tar"
)

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Platform    *platform         `json:"platform,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		Env        []string `json:"Env,omitempty"`
		User       string   `json:"User,omitempty"`
		WorkingDir string   `json:"WorkingDir,omitempty"`
	} `json:"config"`
	RootFS struct {
		Type    string   `json:"type"`
		DiffIDs []string `json:"diff_ids"`
	} `json:"rootfs"`
}

type manifest struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Config        descriptor   `json:"config"`
	Layers        []descriptor `json:"layers"`
}

type index struct {
	SchemaVersion int          `json:"schemaVersion"`
	MediaType     string       `json:"mediaType"`
	Manifests     []descriptor `json:"manifests"`
}

// SplitRef splits registry.k8s.io/pause:3.10.2 into name and tag, and
// says what is wrong with a ref that has no tag or an empty name.
func SplitRef(ref string) (name, tag string, err error) {
	i := strings.LastIndex(ref, ":")
	if i <= 0 || strings.Contains(ref[i+1:], "/") || i == len(ref)-1 {
		return "", "", fmt.Errorf("image ref %q has no tag (want name:tag)", ref)
	}
	if strings.ContainsAny(ref, " \t\n@") {
		return "", "", fmt.Errorf("image ref %q has a blank or a digest in it", ref)
	}
	return ref[:i], ref[i+1:], nil
}

// WriteArchive writes img to out as an OCI image layout in a tar: the
// form `ctr images import` reads (with --local on containerd 2.x). The
// index names the image in the io.containerd.image.name annotation, the
// ref's tag in org.opencontainers.image.ref.name. The archive appears
// whole or not at all: it is written under a temporary name next to out
// and renamed.
func WriteArchive(img Image, out string) error {
	_, tag, err := SplitRef(img.Ref)
	if err != nil {
		return err
	}
	if img.Layer == nil {
		return fmt.Errorf("image %s: no layer", img.Ref)
	}
	dir := filepath.Dir(out)
	layerFile, err := os.CreateTemp(dir, "."+filepath.Base(out)+".layer-*")
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	defer os.Remove(layerFile.Name())
	defer layerFile.Close()
	h := sha256.New()
	size, err := img.Layer.writeTar(io.MultiWriter(layerFile, h))
	if err != nil {
		return fmt.Errorf("image %s: layer: %w", img.Ref, err)
	}
	layer := descriptor{MediaType: mediaLayer, Digest: digestOf(h), Size: size}

	var cfg imageConfig
	cfg.Architecture, cfg.OS = runtime.GOARCH, "linux"
	cfg.Config.Entrypoint, cfg.Config.Cmd = img.Entrypoint, img.Cmd
	cfg.Config.Env = img.Env
	if len(cfg.Config.Env) == 0 {
		cfg.Config.Env = []string{defaultPath}
	}
	cfg.Config.User, cfg.Config.WorkingDir = img.User, img.WorkingDir
	cfg.RootFS.Type, cfg.RootFS.DiffIDs = "layers", []string{layer.Digest}
	blobs := map[string][]byte{}
	cfgDesc, err := blob(blobs, mediaConfig, cfg)
	if err != nil {
		return err
	}
	manDesc, err := blob(blobs, mediaManifest, manifest{SchemaVersion: 2, MediaType: mediaManifest, Config: cfgDesc, Layers: []descriptor{layer}})
	if err != nil {
		return err
	}
	manDesc.Platform = &platform{Architecture: runtime.GOARCH, OS: "linux"}
	manDesc.Annotations = map[string]string{
		"io.containerd.image.name":          img.Ref,
		"org.opencontainers.image.ref.name": tag,
	}
	idx, err := json.Marshal(index{SchemaVersion: 2, MediaType: mediaIndex, Manifests: []descriptor{manDesc}})
	if err != nil {
		return err
	}

	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".tmp-*")
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	w := tar.NewWriter(tmp)
	put := func(name string, size int64, r io.Reader) error {
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, ModTime: stamp}); err != nil {
			return err
		}
		n, err := io.Copy(w, r)
		if err == nil && n != size {
			err = fmt.Errorf("%s: wrote %d bytes of %d", name, n, size)
		}
		return err
	}
	layout := `{"imageLayoutVersion":"1.0.0"}`
	if err := put("oci-layout", int64(len(layout)), strings.NewReader(layout)); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if err := put("index.json", int64(len(idx)), strings.NewReader(string(idx))); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if _, err := layerFile.Seek(0, io.SeekStart); err != nil {
		return err
	}
	blobs[layer.Digest] = nil // streamed from layerFile
	for _, d := range slices.Sorted(maps.Keys(blobs)) {
		name := "blobs/sha256/" + strings.TrimPrefix(d, "sha256:")
		var err error
		if d == layer.Digest {
			err = put(name, layer.Size, layerFile)
		} else {
			err = put(name, int64(len(blobs[d])), strings.NewReader(string(blobs[d])))
		}
		if err != nil {
			return fmt.Errorf("image %s: blob %s: %w", img.Ref, d, err)
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	return nil
}

// blob marshals v, keeps it in blobs under its digest and describes it.
func blob(blobs map[string][]byte, mediaType string, v any) (descriptor, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return descriptor{}, fmt.Errorf("%s: %w", mediaType, err)
	}
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	blobs[d] = b
	return descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}, nil
}

func digestOf(h hash.Hash) string { return "sha256:" + hex.EncodeToString(h.Sum(nil)) }

// writeTar writes the layer as a tar to w and returns its size: entries
// in path order, owned by their uid:gid with no user or group names,
// every mtime the fixed stamp.
func (l *Layer) writeTar(w io.Writer) (int64, error) {
	cw := &countWriter{w: w}
	tw := tar.NewWriter(cw)
	for _, p := range l.paths() {
		if p == "/" {
			continue
		}
		e := l.entries[p]
		hdr := &tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: tarMode(e.mode), Uid: e.uid, Gid: e.gid, ModTime: stamp}
		switch e.kind {
		case kindDir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, hdr.Name+"/"
		case kindSymlink:
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.target
		case kindFile:
			hdr.Typeflag, hdr.Size = tar.TypeReg, e.size
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
		if e.kind != kindFile {
			continue
		}
		if err := e.copyTo(tw); err != nil {
			return 0, fmt.Errorf("%s: %w", p, err)
		}
	}
	if err := tw.Close(); err != nil {
		return 0, err
	}
	return cw.n, nil
}

// tarMode turns permission and sticky bits into a tar header's mode.
func tarMode(m fs.FileMode) int64 {
	v := int64(m.Perm())
	if m&fs.ModeSticky != 0 {
		v |= 0o1000
	}
	return v
}

// copyTo writes the file's content: its bytes, or its host file, which
// must still have the size it had when it was added.
func (e *entry) copyTo(w io.Writer) error {
	if e.src == "" {
		_, err := w.Write(e.data)
		return err
	}
	f, err := os.Open(e.src)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, e.size+1))
	if err != nil {
		return err
	}
	if n != e.size {
		return fmt.Errorf("%s %w (%d bytes, was %d)", e.src, errChanged, n, e.size)
	}
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}
