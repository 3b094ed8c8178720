package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// NotifySink stands in for systemd's side of sd_notify for one agent: it
// listens on a unixgram socket (the agent's NOTIFY_SOCKET) and appends
// every line of every message, timestamped, to out ("<RFC3339> READY=1").
// Like systemd it keeps listening after READY=1, so the agent's later
// STATUS= lines are recorded (and shown by status) instead of failing.
// It runs until ctx ends, then removes the socket.
func NotifySink(ctx context.Context, socket, out string) error {
	_ = os.Remove(socket)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("listen on notify socket %s: %w", socket, err)
	}
	defer os.Remove(socket)
	defer conn.Close()
	f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			return fmt.Errorf("read notify socket: %w", err)
		}
		now := time.Now().UTC().Format(time.RFC3339Nano)
		for _, line := range strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n") {
			if _, err := fmt.Fprintf(f, "%s %s\n", now, line); err != nil {
				return err
			}
		}
	}
	return nil
}
