package cluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// AgnhostImage is the agnhost image name e2e.test 1.37 expects
// (test/utils/image/manifest.go).
const AgnhostImage = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"

// InterimImages writes minimal one-layer images into dir, enough for the
// cluster and its smoke test: the static pause (test/cri/pause, built
// here), agnhost as /agnhost, and CoreDNS as /coredns. They lack the
// tools the upstream e2e tests shell out to; test/cluster/images builds
// the full set.
func InterimImages(repo, dir string, bins Binaries) ([]Image, error) {
	pause := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-o", pause, "./test/cri/pause")
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build the pause binary: %w\n%s", err, out)
	}
	specs := []struct {
		name, bin, as string
	}{
		{PauseImage, pause, "pause"},
		{AgnhostImage, bins.Kube("agnhost"), "agnhost"},
		{CoreDNSImage, bins.CoreDNS, "coredns"},
	}
	var out []Image
	for _, s := range specs {
		p := filepath.Join(dir, s.as+".oci.tar")
		if err := writeOneBinaryImage(s.bin, s.as, s.name, p); err != nil {
			return nil, fmt.Errorf("image %s: %w", s.name, err)
		}
		out = append(out, Image{Name: s.name, Path: p})
	}
	return out, nil
}

// writeOneBinaryImage writes an OCI image layout, as a tar that `ctr
// images import` reads, holding one layer with the binary as /<as> (the
// entrypoint) and the image name in the index's io.containerd.image.name
// annotation.
func writeOneBinaryImage(bin, as, name, out string) error {
	data, err := os.ReadFile(bin)
	if err != nil {
		return err
	}
	stamp := time.Unix(0, 0)
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: as, Mode: 0o755, Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: stamp}); err != nil {
		return err
	}
	if _, err := lw.Write(data); err != nil {
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
		"config": map[string]any{"Entrypoint": []string{"/" + as}},
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
		"io.containerd.image.name":          name,
		"org.opencontainers.image.ref.name": name[strings.LastIndex(name, ":")+1:],
	}
	index, _ := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{manifestDesc},
	})
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	w := tar.NewWriter(f)
	put := func(name string, b []byte) error {
		if err := w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg, ModTime: stamp}); err != nil {
			return err
		}
		_, err := w.Write(b)
		return err
	}
	err = put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	if err == nil {
		err = put("index.json", index)
	}
	for d, b := range blobs {
		if err == nil {
			err = put("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), b)
		}
	}
	if err == nil {
		err = w.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
