package images

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
)

// The Debian programs the images carry, with the packages `make deps`
// installs them from.
var (
	busybox = program{path: "/bin/busybox", pkg: "busybox-static"}
	// dash is /bin/sh where Debian programs are: Debian's static busybox
	// is built to prefer its own applets, so its sh runs busybox's nc
	// (no -u) and wget (crashes on -T) for `nc` and `wget` whatever PATH
	// says, once /proc is mounted, as it is in every container.
	dash     = program{path: "/bin/dash", pkg: "dash", as: []string{"sh"}}
	getent   = program{path: "/usr/bin/getent", pkg: "libc-bin"}
	dnsTools = []program{
		{path: "/usr/bin/dig", pkg: "bind9-dnsutils"},
		{path: "/usr/bin/nslookup", pkg: "bind9-dnsutils"},
	}
	// What the network tests shell out to in agnhost pods besides DNS:
	// nc -u (busybox's nc has no UDP), curl, wget -T (busybox 1.35's
	// crashes with -T: Debian bookworm's busybox-static segfaults on
	// `wget -T 1`), ip, ss, socat.
	netTools = []program{
		{path: "/usr/bin/wget", pkg: "wget"},
		{path: "/usr/bin/nc.openbsd", pkg: "netcat-openbsd", as: []string{"nc"}},
		{path: "/usr/bin/curl", pkg: "curl"},
		{path: "/bin/ip", pkg: "iproute2"},
		{path: "/bin/ss", pkg: "iproute2"},
		{path: "/usr/bin/socat", pkg: "socat"},
	}
)

// Files the Debian programs read at run time.
const (
	servicesFile  = "/etc/services"  // netbase: port names (nc, socat, getent)
	protocolsFile = "/etc/protocols" // netbase
	caFile        = "/etc/ssl/certs/ca-certificates.crt"
)

// nsswitch makes glibc's getent and resolver read /etc/hosts then DNS,
// and users and groups from /etc/passwd and /etc/group.
const nsswitch = `passwd:         files
group:          files
shadow:         files
hosts:          files dns
networks:       files
protocols:      files
services:       files
ethers:         files
rpc:            files
netgroup:       files
`

// account is a user with a group of the same name and id.
type account struct {
	name string
	id   int
}

// base starts a layer as a Debian root starts: /bin, /sbin, /lib and
// /lib64 as the host has them (on a merged-/usr Debian, symlinks into
// /usr, which the loader path in every Debian binary goes through), /tmp
// and /var/tmp sticky, /root, and /etc/passwd and /etc/group with root,
// nobody and the given users. extraGroups lines are appended to
// /etc/group as they are.
func base(users []account, extraGroups ...string) (*Layer, error) {
	l := NewLayer()
	for _, d := range []string{"/bin", "/sbin", "/lib", "/lib64"} {
		if err := mirrorIfPresent(l, d); err != nil {
			return nil, err
		}
	}
	sticky := fs.ModeSticky | 0o777
	for d, mode := range map[string]fs.FileMode{"/tmp": sticky, "/var/tmp": sticky, "/root": 0o700, "/etc": 0o755, "/usr/bin": 0o755, "/usr/sbin": 0o755} {
		if err := l.Dir(d, mode); err != nil {
			return nil, err
		}
	}
	passwd := "root:x:0:0:root:/root:/bin/sh\n"
	group := "root:x:0:\n"
	for _, u := range users {
		home := "/home/" + u.name
		passwd += u.name + ":x:" + strconv.Itoa(u.id) + ":" + strconv.Itoa(u.id) + "::" + home + ":/bin/sh\n"
		group += u.name + ":x:" + strconv.Itoa(u.id) + ":\n"
		if err := l.DirOwned(home, 0o755, u.id, u.id); err != nil {
			return nil, err
		}
	}
	passwd += "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group += strings.Join(extraGroups, "") + "nogroup:x:65534:\n"
	if err := l.File("/etc/passwd", 0o644, []byte(passwd)); err != nil {
		return nil, err
	}
	if err := l.File("/etc/group", 0o644, []byte(group)); err != nil {
		return nil, err
	}
	return l, nil
}

// toolbox adds busybox with its applets for the shell and coreutils, and
// progs, skipping the applets progs provide; with progs (Debian's, linked
// against glibc), also dash as sh (see dash) and what glibc reads to
// resolve names and users: nsswitch.conf, the NSS modules, netbase's
// services and protocols.
func toolbox(ctx context.Context, l *Layer, progs ...program) error {
	if len(progs) > 0 {
		progs = append([]program{dash}, progs...)
	}
	provided := map[string]bool{}
	for _, p := range append([]program{busybox}, progs...) {
		cmds, err := addProgram(ctx, l, p)
		if err != nil {
			return err
		}
		for _, c := range cmds {
			provided[c] = true
		}
	}
	if len(progs) > 0 {
		if err := glibcRuntime(ctx, l, progs[0]); err != nil {
			return err
		}
	}
	return busyboxApplets(ctx, l, busybox.path, provided)
}

// glibcRuntime adds nsswitch.conf, the files and dns NSS modules from the
// directory of the libc that p is linked against, and netbase's files.
func glibcRuntime(ctx context.Context, l *Layer, p program) error {
	if err := l.File("/etc/nsswitch.conf", 0o644, []byte(nsswitch)); err != nil {
		return err
	}
	for _, f := range []string{servicesFile, protocolsFile} {
		if err := l.Mirror(f); err != nil {
			return missing(f, "netbase", err)
		}
	}
	libs, err := sharedLibraries(ctx, p.path)
	if err != nil {
		return fmt.Errorf("%s (Debian's %s): %w", p.path, p.pkg, err)
	}
	for _, lib := range libs {
		if filepath.Base(lib) != "libc.so.6" {
			continue
		}
		for _, m := range []string{"libnss_files.so.2", "libnss_dns.so.2"} {
			if err := mirrorIfPresent(l, filepath.Join(filepath.Dir(lib), m)); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("%s is not linked against glibc's libc.so.6", p.path)
}

func pauseImage(_ context.Context, in inputs) (Image, error) {
	l := NewLayer()
	if err := l.File("/pause", 0o755, in.pause); err != nil {
		return Image{}, err
	}
	// Upstream's pause runs as 65535:65535 too: it needs no privilege.
	return Image{Ref: PauseRef, Layer: l, Entrypoint: []string{"/pause"}, User: "65535:65535"}, nil
}

// agnhostImage: see the package doc.
func agnhostImage(ctx context.Context, in inputs) (Image, error) {
	l, err := base([]account{{"user-defined-in-image", 1000}},
		"group-defined-in-image:x:50000:user-defined-in-image\n")
	if err != nil {
		return Image{}, err
	}
	progs := append(append([]program{getent}, dnsTools...), netTools...)
	if err := toolbox(ctx, l, progs...); err != nil {
		return Image{}, err
	}
	if err := l.Mirror(caFile); err != nil {
		return Image{}, missing(caFile, "ca-certificates", err)
	}
	porter := filepath.Join(in.k8s, "test", "images", "agnhost", "porter")
	for _, f := range []struct {
		at, src string
		mode    fs.FileMode
	}{
		{"/agnhost", in.agnhost, 0o755},
		{"/coredns", in.coredns, 0o755},
		{"/localhost.crt", filepath.Join(porter, "localhost.crt"), 0o644},
		{"/localhost.key", filepath.Join(porter, "localhost.key"), 0o644},
	} {
		if err := l.HostFile(f.at, f.src, f.mode); err != nil {
			return Image{}, err
		}
	}
	if err := l.Symlink("/agnhost-2", "agnhost"); err != nil {
		return Image{}, err
	}
	if err := l.Dir("/uploads", 0o755); err != nil {
		return Image{}, err
	}
	return Image{Ref: AgnhostRef, Layer: l, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"}}, nil
}

// glibcDNSTestingImage: see the package doc.
func glibcDNSTestingImage(ctx context.Context, _ inputs) (Image, error) {
	l, err := base(nil)
	if err != nil {
		return Image{}, err
	}
	if err := toolbox(ctx, l, append([]program{getent}, dnsTools...)...); err != nil {
		return Image{}, err
	}
	return Image{Ref: GlibcDNSTestingRef, Layer: l, Cmd: []string{"sh"}}, nil
}

// nginxWelcome is the page upstream's nginx serves at /, shortened.
const nginxWelcome = `<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>A stand-in for the e2e nginx image: busybox httpd, built by kindnet's test/cluster/images.</p>
</body>
</html>
`

// nginxImage: see the package doc.
func nginxImage(ctx context.Context, _ inputs) (Image, error) {
	l, err := base([]account{{"nginx", 101}})
	if err != nil {
		return Image{}, err
	}
	if err := toolbox(ctx, l); err != nil {
		return Image{}, err
	}
	if err := l.File("/usr/share/nginx/html/index.html", 0o644, []byte(nginxWelcome)); err != nil {
		return Image{}, err
	}
	return Image{Ref: NginxRef, Layer: l,
		Cmd: []string{"httpd", "-f", "-v", "-p", "80", "-h", "/usr/share/nginx/html"}}, nil
}

// busyboxImage: see the package doc.
func busyboxImage(ctx context.Context, _ inputs) (Image, error) {
	l, err := base(nil)
	if err != nil {
		return Image{}, err
	}
	if err := toolbox(ctx, l); err != nil {
		return Image{}, err
	}
	return Image{Ref: BusyBoxRef, Layer: l, Cmd: []string{"sh"}}, nil
}

// corednsImage: see the package doc.
func corednsImage(_ context.Context, in inputs) (Image, error) {
	l := NewLayer()
	if err := l.HostFile("/coredns", in.coredns, 0o755); err != nil {
		return Image{}, err
	}
	return Image{Ref: CoreDNSRef, Layer: l, Entrypoint: []string{"/coredns"}}, nil
}
