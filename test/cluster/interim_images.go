package cluster

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/kindnet-dev/kindnet/test/cluster/images"
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

// writeOneBinaryImage writes an image holding only the binary, as /<as>,
// its entrypoint.
func writeOneBinaryImage(bin, as, name, out string) error {
	l := images.NewLayer()
	if err := l.HostFile("/"+as, bin, 0o755); err != nil {
		return err
	}
	return images.WriteArchive(images.Image{Ref: name, Layer: l, Entrypoint: []string{"/" + as}}, out)
}
