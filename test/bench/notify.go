package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// notifySocket stands in for systemd: the agent's sd_notify messages
// arrive on this unixgram socket (NOTIFY_SOCKET), each timestamped when it
// is read.
type notifySocket struct {
	Path string
	conn *net.UnixConn
}

func listenNotify(path string) (*notifySocket, error) {
	_ = os.Remove(path)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("listen on notify socket %s: %w", path, err)
	}
	return &notifySocket{Path: path, conn: c}, nil
}

// Env is the environment variable that points the agent at the socket.
func (s *notifySocket) Env() string { return "NOTIFY_SOCKET=" + s.Path }

func (s *notifySocket) Close() {
	s.conn.Close()
	_ = os.Remove(s.Path)
}

// waitReady reads messages until one holds READY=1 and returns when it
// arrived. exited, when it fires first, means the agent died.
func (s *notifySocket) waitReady(ctx context.Context, timeout time.Duration, exited func() bool) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 4096)
	for {
		if err := ctx.Err(); err != nil {
			return time.Time{}, err
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no READY=1 within %s", timeout)
		}
		// Short reads keep ctx and the agent's exit observed.
		_ = s.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := s.conn.Read(buf)
		at := time.Now()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				if exited != nil && exited() {
					return time.Time{}, errors.New("the agent exited before READY=1")
				}
				continue
			}
			return time.Time{}, err
		}
		for _, line := range strings.Split(string(buf[:n]), "\n") {
			if line == "READY=1" {
				return at, nil
			}
		}
	}
}
