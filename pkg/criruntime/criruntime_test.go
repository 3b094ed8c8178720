package criruntime

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"

	"github.com/kindnet-dev/kindnet/internal/critest"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

func TestCheckReadsNetworkReady(t *testing.T) {
	cases := []struct {
		name         string
		set          func(f *critest.Runtime)
		state        string
		ready        bool
		reason, msg  string
		errSubstring string
	}{
		{"ready", func(f *critest.Runtime) { f.SetNetwork(true, "", "") }, status.RuntimeReady, true, "", "", ""},
		{"not ready", func(f *critest.Runtime) {
			f.SetNetwork(false, "NetworkPluginNotReady", "Network plugin returns error: cni plugin not initialized")
		}, status.RuntimeNotReady, false, "NetworkPluginNotReady", "Network plugin returns error: cni plugin not initialized", ""},
		{"no NetworkReady condition reads as not ready, as kubelet reads it", (*critest.Runtime).SetNoCondition,
			status.RuntimeNotReady, false, "", "the runtime reports no NetworkReady condition", ""},
		{"an error is no answer", func(f *critest.Runtime) { f.SetError(grpcstatus.Error(codes.Internal, "boom")) },
			status.RuntimeUnanswered, false, "", "", "Internal: boom"},
		{"a runtime that hangs is no answer", func(f *critest.Runtime) { f.SetHang(true) },
			status.RuntimeUnanswered, false, "", "", "no answer within 300ms"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := &critest.Runtime{}
			c.set(f)
			ep := critest.Serve(t, f)
			start := time.Now()
			rt := Checker{Endpoints: []string{ep}, Timeout: 300 * time.Millisecond}.Check(context.Background())
			t.Logf("%s: reason %q message %q error %q", rt.State, rt.Reason, rt.Message, rt.Error)
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("check took %s, past its 300ms timeout", took)
			}
			if rt.State != c.state || rt.NetworkReady != c.ready || rt.Reason != c.reason || rt.Message != c.msg || rt.Endpoint != ep {
				t.Errorf("got %+v, want state %s ready %v reason %q message %q endpoint %s", rt, c.state, c.ready, c.reason, c.msg, ep)
			}
			if !strings.Contains(rt.Error, c.errSubstring) || (c.errSubstring == "") != (rt.Error == "") {
				t.Errorf("error %q, want %q", rt.Error, c.errSubstring)
			}
			if rt.State != status.RuntimeUnanswered && (rt.Name != critest.Name || rt.Version != critest.Version) {
				t.Errorf("name %q version %q, want the runtime's own", rt.Name, rt.Version)
			}
			if rt.Checked.IsZero() {
				t.Error("Checked not set")
			}
		})
	}
}

func TestCheckWithoutARuntime(t *testing.T) {
	dir := t.TempDir()
	missing := "unix://" + filepath.Join(dir, "gone.sock")

	// A socket nobody listens on any more (a crashed runtime).
	dead := filepath.Join(dir, "dead.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: dead, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	cases := []struct {
		name    string
		c       Checker
		state   string
		errWant string
		ep      string
	}{
		{"configured socket missing", Checker{Endpoints: []string{missing}}, status.RuntimeNoSocket,
			filepath.Join(dir, "gone.sock") + " does not exist", missing},
		{"auto finds none", Checker{Endpoints: []string{missing, "unix://" + filepath.Join(dir, "other.sock")}, Auto: true},
			status.RuntimeNotFound, "none of the well-known sockets is there", ""},
		{"nobody listens", Checker{Endpoints: []string{"unix://" + dead}}, status.RuntimeUnanswered,
			"connect: connection refused", "unix://" + dead},
		{"off", Checker{}, status.RuntimeDisabled, "", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt := c.c.Check(context.Background())
			t.Logf("%s: error %q", rt.State, rt.Error)
			if rt.State != c.state || !strings.Contains(rt.Error, c.errWant) || rt.Endpoint != c.ep || rt.NetworkReady {
				t.Errorf("got %+v, want state %s, error containing %q, endpoint %q", rt, c.state, c.errWant, c.ep)
			}
		})
	}
}

func TestAutoAsksTheFirstSocketThatExists(t *testing.T) {
	f := &critest.Runtime{}
	f.SetNetwork(true, "", "")
	ep := critest.Serve(t, f)
	missing := "unix://" + filepath.Join(t.TempDir(), "containerd.sock")
	rt := Checker{Endpoints: []string{missing, ep}, Auto: true}.Check(context.Background())
	if rt.State != status.RuntimeReady || rt.Endpoint != ep || !rt.Auto {
		t.Errorf("got %+v, want ready at %s (auto)", rt, ep)
	}
}

// The CNI plugin runs for every pod: gRPC and the CRI API must stay out of
// its packages.
func TestPluginPackagesDoNotLinkTheCRIClient(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not in PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", "../cni", "../ipam", "../hostport").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "google.golang.org/grpc") || strings.HasPrefix(dep, "k8s.io/cri-api") ||
			strings.HasSuffix(dep, "/pkg/criruntime") {
			t.Errorf("the CNI plugin's packages depend on %s", dep)
		}
	}
}
