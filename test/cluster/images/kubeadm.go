package images

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// The control-plane images `kubeadm config images list` names for
// v1.37.2 (besides pause and CoreDNS), built when Options.Kubeadm is set.
const (
	KubeAPIServerRef         = "registry.k8s.io/kube-apiserver:" + KubernetesVersion
	KubeControllerManagerRef = "registry.k8s.io/kube-controller-manager:" + KubernetesVersion
	KubeSchedulerRef         = "registry.k8s.io/kube-scheduler:" + KubernetesVersion
	KubeProxyRef             = "registry.k8s.io/kube-proxy:" + KubernetesVersion
	EtcdRef                  = "registry.k8s.io/etcd:3.7.0-0"
)

// kubeadmInputs are the static binaries of the control-plane images, from
// the tools cache.
type kubeadmInputs struct {
	apiserver, controllerManager, scheduler, proxy, etcd string
}

func findKubeadmInputs(ctx context.Context, o Options, kubeDir string) (kubeadmInputs, error) {
	var in kubeadmInputs
	apiserver, err := toolPath(ctx, o, "kube_apiserver")
	if err != nil {
		return in, err
	}
	etcd, err := toolPath(ctx, o, "etcd")
	if err != nil {
		return in, err
	}
	in = kubeadmInputs{apiserver: apiserver, etcd: etcd,
		controllerManager: filepath.Join(kubeDir, "kube-controller-manager"),
		scheduler:         filepath.Join(kubeDir, "kube-scheduler"),
		proxy:             filepath.Join(kubeDir, "kube-proxy")}
	for _, p := range []string{in.apiserver, in.etcd, in.controllerManager, in.scheduler, in.proxy} {
		if _, err := os.Stat(p); err != nil {
			return in, fmt.Errorf("images: %s is not built (%w): run `make tools`", filepath.Base(p), err)
		}
	}
	return in, nil
}

// binaryImage is upstream's layout for a component: the static binary in
// /usr/local/bin, where kubeadm's manifests find it (by PATH for the
// control plane and etcd, by path for kube-proxy). Upstream's entrypoint
// is go-runner, which kubeadm's commands override; here it is the binary.
func binaryImage(ref, bin string) (Image, error) {
	l := NewLayer()
	at := "/usr/local/bin/" + filepath.Base(bin)
	if err := l.HostFile(at, bin, 0o755); err != nil {
		return Image{}, err
	}
	for _, d := range []string{"/tmp", "/var/tmp"} {
		if err := l.Dir(d, os.ModeSticky|0o777); err != nil {
			return Image{}, err
		}
	}
	return Image{Ref: ref, Layer: l, Entrypoint: []string{at}}, nil
}

// kubeProxyImage is kube-proxy with what its modes run: Debian's nft
// (nftables mode; knftables runs the nft binary) and iptables over
// nf_tables with its extension modules (iptables mode, and the cleanup of
// the other mode's rules). Upstream's distroless-iptables base also has
// the legacy iptables, ipset and conntrack; not carried here.
func kubeProxyImage(ctx context.Context, bin string) (Image, error) {
	img, err := binaryImage(KubeProxyRef, bin)
	if err != nil {
		return Image{}, err
	}
	l := img.Layer
	xtables := program{path: "/usr/sbin/xtables-nft-multi", pkg: "iptables"}
	for _, v := range []string{"iptables", "ip6tables"} {
		for _, suffix := range []string{"", "-save", "-restore"} {
			xtables.as = append(xtables.as, v+suffix, v+"-nft"+suffix)
		}
	}
	for _, p := range []program{{path: "/usr/sbin/nft", pkg: "nftables"}, xtables} {
		if _, err := addProgram(ctx, l, p); err != nil {
			return Image{}, err
		}
	}
	if err := glibcRuntime(ctx, l, xtables); err != nil {
		return Image{}, err
	}
	// iptables loads its matches and targets (libxt_*.so) with dlopen,
	// out of ldd's sight: carry the whole directory.
	libs, err := sharedLibraries(ctx, xtables.path)
	if err != nil {
		return Image{}, err
	}
	for _, lib := range libs {
		if filepath.Base(lib) == "libc.so.6" {
			return img, addModules(ctx, l, filepath.Join(filepath.Dir(lib), "xtables"), xtables.pkg)
		}
	}
	return Image{}, fmt.Errorf("%s is not linked against glibc's libc.so.6", xtables.path)
}

// addModules mirrors every shared object in dir with what each links.
// ldd runs only for a module that needs a library not yet in the layer:
// the 120 iptables modules need libxtables and libc, and one ldd costs
// 0.1 s.
func addModules(ctx context.Context, l *Layer, dir, pkg string) error {
	mods, err := filepath.Glob(filepath.Join(dir, "*.so"))
	if err != nil || len(mods) == 0 {
		return missing(dir+"/*.so", pkg, fmt.Errorf("no modules: %v", err))
	}
	for _, m := range mods {
		if err := l.Mirror(m); err != nil {
			return err
		}
		if l.hasLibraries(m) {
			continue
		}
		libs, err := sharedLibraries(ctx, m)
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		for _, lib := range libs {
			if err := l.Mirror(lib); err != nil {
				return fmt.Errorf("%s needs %s: %w", m, lib, err)
			}
		}
	}
	return nil
}

// kubeadmRecipes are the control-plane images, in kubeadm's order.
func kubeadmRecipes(in kubeadmInputs) []recipe {
	static := func(ref, bin string) func(context.Context, inputs) (Image, error) {
		return func(context.Context, inputs) (Image, error) { return binaryImage(ref, bin) }
	}
	file := func(ref string) string {
		name, _, _ := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
		return name + ".tar"
	}
	return []recipe{
		{file(KubeAPIServerRef), static(KubeAPIServerRef, in.apiserver)},
		{file(KubeControllerManagerRef), static(KubeControllerManagerRef, in.controllerManager)},
		{file(KubeSchedulerRef), static(KubeSchedulerRef, in.scheduler)},
		{file(KubeProxyRef), func(ctx context.Context, _ inputs) (Image, error) { return kubeProxyImage(ctx, in.proxy) }},
		{file(EtcdRef), static(EtcdRef, in.etcd)},
	}
}

// hasLibraries reports whether every library the shared object so needs
// (DT_NEEDED) is already in the layer under that name.
func (l *Layer) hasLibraries(so string) bool {
	f, err := elf.Open(so)
	if err != nil {
		return false
	}
	defer f.Close()
	needed, err := f.ImportedLibraries()
	if err != nil {
		return false
	}
	for _, n := range needed {
		found := false
		for p := range l.entries {
			if filepath.Base(p) == n {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
