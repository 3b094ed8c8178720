package firewall

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPackageNeverWritesTheRuleset backs the package's promise: no
// nftables call that adds, changes, flushes or deletes anything appears
// in its code (tests build their tables with the nft and iptables tools).
func TestPackageNeverWritesTheRuleset(t *testing.T) {
	writers := regexp.MustCompile(`\.(Add|Del|Flush|Insert|Replace|Set)[A-Z]\w*\(|\.Flush\(\)`)
	files, err := filepath.Glob("*.go")
	if err != nil || len(files) == 0 {
		t.Fatalf("no sources: %v", err)
	}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			if m := writers.FindString(line); m != "" && !strings.HasPrefix(strings.TrimSpace(line), "//") {
				t.Errorf("%s:%d calls %s: the package only reads the ruleset", f, i+1, m)
			}
		}
	}
}
