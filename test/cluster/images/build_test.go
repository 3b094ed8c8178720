package images

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// built is what Build wrote once for the tests of this package (they
// share it: building agnhost's image reads ~150 MB).
var built struct {
	once     sync.Once
	dir      string
	archives []Archive
	err      error
}

// buildOnce runs Build into a directory removed when the package's tests
// end (TestMain), or skips when the tools it needs are not built.
func buildOnce(t *testing.T) []Archive {
	t.Helper()
	built.once.Do(func() {
		built.dir, built.err = os.MkdirTemp("", "kindnet-images-")
		if built.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		built.archives, built.err = Build(ctx, Options{Out: built.dir, Log: t.Logf})
	})
	if built.err != nil {
		if strings.Contains(built.err.Error(), "is not built") || strings.Contains(built.err.Error(), "make deps") {
			t.Skipf("cannot build the images here: %v", built.err)
		}
		t.Fatal(built.err)
	}
	return built.archives
}

// kubeadmBuilt is the second Build, with Options.Kubeadm, into the same
// directory: the e2e images are reused, the control-plane ones added.
var kubeadmBuilt struct {
	once     sync.Once
	archives []Archive
	err      error
}

func buildKubeadmOnce(t *testing.T) []Archive {
	t.Helper()
	buildOnce(t)
	kubeadmBuilt.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		kubeadmBuilt.archives, kubeadmBuilt.err = Build(ctx, Options{Out: built.dir, Kubeadm: true, Log: t.Logf})
	})
	if err := kubeadmBuilt.err; err != nil {
		if strings.Contains(err.Error(), "is not built") || strings.Contains(err.Error(), "make deps") {
			t.Skipf("cannot build the control-plane images here: %v", err)
		}
		t.Fatal(err)
	}
	return kubeadmBuilt.archives
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

func archiveOf(t *testing.T, archives []Archive, ref string) *archive {
	t.Helper()
	for _, a := range archives {
		if a.Ref == ref {
			return readArchive(t, a.Path)
		}
	}
	t.Fatalf("no archive for %s in %+v", ref, archives)
	return nil
}

// Build writes every image under its upstream name, each a valid OCI
// archive whose programs find every library they link in the image, and
// a second Build reuses them.
func TestBuild(t *testing.T) {
	archives := buildOnce(t)
	var refs []string
	for _, a := range archives {
		refs = append(refs, a.Ref)
	}
	want := []string{PauseRef, AgnhostRef, GlibcDNSTestingRef, NginxRef, BusyBoxRef, CoreDNSRef}
	if !slices.Equal(refs, want) {
		t.Fatalf("refs %v, want %v", refs, want)
	}
	for _, ref := range want {
		a := archiveOf(t, archives, ref)
		if got := a.index.Manifests[0].Annotations["io.containerd.image.name"]; got != ref {
			t.Errorf("%s: archive names %q", ref, got)
		}
		checkLinked(t, ref, a)
	}

	ag := archiveOf(t, archives, AgnhostRef)
	c := ag.config.Config
	if !slices.Equal(c.Entrypoint, []string{"/agnhost"}) || !slices.Equal(c.Cmd, []string{"pause"}) {
		t.Errorf("agnhost entrypoint %q cmd %q, want upstream's /agnhost pause", c.Entrypoint, c.Cmd)
	}
	if h := ag.entry("agnhost-2"); h == nil || h.Typeflag != tar.TypeSymlink || h.Linkname != "agnhost" {
		t.Errorf("agnhost-2: %+v", h)
	}
	for _, f := range []string{"agnhost", "coredns", "localhost.crt", "localhost.key"} {
		if len(ag.content[f]) == 0 {
			t.Errorf("agnhost image: /%s missing or empty", f)
		}
	}
	if !strings.Contains(string(ag.content["localhost.crt"]), "BEGIN CERTIFICATE") {
		t.Error("agnhost image: /localhost.crt is not a certificate")
	}
	if h := ag.entry("uploads/"); h == nil || h.Typeflag != tar.TypeDir {
		t.Error("agnhost image: no /uploads directory")
	}
	if !strings.Contains(string(ag.content["etc/passwd"]), "\nuser-defined-in-image:x:1000:1000:") ||
		!strings.Contains(string(ag.content["etc/group"]), "\ngroup-defined-in-image:x:50000:user-defined-in-image\n") {
		t.Errorf("agnhost image users:\n%s\n%s", ag.content["etc/passwd"], ag.content["etc/group"])
	}
	for _, cmd := range []string{"nc", "curl", "dig", "nslookup", "ip", "ss", "socat", "getent", "sh", "wget", "seq", "sleep"} {
		if target := resolveIn(ag, "usr/bin/"+cmd); target == "" {
			t.Errorf("agnhost image: no %s in /usr/bin", cmd)
		}
	}
	if got := resolveIn(ag, "usr/bin/nc"); !strings.HasSuffix(got, "nc.openbsd") {
		t.Errorf("agnhost image: nc is %s, want Debian's netcat-openbsd (UDP)", got)
	}
	// Not busybox's: it would run its own nc and wget (see dash).
	if got := resolveIn(ag, "bin/sh"); !strings.HasSuffix(got, "/dash") {
		t.Errorf("agnhost image: /bin/sh is %q, want dash", got)
	}
	if got := resolveIn(ag, "usr/bin/wget"); got != "usr/bin/wget" {
		t.Errorf("agnhost image: wget is %q, want Debian's", got)
	}

	p := archiveOf(t, archives, PauseRef)
	if p.config.Config.User != "65535:65535" || !slices.Equal(p.config.Config.Entrypoint, []string{"/pause"}) {
		t.Errorf("pause config %+v", p.config.Config)
	}
	if d := archiveOf(t, archives, CoreDNSRef); !slices.Equal(d.config.Config.Entrypoint, []string{"/coredns"}) || len(d.content["coredns"]) == 0 {
		t.Errorf("coredns image: entrypoint %q", d.config.Config.Entrypoint)
	}
	for _, ref := range []string{GlibcDNSTestingRef, BusyBoxRef, NginxRef} {
		a := archiveOf(t, archives, ref)
		for _, cmd := range []string{"sh", "sleep", "seq"} {
			if resolveIn(a, "bin/"+cmd) == "" {
				t.Errorf("%s: no /bin/%s", ref, cmd)
			}
		}
	}
	g := archiveOf(t, archives, GlibcDNSTestingRef)
	for _, cmd := range []string{"dig", "nslookup", "getent"} {
		if resolveIn(g, "usr/bin/"+cmd) == "" {
			t.Errorf("glibc-dns-testing: no %s", cmd)
		}
	}

	// Again: nothing changed, nothing is written.
	var logs []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	again, err := Build(ctx, Options{Out: built.dir, Log: func(f string, a ...any) {
		logs = append(logs, fmt.Sprintf(f, a...))
	}})
	if err != nil {
		t.Fatal(err)
	}
	if len(again) != len(archives) {
		t.Fatalf("second build: %+v", again)
	}
	for _, l := range logs {
		if !strings.Contains(l, "unchanged") {
			t.Errorf("second build wrote an archive again: %v", logs)
			break
		}
	}
}

// resolveIn follows symlinks in a's layer from name (no leading /) and
// returns the regular file it lands on, "" if none.
func resolveIn(a *archive, name string) string {
	byName := map[string]*tar.Header{}
	for _, h := range a.entries {
		byName[strings.TrimSuffix(h.Name, "/")] = h
	}
	for range maxLinks {
		// Resolve the directories first, then the name itself.
		parts := strings.Split(name, "/")
		cur, redirected := "", false
		for i, c := range parts {
			next := path.Join(cur, c)
			h := byName[next]
			if h == nil {
				return ""
			}
			if h.Typeflag == tar.TypeSymlink {
				t := h.Linkname
				if strings.HasPrefix(t, "/") {
					t = strings.TrimPrefix(t, "/")
				} else {
					t = path.Join(cur, t)
				}
				name = path.Join(append([]string{t}, parts[i+1:]...)...)
				redirected = true
				break
			}
			if i == len(parts)-1 && h.Typeflag == tar.TypeReg {
				return next
			}
			cur = next
		}
		if !redirected {
			return ""
		}
	}
	return ""
}

// checkLinked checks that every ELF program and library in the layer
// finds its loader and every library it needs (DT_NEEDED) in the layer:
// what the image needs to start anything, without running it.
func checkLinked(t *testing.T, ref string, a *archive) {
	t.Helper()
	have := map[string]bool{} // base names of what resolves to a file
	for _, h := range a.entries {
		if h.Typeflag == tar.TypeReg || (h.Typeflag == tar.TypeSymlink && resolveIn(a, strings.TrimSuffix(h.Name, "/")) != "") {
			have[path.Base(h.Name)] = true
		}
	}
	for name, b := range a.content {
		if !bytes.HasPrefix(b, []byte("\x7fELF")) {
			continue
		}
		f, err := elf.NewFile(bytes.NewReader(b))
		if err != nil {
			t.Errorf("%s: %s: %v", ref, name, err)
			continue
		}
		for _, p := range f.Progs {
			if p.Type != elf.PT_INTERP {
				continue
			}
			buf := make([]byte, p.Filesz)
			_, _ = p.ReadAt(buf, 0)
			interp := strings.TrimRight(string(buf), "\x00")
			if resolveIn(a, strings.TrimPrefix(interp, "/")) == "" {
				t.Errorf("%s: %s: loader %s is not in the image", ref, name, interp)
			}
		}
		libs, _ := f.ImportedLibraries()
		for _, lib := range libs {
			if !have[lib] {
				t.Errorf("%s: %s needs %s, not in the image", ref, name, lib)
			}
		}
		f.Close()
	}
}

// With Kubeadm, Build adds the control-plane images, each its binary in
// /usr/local/bin, and kube-proxy's nft and iptables with every library
// and iptables module they load.
func TestBuildKubeadm(t *testing.T) {
	archives := buildKubeadmOnce(t)
	var refs []string
	for _, a := range archives {
		refs = append(refs, a.Ref)
	}
	want := []string{PauseRef, AgnhostRef, GlibcDNSTestingRef, NginxRef, BusyBoxRef, CoreDNSRef,
		KubeAPIServerRef, KubeControllerManagerRef, KubeSchedulerRef, KubeProxyRef, EtcdRef}
	if !slices.Equal(refs, want) {
		t.Fatalf("refs %v, want %v", refs, want)
	}
	for ref, bin := range map[string]string{KubeAPIServerRef: "kube-apiserver", KubeControllerManagerRef: "kube-controller-manager",
		KubeSchedulerRef: "kube-scheduler", KubeProxyRef: "kube-proxy", EtcdRef: "etcd"} {
		a := archiveOf(t, archives, ref)
		if len(a.content["usr/local/bin/"+bin]) == 0 || !slices.Equal(a.config.Config.Entrypoint, []string{"/usr/local/bin/" + bin}) {
			t.Errorf("%s: /usr/local/bin/%s missing or not the entrypoint (%q)", ref, bin, a.config.Config.Entrypoint)
		}
		checkLinked(t, ref, a)
	}
	kp := archiveOf(t, archives, KubeProxyRef)
	for _, cmd := range []string{"nft", "iptables", "ip6tables-restore", "iptables-nft-save"} {
		if resolveIn(kp, "usr/bin/"+cmd) == "" && resolveIn(kp, "usr/sbin/"+cmd) == "" {
			t.Errorf("kube-proxy image: no %s", cmd)
		}
	}
	n := 0
	for name := range kp.content {
		if strings.Contains(name, "/xtables/libxt_") {
			n++
		}
	}
	if n < 20 {
		t.Errorf("kube-proxy image: %d iptables modules, want the whole xtables directory", n)
	}
}
