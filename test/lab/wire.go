package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// WirePod creates a pod namespace on node n and wires it with the plugin
// the node's conflist names, like AddPod, but from this process: the
// namespace is made with netns calls and libcni runs the plugin on a thread
// inside the node's namespace, as containerd runs it, instead of through
// `ip` and `kindnet-lab cni` processes. Only the plugin is a new process,
// which is what lets a soak churn many pods per second on a small machine.
//
// The pod is not recorded in n.Pods: the caller owns it (several
// goroutines may wire pods at once) and removes it with UnwirePod.
func (l *Lab) WirePod(ctx context.Context, n *Node, name string) (*Pod, error) {
	p := &Pod{Name: name, Node: n.Name, NS: fmt.Sprintf("%s-%s-%s", l.ID, strings.TrimPrefix(n.NS, l.ID+"-"), name)}
	if err := newNamedNS(p.NS); err != nil {
		return nil, fmt.Errorf("create pod namespace %s: %w", p.NS, err)
	}
	list, rt, cni, err := l.libcni(n, p)
	if err == nil {
		var res *types100.Result
		if res, err = addNetworkList(ctx, cni, list, rt); err == nil {
			for _, ip := range res.IPs {
				if a, ok := netip.AddrFromSlice(ip.Address.IP); ok {
					if a = a.Unmap(); a.Is4() {
						p.IPv4 = a
					} else {
						p.IPv6 = a
					}
				}
			}
		}
	}
	if err != nil {
		_ = netns.DeleteNamed(p.NS)
		return nil, fmt.Errorf("CNI ADD for pod %s on %s: %w", p.Name, n.Name, err)
	}
	return p, nil
}

// UnwirePod runs CNI DEL for a pod made by WirePod and deletes its
// namespace.
func (l *Lab) UnwirePod(ctx context.Context, p *Pod) error {
	n := l.Node(p.Node)
	if n == nil {
		return fmt.Errorf("pod %s: no node %s in the lab", p.Name, p.Node)
	}
	list, rt, cni, err := l.libcni(n, p)
	if err == nil {
		err = cni.DelNetworkList(ctx, list, rt)
	}
	if err != nil {
		return fmt.Errorf("CNI DEL for pod %s on %s: %w", p.Name, n.Name, err)
	}
	if err := netns.DeleteNamed(p.NS); err != nil {
		return fmt.Errorf("delete pod namespace %s: %w", p.NS, err)
	}
	return nil
}

func addNetworkList(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (*types100.Result, error) {
	res, err := cni.AddNetworkList(ctx, list, rt)
	if err != nil {
		return nil, err
	}
	return types100.NewResultFromResult(res)
}

// libcni loads the node's conflist and describes the pod as a runtime does
// (the same arguments `kindnet-lab cni` passes).
func (l *Lab) libcni(n *Node, p *Pod) (*libcni.NetworkConfigList, *libcni.RuntimeConf, *libcni.CNIConfig, error) {
	list, err := libcni.ConfListFromFile(n.CNIConfPath())
	if err != nil {
		return nil, nil, nil, err
	}
	rt := &libcni.RuntimeConf{ContainerID: p.NS, NetNS: "/run/netns/" + p.NS, IfName: "eth0",
		Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "lab"}, {"K8S_POD_NAME", p.Name}, {"K8S_POD_INFRA_CONTAINER_ID", p.NS}}}
	exec := &nsExec{RawExec: &invoke.RawExec{}, ns: n.NS}
	return list, rt, libcni.NewCNIConfigWithCacheDir([]string{l.Opts.CNIBinDir}, filepath.Join(n.Dir, "cni-cache"), exec), nil
}

// nsExec runs CNI plugins inside a node's namespace: the plugin is forked
// from a thread switched into it, so it starts there, as it would on a
// node whose runtime runs in the host namespace.
type nsExec struct {
	*invoke.RawExec
	version.PluginDecoder
	ns string
}

func (e *nsExec) ExecPlugin(ctx context.Context, plugin string, stdin []byte, env []string) ([]byte, error) {
	var out []byte
	err := InNetNS(e.ns, func() error {
		var err error
		out, err = e.RawExec.ExecPlugin(ctx, plugin, stdin, env)
		return err
	})
	return out, err
}

// InNetNS runs f on an OS thread switched into the named namespace
// (/run/netns/NAME): sockets f opens and processes it forks belong to that
// namespace; the calling goroutine's own thread never moves.
func InNetNS(name string, f func() error) error {
	return onOwnThread(func() error {
		target, err := netns.GetFromName(name)
		if err != nil {
			return fmt.Errorf("open netns %s: %w", name, err)
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			return fmt.Errorf("enter netns %s: %w", name, err)
		}
		return f()
	})
}

// newNamedNS creates /run/netns/NAME with loopback up.
func newNamedNS(name string) error {
	err := onOwnThread(func() error {
		h, err := netns.NewNamed(name) // moves this thread into it
		if err != nil {
			return err
		}
		h.Close()
		return loUp()
	})
	if err != nil {
		_ = netns.DeleteNamed(name)
	}
	return err
}

// onOwnThread runs f on a locked OS thread of its own, which f may switch
// into another network namespace; afterwards the thread returns to the
// namespace it started in, or, when it cannot, is never reused (it stays
// locked and exits with its goroutine).
func onOwnThread(f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		err = f()
		if serr := netns.Set(orig); serr == nil {
			runtime.UnlockOSThread()
		} else {
			err = errors.Join(err, fmt.Errorf("return to the original netns: %w", serr))
		}
		errc <- err
	}()
	return <-errc
}

// loUp brings up loopback in the calling thread's namespace.
func loUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	return netlink.LinkSetUp(lo)
}
