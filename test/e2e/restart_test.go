package e2e

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// pingStats are the counts ping prints at the end.
type pingStats struct {
	sent, received int
	out            string
}

var pingSummary = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// pingEvery sends count echo requests from namespace ns to dst, one every
// interval, and returns how many were sent and answered.
func pingEvery(ctx context.Context, ns string, dst netip.Addr, count int, interval time.Duration) (pingStats, error) {
	out, err := lab.Exec(ctx, ns, "ping", "-n", "-q", "-c", strconv.Itoa(count),
		"-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", dst.String())
	st := pingStats{out: strings.TrimSpace(out)}
	m := pingSummary.FindStringSubmatch(out)
	if m == nil {
		return st, fmt.Errorf("ping %s from %s: no summary: %v: %s", dst, ns, err, out)
	}
	st.sent, _ = strconv.Atoi(m[1])
	st.received, _ = strconv.Atoi(m[2])
	return st, nil // ping exits 1 when replies are missing: the counts say so
}

// restartWhilePinging pings between pods on node1 and node2 at 10 ms over
// IPv4 and IPv6 while the agents of both nodes are restarted with sig,
// twice each, every restart waiting for the new agent to be ready again;
// not one packet may be lost.
func restartWhilePinging(t *testing.T, sig syscall.Signal) {
	kl := newKubeLab(t, kubeLabOptions{rbac: true, pods: 1})
	kl.waitRoutes(t, 30*time.Second, "routed to every lab node", nil)
	kl.checkPods(t)
	n1, n2 := kl.Nodes[0], kl.Nodes[1]
	from, to := n1.Pods[0], n2.Pods[0]

	const (
		interval = 10 * time.Millisecond
		count    = 1500 // 15 s: room for four restarts on a busy machine
	)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	type result struct {
		family string
		st     pingStats
		err    error
	}
	results := make(chan result, 2)
	pingStart := time.Now()
	for fam, dst := range map[string]netip.Addr{"IPv4": to.IPv4, "IPv6": to.IPv6} {
		go func() {
			st, err := pingEvery(ctx, from.NS, dst, count, interval)
			results <- result{fam, st, err}
		}()
	}
	time.Sleep(time.Second)
	for round := range 2 {
		for _, n := range []*lab.Node{n1, n2} {
			old := n.AgentPID
			start := time.Now()
			if err := kl.RestartAgent(n, sig); err != nil {
				t.Fatal(err)
			}
			if err := waitReady(n, 30*time.Second); err != nil {
				t.Fatalf("agent of %s after restart %d: %v", n.Name, round+1, err)
			}
			t.Logf("agent of %s: %s, pid %d -> %d, ready again after %s", n.Name, sig, old, n.AgentPID, time.Since(start).Round(time.Millisecond))
			time.Sleep(500 * time.Millisecond)
		}
	}
	restartsDone := time.Since(pingStart)
	if window := time.Duration(count) * interval; restartsDone > window-time.Second {
		t.Fatalf("the restarts took %s, more than the %s ping window allows: the pings did not cover them", restartsDone.Round(time.Millisecond), window)
	}
	for range 2 {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: %v", r.family, r.err)
			continue
		}
		t.Logf("%s %s/%s -> %s/%s every %s: %d sent, %d received", r.family, n1.Name, from.Name, n2.Name, to.Name, interval, r.st.sent, r.st.received)
		if r.st.sent != count || r.st.received != count {
			t.Errorf("%s: packets lost across the restarts: %d sent, %d received:\n%s", r.family, r.st.sent, r.st.received, r.st.out)
		}
	}
	kl.waitRoutes(t, 5*time.Second, "routes unchanged after the restarts", nil)
}

// What `systemctl restart kindnet` does: SIGTERM, wait for the exit, start.
func TestAgentRestartedWithSIGTERMLosesNoPacket(t *testing.T) {
	restartWhilePinging(t, syscall.SIGTERM)
}

func TestAgentKilledWithSIGKILLAndRestartedLosesNoPacket(t *testing.T) {
	restartWhilePinging(t, syscall.SIGKILL)
}

// waitReady waits until the node's agent answers /readyz with 200
// (bootstrapped, and synced with the API).
func waitReady(n *lab.Node, d time.Duration) error {
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		code, body, err := nsGet(n.NS, metricsURL+"/readyz")
		if err == nil && code == http.StatusOK {
			return nil
		}
		last = fmt.Errorf("/readyz: %d %s %v", code, strings.TrimSpace(body), err)
		time.Sleep(50 * time.Millisecond)
	}
	return last
}
