// Package critest is a fake container runtime for tests: a CRI runtime
// service on a Unix socket in the test's temporary directory that answers
// RuntimeStatus with a NetworkReady condition the test sets (or an error,
// or no answer at all) and Version with a fixed name.
//
// It implements only what kindnet asks (RuntimeStatus, Version); every
// other call answers Unimplemented. It touches nothing but its own socket
// (`kindnet-lab fake-cri` serves it at a path of the caller's choosing).
package critest

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Name and Version are what the fake answers to CRI Version.
const (
	Name    = "fakerd"
	Version = "v9.9.9"
)

// Runtime is the fake runtime service; its answers can change while it
// runs.
type Runtime struct {
	runtimeapi.UnimplementedRuntimeServiceServer

	mu           sync.Mutex
	networkReady bool
	noCondition  bool
	reason, msg  string
	err          error
	hang         bool
	calls        int
}

// SetNetwork sets the NetworkReady condition RuntimeStatus reports.
func (f *Runtime) SetNetwork(ready bool, reason, message string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.networkReady, f.reason, f.msg, f.noCondition, f.err, f.hang = ready, reason, message, false, nil, false
}

// SetNoCondition makes RuntimeStatus report no NetworkReady condition.
func (f *Runtime) SetNoCondition() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noCondition, f.err, f.hang = true, nil, false
}

// SetError makes RuntimeStatus fail with err.
func (f *Runtime) SetError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err, f.hang = err, false
}

// SetHang makes RuntimeStatus wait until the caller gives up.
func (f *Runtime) SetHang(hang bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = hang
}

// Calls is how many times RuntimeStatus was asked.
func (f *Runtime) Calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Status answers RuntimeStatus.
func (f *Runtime) Status(ctx context.Context, _ *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	f.mu.Lock()
	f.calls++
	hang, err := f.hang, f.err
	conds := []*runtimeapi.RuntimeCondition{{Type: runtimeapi.RuntimeReady, Status: true}}
	if !f.noCondition {
		conds = append(conds, &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: f.networkReady, Reason: f.reason, Message: f.msg})
	}
	f.mu.Unlock()
	if hang {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, err
	}
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: conds}}, nil
}

// Version answers CRI Version.
func (f *Runtime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: Name, RuntimeVersion: Version, RuntimeApiVersion: "v1"}, nil
}

// Serve runs f on a Unix socket in a new temporary directory of t and
// returns its unix:// URL. It stops (and its socket goes) at test end.
func Serve(t testing.TB, f *Runtime) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "cri.sock")
	stop, err := Listen(sock, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return "unix://" + sock
}

// Listen runs f on a Unix socket at path, mode 0660 like containerd's and
// CRI-O's, until stop is called (which removes the socket).
func Listen(path string, f *Runtime) (stop func(), err error) {
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	srv := grpc.NewServer()
	runtimeapi.RegisterRuntimeServiceServer(srv, f)
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	return func() { srv.Stop(); <-done }, nil
}
