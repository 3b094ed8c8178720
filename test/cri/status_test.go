package cri

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// The defect of issue 13, reproduced with a real containerd 2.x: it
// started before any CNI config was in its conf dir and never loaded
// kindnet's, so it reports NetworkReady=false ("cni plugin not
// initialized") while kindnet's agent has written its config. kindnet
// status must say so — down, naming both sides — and turn healthy once
// containerd loads the config.
//
// containerd reads its own, empty conf dir here, not the one the agent
// writes to: whether containerd notices a file the agent writes is
// another test's business (the atomic write), and this one must not
// depend on it. The config appears in containerd's dir when the test
// copies it there.
func TestStatusShowsThatContainerdHasNotLoadedTheCNIConfig(t *testing.T) {
	f := containerd2(containerd2D)
	requireTools(t, f)
	d := newDaemon(t, f)
	l := newLab(t, f, "--cri-endpoint", "unix://"+d.sock())
	n1 := l.Nodes[0]
	runtimeConfDir := filepath.Join(d.dir, "net.d")
	if err := os.MkdirAll(runtimeConfDir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.start(n1, runtimeConfDir, filepath.Join(binDir, "kindnet-cni"))

	ok, msg, err := d.networkReady()
	if err != nil || ok || !strings.Contains(msg, "cni plugin not initialized") {
		t.Fatalf("containerd with an empty conf dir: NetworkReady %v %q %v, want false, cni plugin not initialized", ok, msg, err)
	}
	var rec status.Record
	var code int
	// The agent asks every 3s while the runtime is not ready; the verdict
	// is down once the config is 15s old (status.RuntimeGrace).
	err = eventually(45*time.Second, func() error {
		code, rec = statusJSON(t, l, n1)
		if rec.Runtime.State != status.RuntimeNotReady || rec.Verdict.State != status.Down {
			return fmt.Errorf("exit %d, verdict %q, runtime %+v", code, rec.Verdict, rec.Runtime)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("kindnet status while containerd has no CNI config: %v", err)
	}
	want := "but containerd reports NetworkReady=false: NetworkPluginNotReady: Network plugin returns error: cni plugin not initialized"
	if code != status.ExitDown || len(rec.Verdict.Reasons) != 1 || !strings.HasPrefix(rec.Verdict.Reasons[0], "CNI config written ") ||
		!strings.HasSuffix(rec.Verdict.Reasons[0], want) || rec.Runtime.Endpoint != "unix://"+d.sock() || rec.Runtime.Name != "containerd" {
		t.Errorf("exit %d, verdict %q, runtime %+v; want exit 2 and %q", code, rec.Verdict, rec.Runtime, want)
	}
	_, human := kindnetStatus(t, l, n1)
	t.Logf("kindnet status:\n%s", human)
	for _, w := range []string{"runtime  containerd 2.4.2", "NetworkReady=false since", "hint: is " + filepath.Dir(n1.CNIConfPath())} {
		if !strings.Contains(human, w) {
			t.Errorf("kindnet status lacks %q", w)
		}
	}

	conf, err := os.ReadFile(n1.CNIConfPath())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(runtimeConfDir, filepath.Base(n1.CNIConfPath())), conf, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := eventually(20*time.Second, func() error {
		if ok, msg, err := d.networkReady(); err != nil || !ok {
			return fmt.Errorf("NetworkReady %v %q %v", ok, msg, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("containerd after the config appeared in its conf dir: %v", err)
	}
	err = eventually(30*time.Second, func() error {
		code, rec = statusJSON(t, l, n1)
		if rec.Runtime.State != status.RuntimeReady || code != status.ExitHealthy {
			return fmt.Errorf("exit %d, verdict %q, runtime %+v", code, rec.Verdict, rec.Runtime)
		}
		return nil
	})
	if err != nil {
		t.Errorf("kindnet status once containerd loaded the config: %v", err)
	}
}

// kindnetStatus runs `kindnet status` for a node as an operator on that
// node would: inside its namespace, with its config. It returns the exit
// code and stdout.
func kindnetStatus(t *testing.T, l *lab.Lab, n *lab.Node, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	argv := append([]string{"netns", "exec", n.NS, l.Opts.Kindnet, "status", "--config", n.ConfigPath()}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")} // no KINDNET_* of the caller
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatalf("kindnet status for %s: %v\n%s", n.Name, err, stderr.String())
	return -1, ""
}

func statusJSON(t *testing.T, l *lab.Lab, n *lab.Node) (int, status.Record) {
	t.Helper()
	code, out := kindnetStatus(t, l, n, "-o", "json")
	var rec status.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("kindnet status -o json for %s: %v\n%s", n.Name, err, out)
	}
	return code, rec
}
