// Package netnstest is the one shared helper for tests that touch the
// kernel: it creates throwaway network namespaces with unique names and
// removes them when the test ends, also when it fails. It never changes the
// network namespace the test process runs in.
//
// It also says which privilege a test needs, so that `make test-unit` runs
// every kernel test it can without root. Pick the weakest that is enough:
//
//   - nothing: a pure test (files in t.TempDir, parsing, models).
//   - [RequireRoot]: CAP_NET_ADMIN over network namespaces the test creates
//     with [New] — netlink links, addresses and routes, nftables tables,
//     /proc/sys/net, `ip netns exec`, listening on loopback there. Satisfied
//     by the host's root and equally by any user inside scripts/in-userns.sh
//     (`unshare -Urnm`, which `make test-unit` uses), where the process is
//     root of its own user namespace.
//   - [RequireHostRoot]: the real root of the host — mounts the test cannot
//     make in a private mount namespace, systemd, installing packages,
//     containerd and runc, chroot, files that must be owned by root or by
//     another user, running a program as another uid. Skips inside a user
//     namespace, saying why, and outside one when not root.
//
// A new kernel test calls [New] (which calls RequireRoot itself) and nothing
// else; it only needs RequireHostRoot for one of the reasons above, and then
// passes the reason.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NS is a throwaway network namespace.
type NS struct {
	Name   string
	Handle netns.NsHandle // open fd of the namespace
	NL     *netlink.Handle
}

// Fd returns the namespace's file descriptor as an int (for nftables).
func (n *NS) Fd() int { return int(n.Handle) }

// Path is the bind-mounted path of the namespace.
func (n *NS) Path() string { return "/run/netns/" + n.Name }

// RequireRoot skips the test unless it has CAP_NET_ADMIN over network
// namespaces it creates: it runs as root, either the host's or that of a
// user namespace (scripts/in-userns.sh, `make test-unit`).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs CAP_NET_ADMIN in network namespaces it creates: run `make test-unit` " +
			"(any user, in a user namespace) or `sudo make test`")
	}
}

// RequireHostRoot skips the test unless it runs as the host's real root,
// not root of a user namespace. why says what needs it ("boots systemd",
// "files owned by root"), and is shown when the test skips.
func RequireHostRoot(t testing.TB, why string) {
	t.Helper()
	switch {
	case os.Geteuid() != 0:
		t.Skipf("needs the host's root (%s): run `sudo make test`", why)
	case InUserNS():
		t.Skipf("needs the host's root (%s), not root of a user namespace: "+
			"skipped by `make test-unit`, run by `sudo make test`", why)
	}
}

// IsHostRoot reports whether the process is the host's real root (what
// RequireHostRoot asks for), for code that chooses rather than skips.
func IsHostRoot() bool { return os.Geteuid() == 0 && !InUserNS() }

// InUserNS reports whether the process runs in a user namespace other than
// the host's initial one. The initial namespace maps every uid to itself:
// its /proc/self/uid_map is the single line "0 0 4294967295"; any other map
// belongs to a namespace made by unshare -U or a container runtime.
func InUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false // no user namespaces in this kernel at all
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}

// UniqueName returns a short name unlikely to collide with another run
// (names of links are limited to 15 characters).
func UniqueName(prefix string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// New creates a named namespace with loopback up and registers its removal.
func New(t testing.TB) *NS {
	t.Helper()
	RequireRoot(t)
	name := UniqueName("kntest-")
	ns, err := create(name)
	if err != nil {
		hint := ""
		if InUserNS() {
			// Named namespaces are bind-mounted under /run/netns, which
			// root of a user namespace may only do in a mount namespace
			// of its own with its own /run: what in-userns.sh sets up.
			hint = " (in a user namespace, run the tests through scripts/in-userns.sh, " +
				"which gives them a private /run; plain `unshare -Urn` cannot mount there)"
		}
		t.Fatalf("create netns %s: %v%s", name, err, hint)
	}
	t.Cleanup(func() { ns.Close() })
	lo, err := ns.NL.LinkByName("lo")
	if err == nil {
		err = ns.NL.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("bring up lo in %s: %v", name, err)
	}
	return ns
}

// create makes the namespace without leaving the calling thread in it:
// netns.NewNamed switches the thread it runs on into the new namespace, so
// it runs inside ns.Do of the current namespace, on a goroutine of its own
// locked to an OS thread that Do switches back afterwards (and lets die if
// it cannot).
func create(name string) (*NS, error) {
	here, err := ns.GetCurrentNS()
	if err != nil {
		return nil, err
	}
	defer here.Close()
	var h netns.NsHandle
	err = here.Do(func(ns.NetNS) error {
		var err error
		h, err = netns.NewNamed(name)
		return err
	})
	if err != nil {
		if h.IsOpen() {
			h.Close()
			_ = netns.DeleteNamed(name)
		}
		return nil, err
	}
	nl, err := netlink.NewHandleAt(h)
	if err != nil {
		h.Close()
		_ = netns.DeleteNamed(name)
		return nil, err
	}
	return &NS{Name: name, Handle: h, NL: nl}, nil
}

// AddVeth creates a veth pair inside the namespace, name and name+"p", both
// up, and returns the first end: a link with carrier to hang addresses and
// routes on (this kernel may have no dummy driver).
func (n *NS) AddVeth(t testing.TB, name string) netlink.Link {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := n.NL.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: name + "p"}); err != nil {
		t.Fatalf("add veth %s in %s: %v", name, n.Name, err)
	}
	for _, l := range []string{name + "p", name} {
		link, err := n.NL.LinkByName(l)
		if err == nil {
			err = n.NL.LinkSetUp(link)
		}
		if err != nil {
			t.Fatalf("bring up %s in %s: %v", l, n.Name, err)
		}
	}
	link, err := n.NL.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// AddAddrs puts addresses ("192.168.50.1/24", "fd00:50::1/64") on link,
// without duplicate address detection so IPv6 ones are usable at once.
func (n *NS) AddAddrs(t testing.TB, link netlink.Link, cidrs ...string) {
	t.Helper()
	for _, c := range cidrs {
		addr, err := netlink.ParseAddr(c)
		if err != nil {
			t.Fatalf("address %q: %v", c, err)
		}
		addr.Flags = unix.IFA_F_NODAD
		if err := n.NL.AddrAdd(link, addr); err != nil {
			t.Fatalf("add %s to %s in %s: %v", c, link.Attrs().Name, n.Name, err)
		}
	}
}

// Close removes the namespace.
func (n *NS) Close() {
	n.NL.Close()
	n.Handle.Close()
	_ = netns.DeleteNamed(n.Name)
}

// Do runs f on an OS thread switched into the namespace (for /proc/sys and
// anything else that follows the calling thread's namespace).
func (n *NS) Do(f func() error) error {
	target, err := ns.GetNS(n.Path())
	if err != nil {
		return err
	}
	defer target.Close()
	return target.Do(func(ns.NetNS) error { return f() })
}

// Exec runs a command inside the namespace (`ip netns exec`), failing the
// test on error, and returns its combined output.
func (n *NS) Exec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.Run(args...)
	if err != nil {
		t.Fatalf("ip netns exec %s %s: %v\n%s", n.Name, strings.Join(args, " "), err, out)
	}
	return out
}

// Run runs a command inside the namespace and returns output and error.
func (n *NS) Run(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.Name}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
