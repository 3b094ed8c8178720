package kubetest

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// A listener that exists only inside a namespace is reached through the
// dialer: from the test's own namespace, 127.0.0.1 is another host.
func TestDialInNetNSReachesAListenerOnlyInThatNamespace(t *testing.T) {
	n := netnstest.New(t)
	var l net.Listener
	if err := n.Do(func() error {
		var err error
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen inside %s: %v", n.Name, err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			_, _ = c.Write([]byte("inside"))
			c.Close()
		}
	}()
	c, err := DialInNetNS(n.Path())(context.Background(), "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("dial %s in %s: %v", l.Addr(), n.Name, err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "inside" {
		t.Fatalf("read %q, %v; want %q", got, err, "inside")
	}
	if _, err := DialInNetNS(n.Path()+"-missing")(context.Background(), "tcp", l.Addr().String()); err == nil {
		t.Fatal("dial in a namespace that does not exist succeeded")
	}
}
