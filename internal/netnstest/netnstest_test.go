package netnstest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// TestHelperReportsPrivilege is run by the test below in a child process;
// alone it does nothing.
func TestHelperReportsPrivilege(t *testing.T) {
	if os.Getenv("NETNSTEST_HELPER") != "1" {
		t.Skip("helper process for TestRootOfAUserNamespaceIsNotTheHostsRoot")
	}
	t.Logf("inUserNS=%v isHostRoot=%v", netnstest.InUserNS(), netnstest.IsHostRoot())
	netnstest.RequireHostRoot(t, "checking the message")
}

// Root of a user namespace passes RequireRoot (New works there) but is not
// the host's root: RequireHostRoot skips naming the reason and the target
// that runs the test.
func TestRootOfAUserNamespaceIsNotTheHostsRoot(t *testing.T) {
	if _, err := exec.LookPath("unshare"); err != nil {
		t.Skip("unshare (util-linux) is missing")
	}
	if err := exec.Command("unshare", "-Ur", "true").Run(); err != nil {
		t.Skipf("this kernel or user may not make user namespaces: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "-Ur", self, "-test.run=^TestHelperReportsPrivilege$", "-test.v")
	cmd.Env = append(os.Environ(), "NETNSTEST_HELPER=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	for _, want := range []string{
		"inUserNS=true isHostRoot=false",
		"needs the host's root (checking the message), not root of a user namespace",
		"--- SKIP: TestHelperReportsPrivilege",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("helper output lacks %q:\n%s", want, out)
		}
	}
	if os.Geteuid() == 0 && netnstest.IsHostRoot() == netnstest.InUserNS() {
		t.Error("IsHostRoot disagrees with InUserNS for root")
	}
}
