// Package images builds, without a registry, the container images a real
// Kubernetes v1.37.2 cluster on this host needs for kubelet, CoreDNS and
// the upstream e2e `[sig-network] … [Conformance]` and
// `[Feature:IPv6DualStack]` tests: one-layer OCI image layouts in tar
// archives that `ctr -n k8s.io images import --local` loads under the
// names and tags e2e.test (k8s.io/kubernetes test/utils/image/manifest.go)
// and kubeadm (cmd/kubeadm/app/constants) expect.
//
// Every image is made from programs already on this machine: static Go
// binaries (pause from test/cri/pause, agnhost and CoreDNS from the tools
// cache of scripts/tools.sh) and Debian's binaries installed by `make
// deps`, each carried with every shared library ldd reports and its
// loader, at their host paths. Archives are deterministic (sorted
// entries, fixed mtimes, root-owned unless said otherwise) and cached:
// an archive whose recipe (paths, modes, contents, host files' sizes and
// mtimes) has not changed is not written again.
//
// The images and what of upstream each reproduces:
//
//   - registry.k8s.io/pause:3.10.2 (kubeadm's PauseVersion, e2e's Pause):
//     the static test/cri/pause as /pause, user 65535 as upstream's. It
//     does not reap zombies as upstream's does (which matters only to
//     pods that share their process namespace).
//   - registry.k8s.io/e2e-test-images/agnhost:2.66.1: /agnhost and the
//     /agnhost-2 link, entrypoint /agnhost and command pause as upstream;
//     /localhost.crt and /localhost.key from the module's porter sources;
//     /uploads; the users and groups upstream's Dockerfile adds
//     (user-defined-in-image 1000, group-defined-in-image 50000 with it
//     as member); what the tests shell out to: Debian's netcat-openbsd
//     (nc with -u), curl, GNU wget (Debian's busybox 1.35 segfaults on
//     the -T the service tests pass), dig and nslookup, ip and ss, socat,
//     getent, dash as sh, busybox for coreutils (Debian's static busybox
//     prefers its own applets: as sh it would run its nc and wget, and
//     an applet that runs a program, such as timeout or xargs, still
//     does); /coredns is the cluster's own lean CoreDNS (test/coredns),
//     which lacks the hosts plugin, so the one e2e test that runs
//     agnhost's /coredns with a hosts Corefile (DNS "should support
//     configurable pod resolv.conf", not a conformance test) fails. Not reproduced: bash, iperf, and the fake
//     registry under /var/registry (no network test uses them).
//   - registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1 (formerly
//     jessie-dnsutils, the DNS tests' glibc querier): Debian's dig,
//     nslookup and getent over glibc, dash as sh, busybox for coreutils.
//     Upstream's is a Debian bookworm with dnsutils and a CoreDNS 1.5.0
//     no test runs; command sh, where upstream's is bash.
//   - registry.k8s.io/e2e-test-images/nginx:1.27.0-2 (the Endpoints tests'
//     pods): a stand-in, busybox httpd serving a "Welcome to nginx!" page
//     on port 80 (IPv4 and IPv6) from /usr/share/nginx/html. There is no
//     nginx binary: a test that runs `nginx` itself would fail; the
//     selected tests only need the container to run.
//   - registry.k8s.io/e2e-test-images/busybox:1.37.0-2 (the framework's
//     default test image): Debian's static busybox 1.35 and its applets.
//   - registry.k8s.io/coredns/coredns:v1.14.6 (kubeadm's CoreDNSVersion):
//     the lean CoreDNS as /coredns, entrypoint /coredns. It runs as root,
//     where upstream's runs as 65532 and binds :53 through the runtime's
//     unprivileged-ports sysctl; kubeadm's Deployment grants
//     NET_BIND_SERVICE either way.
//
// With Options.Kubeadm, also the rest of what `kubeadm config images
// list` names, each its static binary in /usr/local/bin as upstream's:
//
//   - registry.k8s.io/kube-apiserver, kube-controller-manager and
//     kube-scheduler:v1.37.2, and registry.k8s.io/etcd:3.7.0-0 (the etcd
//     server only, no etcdctl; kubeadm runs none), entrypoint the binary
//     where upstream's is go-runner (kubeadm's manifests set the command).
//   - registry.k8s.io/kube-proxy:v1.37.2 with Debian's nft and iptables
//     (nf_tables) and iptables' extension modules; upstream's base also
//     has legacy iptables, ipset and conntrack, not carried.
//
// Not built: every other image of the e2e manifest (none is used by the
// selected tests).
//
// It writes only under Options.Out (and builds pause in a temporary
// directory it removes) and runs no container; the tests that import the
// archives into a containerd run one in a directory of their own.
package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The images' names, as k8s.io/kubernetes v1.37.2 names them.
const (
	KubernetesVersion = "v1.37.2"

	PauseRef           = "registry.k8s.io/pause:3.10.2"
	AgnhostRef         = "registry.k8s.io/e2e-test-images/agnhost:2.66.1"
	GlibcDNSTestingRef = "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1"
	NginxRef           = "registry.k8s.io/e2e-test-images/nginx:1.27.0-2"
	BusyBoxRef         = "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"
	CoreDNSRef         = "registry.k8s.io/coredns/coredns:v1.14.6"
)

// Options says where Build finds its inputs and puts the archives.
type Options struct {
	// Out is the directory the archives are written to (created). An
	// archive there whose recipe has not changed is kept as it is.
	Out string
	// Tools is the tools cache of scripts/tools.sh (KINDNET_TOOLS,
	// default ~/.cache/kindnet), where agnhost and CoreDNS are built.
	Tools string
	// Root is the kindnet checkout (scripts/tools.sh, test/cri/pause,
	// test/kube); default: the module holding the working directory.
	Root string
	// Kubeadm also builds the control-plane images `kubeadm config
	// images list` names: kube-apiserver, kube-controller-manager,
	// kube-scheduler, kube-proxy and etcd.
	Kubeadm bool
	// Log, when set, is told what is built and what is reused.
	Log func(format string, args ...any)
}

// Archive is one image written by Build.
type Archive struct {
	Ref  string // the name it is imported under
	Path string // the OCI archive
}

// Build writes every image of the package doc into o.Out and returns
// them in a fixed order (pause first). A missing input (a tool not built,
// a Debian package not installed) is an error naming it and what provides
// it.
func Build(ctx context.Context, o Options) ([]Archive, error) {
	if o.Out == "" {
		return nil, errors.New("images: Options.Out (the directory for the archives) is empty")
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	in, err := findInputs(ctx, &o)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	recipes := []recipe{
		{"pause.tar", pauseImage},
		{"agnhost.tar", agnhostImage},
		{"glibc-dns-testing.tar", glibcDNSTestingImage},
		{"nginx.tar", nginxImage},
		{"busybox.tar", busyboxImage},
		{"coredns.tar", corednsImage},
	}
	if o.Kubeadm {
		k, err := findKubeadmInputs(ctx, o, filepath.Dir(in.agnhost))
		if err != nil {
			return nil, err
		}
		recipes = append(recipes, kubeadmRecipes(k)...)
	}
	var out []Archive
	for _, r := range recipes {
		img, err := r.make(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("images: %s: %w", r.file, err)
		}
		p := filepath.Join(o.Out, r.file)
		if err := writeCached(img, p, o.Log); err != nil {
			return nil, fmt.Errorf("images: %w", err)
		}
		out = append(out, Archive{Ref: img.Ref, Path: p})
	}
	return out, nil
}

// recipe makes one image, written to file in Options.Out.
type recipe struct {
	file string
	make func(context.Context, inputs) (Image, error)
}

// formatVersion changes whenever the archive writer would write the same
// recipe differently: it invalidates every cached archive.
const formatVersion = "kindnet-images-1"

// writeCached writes img to p unless p exists and p.key holds the digest
// of img's recipe (the archive was made from the same inputs).
func writeCached(img Image, p string, log func(string, ...any)) error {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%q\x00%q\x00%q\x00%s\x00%s\n", formatVersion, img.Ref,
		img.Entrypoint, img.Cmd, img.Env, img.User, img.WorkingDir)
	img.Layer.key(h)
	key := hex.EncodeToString(h.Sum(nil))
	keyFile := p + ".key"
	if old, err := os.ReadFile(keyFile); err == nil && strings.TrimSpace(string(old)) == key {
		if _, err := os.Stat(p); err == nil {
			log("images: %s: unchanged, %s", img.Ref, p)
			return nil
		}
	}
	// The key goes away first: a crash between the two writes leaves an
	// archive without a key, which is rewritten next time.
	if err := os.Remove(keyFile); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := WriteArchive(img, p); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o644); err != nil {
		return err
	}
	if st, err := os.Stat(p); err == nil {
		log("images: %s: wrote %s (%.1f MB)", img.Ref, p, float64(st.Size())/1e6)
	}
	return nil
}

// inputs are the files the images are made of, found before anything is
// written.
type inputs struct {
	pause   []byte // the static pause binary
	agnhost string
	coredns string
	k8s     string // the k8s.io/kubernetes module directory
}

func findInputs(ctx context.Context, o *Options) (inputs, error) {
	var in inputs
	if o.Root == "" {
		root, err := moduleRoot()
		if err != nil {
			return in, err
		}
		o.Root = root
	}
	if o.Tools == "" {
		o.Tools = os.Getenv("KINDNET_TOOLS")
	}
	if o.Tools == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return in, fmt.Errorf("images: no Options.Tools and no home directory: %w", err)
		}
		o.Tools = filepath.Join(home, ".cache", "kindnet")
	}
	kube, err := toolPath(ctx, *o, "kubernetes")
	if err != nil {
		return in, err
	}
	in.agnhost = filepath.Join(kube, "agnhost")
	if in.coredns, err = toolPath(ctx, *o, "coredns"); err != nil {
		return in, err
	}
	for name, p := range map[string]string{"agnhost": in.agnhost, "coredns": in.coredns} {
		tool := map[string]string{"agnhost": "kubernetes", "coredns": "coredns"}[name]
		if _, err := os.Stat(p); err != nil {
			return in, fmt.Errorf("images: %s is not built (%w): run `make tools` or `scripts/tools.sh ensure %s`", name, err, tool)
		}
	}
	if in.k8s, err = kubernetesModule(ctx, o.Root); err != nil {
		return in, err
	}
	if in.pause, err = buildPause(ctx, o.Root); err != nil {
		return in, err
	}
	return in, nil
}

// moduleRoot is the kindnet module holding the working directory.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("images: %w", err)
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && strings.HasPrefix(string(b), "module github.com/kindnet-dev/kindnet\n") {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("images: %s is not inside the kindnet checkout: set Options.Root", dir)
		}
	}
}

// toolPath asks scripts/tools.sh where it puts a tool, so the versions
// are written in one place.
func toolPath(ctx context.Context, o Options, name string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(o.Root, "scripts", "tools.sh"), "path", name)
	cmd.Env = append(os.Environ(), "KINDNET_TOOLS="+o.Tools)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("images: scripts/tools.sh path %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// kubernetesModule is the directory of the k8s.io/kubernetes module the
// tools are built from (test/kube pins it), for agnhost's certificate.
func kubernetesModule(ctx context.Context, root string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes")
	cmd.Dir = filepath.Join(root, "test", "kube")
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		return "", fmt.Errorf("images: the k8s.io/kubernetes module is not in the module cache (%v): run `make tools`", err)
	}
	return dir, nil
}

// buildPause builds test/cri/pause, static, and returns the binary.
func buildPause(ctx context.Context, root string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "kindnet-pause-")
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	defer os.RemoveAll(tmp)
	bin := filepath.Join(tmp, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./test/cri/pause")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("images: build test/cri/pause: %w\n%s", err, out)
	}
	return os.ReadFile(bin)
}
