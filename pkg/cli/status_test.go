package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// statusEnv is a config whose every path is under a temp dir.
type statusEnv struct {
	dir, config string
}

func newStatusEnv(t *testing.T) statusEnv {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf("nodeName: a\nnodesFile: /nonexistent/nodes.yaml\nrunDir: %s/run\nstateDir: %s/state\ncni:\n  confDir: %s/cni\n", dir, dir, dir)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return statusEnv{dir: dir, config: cfg}
}

// agent serves a record on the env's socket, as the agent would.
func (s statusEnv) agent(t *testing.T, change func(r *status.Record)) *status.Store {
	t.Helper()
	st := status.NewStore("1.2.3", time.Now().Add(-time.Minute))
	st.Update(func(r *status.Record) {
		r.Node = status.Node{Name: "a", PodCIDRs: []string{"10.244.1.0/24"}}
		r.Source = status.Source{Name: "nodes file", Healthy: true, Synced: true, LastEvent: time.Now().Add(-time.Hour)} // relative times stay put during a test
		r.CNI = status.CNI{Path: s.dir + "/cni/10-kindnet.conflist", Present: true}
		r.Masquerade = status.Masq{Enabled: true, Table: "kindnet", Present: true}
		r.Peers = []status.Peer{{Name: "b", State: status.PeerRouted, PodCIDRs: []string{"10.244.2.0/24"}}}
		r.Bootstrapped, r.Ready = true, true
		if change != nil {
			change(r)
		}
	})
	ln, err := status.Listen(filepath.Join(s.dir, "run", "kindnet.sock"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = (&status.Server{Store: st}).Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return st
}

func run(stdout io.Writer, environ []string, args ...string) (int, string) {
	var errb bytes.Buffer
	code := Execute(args, stdout, &errb, environ)
	return code, errb.String()
}

func TestStatusUsageAndConfigErrors(t *testing.T) {
	env := newStatusEnv(t)
	bad := filepath.Join(env.dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("nodeName: a\nnodesFile: /n\ncni:\n  mtu: big\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"status", "--config", env.config, "-o", "yaml"}, ExitUsage, `--output "yaml": expected json or wide`},
		{[]string{"status", "--config", env.config, "-q", "-o", "json"}, ExitUsage, "-q prints nothing"},
		{[]string{"status", "--config", env.config, "-q", "--watch"}, ExitUsage, "-q prints nothing"},
		{[]string{"status", "--no-such-flag"}, ExitUsage, "unknown flag"},
		{[]string{"status", "extra-arg"}, ExitUsage, "unknown command"},
		{[]string{"status", "--config", bad}, ExitStatusConfig, "cni.mtu"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		code, stderr := run(&out, nil, c.args...)
		if code != c.code || !strings.Contains(stderr, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, stderr, c.code, c.msg)
		}
	}
}

func TestStatusExitCodeFollowsTheVerdict(t *testing.T) {
	cases := []struct {
		name   string
		change func(r *status.Record)
		code   int
		want   []string
	}{
		{"healthy", nil, 0, []string{"healthy\n", "b     routed"}},
		{"rejected peer", func(r *status.Record) {
			r.Peers = append(r.Peers, status.Peer{Name: "evil", State: status.PeerRejected, Reason: "podCIDR 0.0.0.0/0 is a default route"})
		}, 1, []string{"degraded: 1 peer rejected (evil)", "podCIDR 0.0.0.0/0 is a default route"}},
		{"no CNI config", func(r *status.Record) { r.CNI.Present = false }, 2, []string{"down: no CNI config"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := newStatusEnv(t)
			env.agent(t, c.change)
			var out bytes.Buffer
			code, stderr := run(&out, nil, "status", "--config", env.config)
			if code != c.code || stderr != "" {
				t.Fatalf("exit %d stderr %q, want %d and nothing", code, stderr, c.code)
			}
			for _, w := range c.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if strings.Contains(out.String(), "\x1b[") {
				t.Errorf("colour codes written to a non-terminal:\n%q", out.String())
			}
			out.Reset()
			if code, _ := run(&out, nil, "status", "--config", env.config, "-q"); code != c.code || out.Len() != 0 {
				t.Errorf("-q: exit %d output %q", code, out.String())
			}
			out.Reset()
			if code, _ := run(&out, nil, "status", "--config", env.config, "-o", "json"); code != c.code {
				t.Errorf("-o json: exit %d", code)
			}
			var rec status.Record
			if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec.SchemaVersion != status.SchemaVersion ||
				!rec.Agent.Running || rec.Verdict.ExitCode() != c.code {
				t.Errorf("-o json: %v %+v", err, rec)
			}
		})
	}
}

func TestStatusWithoutAgentInspectsTheHostAndSaysDown(t *testing.T) {
	ns := netnstest.New(t) // host facts come from a throwaway namespace
	env := newStatusEnv(t)
	var out bytes.Buffer
	var code int
	var stderr string
	if err := ns.Do(func() error {
		code, stderr = run(&out, nil, "status", "--config", env.config, "-o", "wide")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if code != status.ExitDown {
		t.Fatalf("exit %d (stderr %q), want 2", code, stderr)
	}
	for _, w := range []string{"down: agent not running (no socket at " + env.dir + "/run/kindnet.sock); no CNI config",
		"0 kindnet routes on the host", "no cache at " + env.dir + "/state/cluster-view.json", "table inet kindnet absent"} {
		if !strings.Contains(out.String(), w) {
			t.Errorf("output lacks %q:\n%s", w, out.String())
		}
	}
}

// openPTY returns the master and slave ends of a new pseudo-terminal.
func openPTY(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals here: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err == nil {
		err = unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0)
	}
	if err != nil {
		m.Close()
		t.Skipf("cannot unlock a pseudo-terminal: %v", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		t.Skipf("cannot open the pseudo-terminal's slave: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m, s
}

func TestStatusColoursOnlyOnATerminalWithoutNoColor(t *testing.T) {
	env := newStatusEnv(t)
	env.agent(t, nil)
	for _, c := range []struct {
		environ []string
		colour  bool
	}{
		{nil, true},
		{[]string{"NO_COLOR=1"}, false},
		{[]string{"TERM=dumb"}, false},
	} {
		master, slave := openPTY(t)
		code, stderr := run(slave, c.environ, "status", "--config", env.config)
		slave.Close()
		out, _ := io.ReadAll(master) // ends with EIO once the slave is closed
		if code != 0 {
			t.Fatalf("exit %d: %s", code, stderr)
		}
		if got := bytes.Contains(out, []byte("\x1b[32mhealthy")); got != c.colour {
			t.Errorf("environ %v: coloured = %v, want %v:\n%q", c.environ, got, c.colour, out)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestStatusWatchRedrawsOnChange(t *testing.T) {
	env := newStatusEnv(t)
	st := env.agent(t, nil)
	out := &syncBuffer{}
	root := NewRoot(out, io.Discard, nil)
	root.SetArgs([]string{"status", "--config", env.config, "--watch"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx) }()

	waitFor := func(what string, cond func(string) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond(out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("watch never showed %s:\n%s", what, out.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the first frame", func(s string) bool { return strings.HasPrefix(s, "healthy\n") })
	st.Update(func(r *status.Record) {
		r.Peers = append(r.Peers, status.Peer{Name: "evil", State: status.PeerRejected, Reason: "podCIDR 0.0.0.0/0 is a default route"})
	})
	waitFor("a second frame after the change", func(s string) bool { return strings.Contains(s, "\ndegraded: 1 peer rejected (evil)") })
	// A change that does not alter the view draws nothing new.
	frames := strings.Count(out.String(), "PEER ")
	st.Update(func(r *status.Record) {})
	time.Sleep(200 * time.Millisecond)
	if got := strings.Count(out.String(), "PEER "); got != frames {
		t.Errorf("%d frames after an invisible change, want %d", got, frames)
	}
	cancel()
	err := <-done
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Fatalf("watch ended with %v, want exit code 1 (the last verdict)", err)
	}
}
