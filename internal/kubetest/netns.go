package kubetest

import (
	"context"
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// DialInNetNS returns a dialer whose sockets are created inside the named
// network namespace: a socket stays in the namespace it was created in, so
// the test process can talk to a server that only listens in there without
// any route or address being added anywhere.
func DialInNetNS(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				ch <- result{nil, err}
				return // the locked thread exits with this goroutine
			}
			defer orig.Close()
			target, err := netns.GetFromPath(path)
			if err != nil {
				ch <- result{nil, fmt.Errorf("open netns %s: %w", path, err)}
				return
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				ch <- result{nil, fmt.Errorf("enter netns %s: %w", path, err)}
				return
			}
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			ch <- result{c, err}
			if netns.Set(orig) == nil {
				runtime.UnlockOSThread() // back home: the thread may be reused
			}
		}()
		r := <-ch
		return r.c, r.err
	}
}
