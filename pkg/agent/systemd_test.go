package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// notifySocket listens where systemd would and returns each datagram.
func notifySocket(t *testing.T) (path string, next func() string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return path, func() string {
		t.Helper()
		buf := make([]byte, 4096)
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no datagram on the notify socket: %v", err)
		}
		return string(buf[:n])
	}
}

func TestSystemdNotifierSendsWhatSystemdExpects(t *testing.T) {
	path, next := notifySocket(t)
	t.Setenv("NOTIFY_SOCKET", path)
	var logs bytes.Buffer
	n := SystemdNotifier{Log: slog.New(slog.NewTextHandler(&logs, nil))}
	tests := []struct {
		name string
		call func()
		want string
	}{
		{"ready", n.Ready, "READY=1"},
		{"status", func() { n.Status("3 peers routed, CNI config ready, nodes file") }, "STATUS=3 peers routed, CNI config ready, nodes file"},
		{"status cannot smuggle a second assignment", func() { n.Status("1 peers routed\nREADY=1") }, "STATUS=1 peers routed READY=1"},
		{"watchdog", n.Watchdog, "WATCHDOG=1"},
		{"stopping says the network stays", n.Stopping, "STOPPING=1\nSTATUS=" + stoppingStatus},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.call()
			if got := next(); got != tt.want {
				t.Errorf("datagram = %q, want %q", got, tt.want)
			}
		})
	}
	if logs.Len() != 0 {
		t.Errorf("logged while every message was delivered:\n%s", logs.String())
	}
}

func TestSystemdNotifierOutsideSystemdIsSilent(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	var logs bytes.Buffer
	n := SystemdNotifier{Log: slog.New(slog.NewTextHandler(&logs, nil))}
	n.Ready()
	n.Status("x")
	n.Watchdog()
	n.Stopping()
	if logs.Len() != 0 {
		t.Errorf("logged outside systemd:\n%s", logs.String())
	}
}

func TestSystemdNotifierLogsALostReady(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "gone.sock"))
	var logs bytes.Buffer
	SystemdNotifier{Log: slog.New(slog.NewTextHandler(&logs, nil))}.Ready()
	if !strings.Contains(logs.String(), `msg="cannot notify systemd" message="READY=1"`) {
		t.Errorf("want a warning naming READY=1, got:\n%s", logs.String())
	}
}

// recorder is a Notifier that keeps the STATUS lines.
type recorder struct {
	mu     sync.Mutex
	status []string
}

func (r *recorder) Ready()    {}
func (r *recorder) Watchdog() {}
func (r *recorder) Stopping() {}
func (r *recorder) Status(l string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = append(r.status, l)
}

type namedSource string

func (s namedSource) Name() string                                   { return string(s) }
func (s namedSource) Run(context.Context, chan<- model.Update) error { return nil }

func TestStatusLineFollowsSourceHealthWithoutAReconcile(t *testing.T) {
	rec := &recorder{}
	a := &Agent{
		opts:     Options{Notifier: rec},
		log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		store:    status.NewStore("test", time.Now()),
		source:   namedSource("kubernetes"),
		rejected: map[string]string{},
	}
	view := model.View{Self: model.Node{Name: "node1"}}
	steps := []struct {
		name   string
		update model.Update
		want   []string // STATUS lines sent by this step
	}{
		{"first view", model.Update{View: &view}, []string{"0 peers routed, no CNI config, kubernetes"}},
		{"same view again: nothing new to say", model.Update{View: &view}, nil},
		{"API unreachable", model.Update{Err: errors.New("dial tcp 10.0.0.1:6443: connection refused")}, []string{"0 peers routed, no CNI config, kubernetes unhealthy"}},
		{"still unreachable", model.Update{Err: errors.New("dial tcp 10.0.0.1:6443: connection refused")}, nil},
		{"back", model.Update{View: &view}, []string{"0 peers routed, no CNI config, kubernetes"}},
	}
	for _, s := range steps {
		before := len(rec.status)
		a.apply(s.update)
		got := rec.status[before:]
		if strings.Join(got, "|") != strings.Join(s.want, "|") {
			t.Errorf("%s: STATUS lines %q, want %q", s.name, got, s.want)
		}
	}
}
