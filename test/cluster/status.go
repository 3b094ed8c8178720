package cluster

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
)

// PrintStatus shows a cluster: its processes, its nodes and pods (kubectl
// as the admin), what each node's kindnet agent says (`kindnet status`
// run on the node) and its last systemd STATUS= line, and how to use
// kubectl.
func PrintStatus(ctx context.Context, w io.Writer, c *Cluster, bins Binaries) {
	fmt.Fprintf(w, "cluster %s (%s)", c.ID, c.Dir)
	if !c.Ready {
		fmt.Fprint(w, " — not finished: its `up` failed or still runs")
	}
	fmt.Fprintln(w)
	var dead []string
	for _, p := range c.Procs {
		if kubetest.StartTime(p.PID) != p.Start {
			dead = append(dead, strings.TrimSpace(p.Node+" "+p.Name)+" (log "+p.Log+")")
		}
	}
	if len(dead) > 0 {
		fmt.Fprintf(w, "  exited: %s\n", strings.Join(dead, ", "))
	} else {
		fmt.Fprintf(w, "  all %d processes run\n", len(c.Procs))
	}
	if c.CP.NS == "" {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, args := range [][]string{{"get", "nodes", "-o", "wide"}, {"get", "pods", "-A", "-o", "wide"}} {
		out, err := c.Kubectl(ctx, bins, nil, args...)
		if err != nil {
			fmt.Fprintf(w, "  kubectl %s: %v\n", strings.Join(args, " "), err)
			continue
		}
		fmt.Fprintf(w, "\n$ kubectl %s\n%s", strings.Join(args, " "), out)
	}
	for _, n := range c.AllNodes() {
		fmt.Fprintf(w, "\n%s: kindnet status\n", n.Name)
		if _, err := os.Stat(filepath.Join(n.Dir, "run", "kindnet")); err != nil {
			fmt.Fprintf(w, "  not started\n")
			continue
		}
		out, err := n.run(ctx, "/usr/bin/kindnet", "status")
		fmt.Fprint(w, indent(out))
		if err != nil {
			fmt.Fprintf(w, "  (kindnet status: %v)\n", err)
		}
		if last := lastStatusLine(filepath.Join(n.Dir, "notify.log")); last != "" {
			fmt.Fprintf(w, "  systemd STATUS=%s\n", last)
		}
	}
	fmt.Fprintf(w, "\nkubectl (as root):\n  %s get nodes\n", c.KubectlHint(bins.Kube("kubectl")))
	fmt.Fprintf(w, "or: scripts/cluster.sh kubectl %s get nodes\n", c.ID)
	fmt.Fprintf(w, "logs: %s/{control-plane,node*}/log/{kindnet,containerd,kubelet,kube-proxy}.log, %s/cp/*.log\n", c.Dir, c.Dir)
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return "  " + strings.ReplaceAll(s, "\n", "\n  ") + "\n"
}

// lastStatusLine is the last STATUS= the agent sent to its notify socket.
func lastStatusLine(notifyLog string) string {
	b, err := os.ReadFile(notifyLog)
	if err != nil {
		return ""
	}
	last := ""
	for _, line := range strings.Split(string(b), "\n") {
		if _, msg, ok := strings.Cut(line, " "); ok {
			if v, ok := strings.CutPrefix(msg, "STATUS="); ok {
				last = v
			}
		}
	}
	return last
}
