package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSandboxHasATmpOfItsOwn: the fixed paths tests use under the
// sandbox's /tmp never meet what the machine's /tmp holds.
func TestSandboxHasATmpOfItsOwn(t *testing.T) {
	hostFile := filepath.Join(t.TempDir(), "seen-from-the-sandbox")
	if !strings.HasPrefix(hostFile, "/tmp/") {
		t.Skipf("the test's temp dir %s is not under /tmp (TMPDIR is set)", hostFile)
	}
	if err := os.WriteFile(hostFile, []byte("host"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := New(t, Options{})
	if out, _, err := s.Run("cat", hostFile); err == nil {
		t.Fatalf("the sandbox sees the machine's %s (%q)", hostFile, out)
	}
	if out, _, err := s.Run("find", "/tmp", "-mindepth", "1"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("sandbox /tmp not empty: %q %v", out, err)
	}
}
