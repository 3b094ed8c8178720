package cnibench

import (
	"bytes"
	"fmt"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// steps holds, per stack, the durations of each step of kindnet's DEL as
// the plugin reports them with KINDNET_CNI_TIMING (pkg/cni/timing.go), and
// "process": the whole exec, fork to exit, as the runtime sees it.
var steps = struct {
	sync.Mutex
	m map[string]map[string][]time.Duration
}{m: map[string]map[string][]time.Duration{}}

// delSteps adds one pod with kindnet and deletes it with step timing on.
func delSteps(b *testing.B, p plugin, node *netnstest.NS, id, netns, stack string) {
	p.exec(b, node, "ADD", id, netns)
	cmd := exec.Command(p.bin)
	cmd.Env = []string{"CNI_COMMAND=DEL", "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + p.path, "KINDNET_CNI_TIMING=1"}
	cmd.Stdin = bytes.NewReader(p.conf)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	var took time.Duration
	err := node.Do(func() error {
		start := time.Now()
		err := cmd.Run()
		took = time.Since(start)
		return err
	})
	if err != nil {
		b.Fatalf("DEL with timing: %v\n%s", err, stderr.String())
	}
	_, line, ok := strings.Cut(stderr.String(), "kindnet timing DEL: ")
	if !ok {
		b.Fatalf("the plugin printed no timing line: %q", stderr.String())
	}
	steps.Lock()
	defer steps.Unlock()
	if steps.m[stack] == nil {
		steps.m[stack] = map[string][]time.Duration{}
	}
	for _, f := range strings.Fields(line) {
		name, us, ok := strings.Cut(f, "=")
		n, err := strconv.Atoi(strings.TrimSuffix(us, "us"))
		if !ok || err != nil {
			b.Fatalf("timing field %q", f)
		}
		steps.m[stack][name] = append(steps.m[stack][name], time.Duration(n)*time.Microsecond)
	}
	steps.m[stack]["process"] = append(steps.m[stack]["process"], took)
}

// stepTable is the Markdown table of DEL's steps (p50 per stack); outside
// "total" (the plugin's own work from main) is the process's start and
// exit: exec, the Go runtime, package initialisation, reading stdin.
func stepTable() string {
	steps.Lock()
	defer steps.Unlock()
	if len(steps.m) == 0 {
		return ""
	}
	var stacksSeen []string
	names := map[string]bool{}
	for st, m := range steps.m {
		stacksSeen = append(stacksSeen, st)
		for n := range m {
			names[n] = true
		}
	}
	sort.Strings(stacksSeen)
	order := []string{"ipam-get", "hostport-remove", "netlink-open", "veth-del", "ipam-release", "total", "process"}
	var t strings.Builder
	fmt.Fprintf(&t, "| step | %s |\n|---|%s\n", strings.Join(stacksSeen, " p50 ms | ")+" p50 ms", strings.Repeat("---|", len(stacksSeen)))
	for _, n := range order {
		if !names[n] {
			continue
		}
		fmt.Fprintf(&t, "| %s |", n)
		for _, st := range stacksSeen {
			fmt.Fprintf(&t, " %.2f |", ms(samples(steps.m[st][n]).pct(0.5)))
		}
		t.WriteString("\n")
	}
	return t.String()
}
