package images

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// goConst reads `Name = "value"` from Go source, "" when absent.
func goConst(src, name string) string {
	m := regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*"([^"]*)"`).FindStringSubmatch(src)
	if m == nil {
		return ""
	}
	return m[1]
}

// The refs are the ones k8s.io/kubernetes v1.37.2 itself names: e2e's
// image manifest (registry, name, tag of each image) and kubeadm's
// constants (pause, CoreDNS), read from the module the tools are built
// from.
func TestRefsAreUpstreams(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	k8s, err := kubernetesModule(context.Background(), root)
	if err != nil {
		t.Skip(err)
	}
	if !strings.HasSuffix(k8s, "@"+KubernetesVersion) {
		t.Errorf("test/kube builds %s, the refs are for %s", k8s, KubernetesVersion)
	}
	b, err := os.ReadFile(filepath.Join(k8s, "test", "utils", "image", "manifest.go"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(b)
	registries := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*(\w+Registry):\s*"([^"]+)",`).FindAllStringSubmatch(manifest, -1) {
		registries[m[1]] = m[2]
	}
	e2e := map[string]string{}
	for _, m := range regexp.MustCompile(`configs\[(\w+)\] = Config\{list\.(\w+), "([^"]+)", "([^"]+)"\}`).FindAllStringSubmatch(manifest, -1) {
		reg, ok := registries[m[2]]
		if !ok {
			t.Fatalf("manifest.go: %s uses registry %s, not found", m[1], m[2])
		}
		e2e[m[1]] = reg + "/" + m[3] + ":" + m[4]
	}
	for id, ref := range map[string]string{"Agnhost": AgnhostRef, "GlibcDnsTesting": GlibcDNSTestingRef,
		"Nginx": NginxRef, "BusyBox": BusyBoxRef, "Pause": PauseRef} {
		if e2e[id] != ref {
			t.Errorf("e2e's %s is %q, this package builds %q", id, e2e[id], ref)
		}
	}

	b, err = os.ReadFile(filepath.Join(k8s, "cmd", "kubeadm", "app", "constants", "constants.go"))
	if err != nil {
		t.Fatal(err)
	}
	consts := string(b)
	b, err = os.ReadFile(filepath.Join(k8s, "cmd", "kubeadm", "app", "apis", "kubeadm", "v1beta4", "defaults.go"))
	if err != nil {
		t.Fatal(err)
	}
	repo := goConst(string(b), "DefaultImageRepository")
	// kubeadm's GetDNSImage: the default repository gets /coredns.
	if want := repo + "/coredns/" + goConst(consts, "CoreDNSImageName") + ":" + goConst(consts, "CoreDNSVersion"); want != CoreDNSRef {
		t.Errorf("kubeadm's CoreDNS image is %q, this package builds %q", want, CoreDNSRef)
	}
	if want := repo + "/pause:" + goConst(consts, "PauseVersion"); want != PauseRef {
		t.Errorf("kubeadm's pause image is %q, this package builds %q", want, PauseRef)
	}
	if want := repo + "/etcd:" + goConst(consts, "DefaultEtcdVersion"); want != EtcdRef {
		t.Errorf("kubeadm's etcd image is %q, this package builds %q", want, EtcdRef)
	}
}

// kubeadm itself (when built) lists exactly the images this package
// builds for it.
func TestKubeadmListsTheImages(t *testing.T) {
	dir, err := toolPathForTest("kubernetes")
	if err != nil {
		t.Skip(err)
	}
	kubeadm := filepath.Join(dir, "kubeadm")
	if _, err := os.Stat(kubeadm); err != nil {
		t.Skipf("kubeadm is not built (%v): `make tools`", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, kubeadm, "config", "images", "list", "--kubernetes-version", KubernetesVersion).Output()
	if err != nil {
		t.Fatalf("kubeadm config images list: %v", err)
	}
	got := strings.Fields(string(out))
	want := []string{KubeAPIServerRef, KubeControllerManagerRef, KubeSchedulerRef, KubeProxyRef, CoreDNSRef, PauseRef, EtcdRef}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("kubeadm config images list:\n%s\nthis package builds %v", out, want)
	}
}

// Every e2e image this package builds is one e2e.test names (when
// e2e.test is built: `scripts/tools.sh ensure e2e_test`).
func TestE2EListsTheImages(t *testing.T) {
	p, err := toolPathForTest("e2e_test")
	if err != nil {
		t.Skip(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("e2e.test is not built (%v): scripts/tools.sh ensure e2e_test", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, p, "--list-images").Output()
	if err != nil {
		t.Fatalf("e2e.test --list-images: %v", err)
	}
	listed := "\n" + string(out)
	for _, ref := range []string{AgnhostRef, GlibcDNSTestingRef, NginxRef, BusyBoxRef, PauseRef} {
		if !strings.Contains(listed, "\n"+ref+"\n") {
			t.Errorf("e2e.test --list-images does not name %s:\n%s", ref, out)
		}
	}
}
