package cni

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"runtime"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openNetNS opens the pod's network namespace. What CNI_NETNS names must
// exist, be a network namespace and not be the plugin's own one; otherwise
// the error is 4 (invalid environment variable) naming CNI_NETNS.
func openNetNS(path string) (netns.NsHandle, *types.Error) {
	bad := func(why string) *types.Error {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS=%s: %s", path, why), "")
	}
	if path == "" {
		return 0, bad("no network namespace given")
	}
	h, err := netns.GetFromPath(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, bad("no such network namespace")
	}
	if err != nil {
		return 0, bad("cannot open: " + err.Error())
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h), &st); err != nil || (st.Type != unix.NSFS_MAGIC) {
		h.Close()
		return 0, bad("not a network namespace")
	}
	self, err := netns.Get()
	if err == nil {
		same := self.Equal(h)
		self.Close()
		if same {
			h.Close()
			return 0, bad("this is the plugin's own network namespace, not a pod's")
		}
	}
	return h, nil
}

// inNetNS runs f on an OS thread switched into ns: /proc/sys/net follows
// the calling thread's namespace. If the thread cannot be switched back it
// stays locked, so Go retires it instead of reusing it.
func inNetNS(ns netns.NsHandle, f func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter pod network namespace: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		return errors.Join(ferr, fmt.Errorf("return to the host network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// sysctl is one per-link kernel parameter, e.g. "ipv6/conf/eth0/accept_dad".
type sysctl struct {
	key, value string
}

// setSysctls writes parameters under /proc/sys/net of the calling thread's
// namespace.
func setSysctls(list []sysctl) error {
	for _, s := range list {
		path := "/proc/sys/net/" + s.key
		if err := os.WriteFile(path, []byte(s.value), 0o644); err != nil {
			if errors.Is(err, fs.ErrNotExist) && strings.HasPrefix(s.key, "ipv6/") {
				return fmt.Errorf("set net.%s=%s: IPv6 is disabled in this network namespace, but the network has an IPv6 range", dotted(s.key), s.value)
			}
			return fmt.Errorf("set net.%s=%s: %w", dotted(s.key), s.value, err)
		}
	}
	return nil
}

func dotted(key string) string { return strings.ReplaceAll(key, "/", ".") }

// randomMAC returns a unicast, locally administered address.
func randomMAC() net.HardwareAddr {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	b[0] = (b[0] | 0x02) &^ 0x01
	return b
}
