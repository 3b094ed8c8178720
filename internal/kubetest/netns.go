package kubetest

import (
	"context"
	"fmt"
	"net"

	"github.com/containernetworking/plugins/pkg/ns"
)

// DialInNetNS returns a dialer whose sockets are created inside the named
// network namespace: a socket stays in the namespace it was created in, so
// the test process can talk to a server that only listens in there without
// any route or address being added anywhere.
func DialInNetNS(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		target, err := ns.GetNS(path)
		if err != nil {
			return nil, fmt.Errorf("open netns %s: %w", path, err)
		}
		defer target.Close()
		// Do dials on a goroutine of its own locked to an OS thread inside
		// the namespace, and switches that thread back afterwards.
		var c net.Conn
		err = target.Do(func(ns.NetNS) error {
			var err error
			c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}
