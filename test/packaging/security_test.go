package packaging

import (
	"os/exec"
	"regexp"
	"strconv"
	"testing"
)

// maxExposure is the exposure score recorded in docs/security.md: the unit
// may only get more locked down, never less, without updating both.
const maxExposure = 1.8

// TestUnitExposureStaysAtTheRecordedScore runs systemd's own audit of the
// unit file, offline (no systemd needed), and fails if a change loosened it.
func TestUnitExposureStaysAtTheRecordedScore(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze is not installed: `make deps` installs it")
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=true", "--no-pager", "../../packaging/systemd/kindnet.service").CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Overall exposure level for kindnet.service: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no exposure level in:\n%s", out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("exposure level %.1f", score)
	if score > maxExposure {
		t.Errorf("exposure level %.1f is above the recorded %.1f: which directive was loosened, and why?\n%s", score, maxExposure, out)
	}
}
