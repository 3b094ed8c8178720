package cni

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// openNetNS opens the pod's network namespace. What CNI_NETNS names must
// exist, be a network namespace and not be the plugin's own one; otherwise
// the error is 4 (invalid environment variable) naming CNI_NETNS. Work
// that must run on a thread inside it (writing /proc/sys/net) goes through
// its Do, which runs it on a goroutine of its own locked to an OS thread,
// and leaves that thread to die if it cannot be switched back.
func openNetNS(path string) (ns.NetNS, *types.Error) {
	bad := func(why string) *types.Error {
		return types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_NETNS=%s: %s", path, why), "")
	}
	if path == "" {
		return nil, bad("no network namespace given")
	}
	podNS, err := ns.GetNS(path)
	var notExist ns.NSPathNotExistErr
	var notNS ns.NSPathNotNSErr
	switch {
	case errors.As(err, &notExist):
		return nil, bad("no such network namespace")
	case errors.As(err, &notNS):
		return nil, bad("not a network namespace")
	case err != nil:
		return nil, bad("cannot open: " + err.Error())
	}
	// GetNS takes any file on procfs too (/proc/self/status): only nsfs
	// is a namespace. The check is on the opened file, so what was checked
	// is what is used.
	h := netns.NsHandle(podNS.Fd())
	var st unix.Statfs_t
	if err := unix.Fstatfs(int(h), &st); err != nil || (st.Type != unix.NSFS_MAGIC) {
		podNS.Close()
		return nil, bad("not a network namespace")
	}
	self, err := netns.Get()
	if err == nil {
		same := self.Equal(h)
		self.Close()
		if same {
			podNS.Close()
			return nil, bad("this is the plugin's own network namespace, not a pod's")
		}
	}
	return podNS, nil
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
