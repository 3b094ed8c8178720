package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// The README's first command, `sudo make demo`, runs lab.Demo: it must show
// every section a newcomer is promised, report success only when every pod
// reaches every other and egress is masqueraded, and leave nothing behind.
func TestDemoShowsAWorkingLabAndRemovesIt(t *testing.T) {
	netnstest.RequireHostRoot(t, "builds the network-namespace lab")
	o := labOptions(t)
	o.PodsPerNode = 2 // as `kindnet-lab demo` runs it
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := lab.Demo(ctx, &out, o)
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, want := range []string{
		"== pod-to-pod ping, IPv4 ==",
		"== pod-to-pod ping, IPv6 ==",
		"masqueraded to the node",
		"(pod address kept: true)",
		"kindnet routes (ip route show proto kindnet)",
		"nft list table inet kindnet",
		"all 6 pods reach each other over IPv4 and IPv6",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Contains(out.String(), "NOT masqueraded") || strings.Contains(out.String(), "FAILED") {
		t.Errorf("demo output reports a failure")
	}
	m := regexp.MustCompile(`(?m)^lab (\S+) removed:`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatal("demo output does not say the lab was removed")
	}
	list, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v\n%s", err, list)
	}
	if strings.Contains(string(list), m[1]) {
		t.Errorf("namespaces of lab %s left behind:\n%s", m[1], list)
	}
	if _, err := os.Stat(filepath.Join(lab.StateRoot, m[1])); !os.IsNotExist(err) {
		t.Errorf("lab directory %s left behind (stat: %v)", filepath.Join(lab.StateRoot, m[1]), err)
	}
}
