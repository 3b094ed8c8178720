// Package netnstest is the one shared helper for tests that touch the
// kernel: it creates throwaway network namespaces with unique names and
// removes them when the test ends, also when it fails. Tests that need root
// skip with a clear message when not run as root.
//
// It never changes the network namespace the test process runs in.
package netnstest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

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

// RequireRoot skips the test unless it runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces: run `sudo make test`")
	}
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
		t.Fatalf("create netns %s: %v", name, err)
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

// create makes the namespace without leaving the calling thread in it.
func create(name string) (*NS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return nil, err
	}
	defer orig.Close()
	h, err := netns.NewNamed(name) // switches this thread into it
	if serr := netns.Set(orig); serr != nil {
		// The thread is stuck in the wrong namespace: never let Go reuse it.
		panic(fmt.Sprintf("netnstest: cannot return to the original netns: %v", serr))
	}
	if err != nil {
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
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(n.Handle); err != nil {
			errc <- err
			return
		}
		errc <- f()
		if err := netns.Set(orig); err == nil {
			runtime.UnlockOSThread()
		}
	}()
	return <-errc
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
