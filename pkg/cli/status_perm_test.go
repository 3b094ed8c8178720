package cli

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// helperEnv makes TestHelperProcessRunsTheCLI act as the kindnet binary.
const helperEnv = "CLI_TEST_HELPER" // not KINDNET_*: the config rejects unknown ones

// TestHelperProcessRunsTheCLI is not a test: started by another test with
// helperEnv set, it runs the CLI on the arguments after "--" and exits with
// its code, so that a test can run kindnet as another user.
func TestHelperProcessRunsTheCLI(t *testing.T) {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	os.Exit(Execute(flag.Args(), os.Stdout, os.Stderr, os.Environ()))
}

// As any user but root, kindnet status cannot open the agent's socket
// (mode 0600): it says so and exits 77, rather than inspecting the host
// and calling the agent down.
func TestStatusAsAnotherUserExitsNoPermission(t *testing.T) {
	netnstest.RequireHostRoot(t, "runs kindnet status as another uid")
	env := newStatusEnv(t)
	env.agent(t, nil)
	// Everything on the way open to others, so that only the socket's own
	// mode stands in the way.
	for _, p := range []string{filepath.Dir(env.dir), env.dir, filepath.Join(env.dir, "run")} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(env.config, 0o644); err != nil {
		t.Fatal(err)
	}
	// The test binary, copied out of go's private build directory so that
	// the other user can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(env.dir, "kindnet-cli.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(bin, "-test.run=^TestHelperProcessRunsTheCLI$", "--", "status", "--config", env.config)
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != ExitNoPermission {
		t.Fatalf("kindnet status as uid 65534: %v, want exit %d\nstdout:\n%s\nstderr:\n%s", err, ExitNoPermission, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "run kindnet status as root") {
		t.Errorf("stderr does not say what to do:\n%s", stderr.String())
	}

	// The same command as root answers from the agent.
	var out bytes.Buffer
	if code, _ := run(&out, nil, "status", "--config", env.config, "-q"); code != 0 {
		t.Errorf("as root: exit %d, want 0", code)
	}
}
