package cri

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"
)

// pauseImage is the name the image is imported under; the runtimes'
// configs name it as their sandbox image.
const pauseImage = "kindnet.test/pause:1"

// writePauseImage writes an OCI image layout, as a tar that `ctr images
// import` reads, holding one layer with the static pause binary as
// /pause, and the image name in the index's io.containerd.image.name
// annotation.
func writePauseImage(pauseBin, out string) error {
	bin, err := os.ReadFile(pauseBin)
	if err != nil {
		return err
	}
	stamp := time.Unix(0, 0)
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(bin)), Typeflag: tar.TypeReg, ModTime: stamp}); err != nil {
		return err
	}
	if _, err := lw.Write(bin); err != nil {
		return err
	}
	if err := lw.Close(); err != nil {
		return err
	}

	blobs := map[string][]byte{}
	descriptor := func(mediaType string, b []byte) map[string]any {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		blobs[d] = b
		return map[string]any{"mediaType": mediaType, "digest": d, "size": len(b)}
	}
	layerDesc := descriptor("application/vnd.oci.image.layer.v1.tar", layer.Bytes())
	config, _ := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH, "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/pause"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDesc["digest"].(string)}},
	})
	manifest, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{layerDesc},
	})
	manifestDesc := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	manifestDesc["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	manifestDesc["annotations"] = map[string]string{
		"io.containerd.image.name":          pauseImage,
		"org.opencontainers.image.ref.name": pauseImage[strings.LastIndex(pauseImage, ":")+1:],
	}
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{manifestDesc},
	})

	var img bytes.Buffer
	w := tar.NewWriter(&img)
	put := func(name string, b []byte) error {
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: stamp}); err != nil {
			return err
		}
		_, err := w.Write(b)
		return err
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return err
	}
	if err := put("index.json", index); err != nil {
		return err
	}
	for d, b := range blobs {
		if err := put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b); err != nil {
			return fmt.Errorf("blob %s: %w", d, err)
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, img.Bytes(), 0o644)
}
