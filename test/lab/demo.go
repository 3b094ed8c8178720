package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// Demo builds a lab, shows that it works — the pod-to-pod ping matrix over
// IPv4 and IPv6, the source address the external host sees, each node's
// kindnet routes and nftables table — and tears it all down, also when it
// fails or ctx is cancelled (Ctrl-C).
func Demo(ctx context.Context, w io.Writer, o Options) (err error) {
	if o.PodsPerNode == 0 {
		o.PodsPerNode = 2
	}
	l, err := Up(ctx, o)
	if err != nil {
		return err
	}
	defer func() {
		if derr := l.Down(); derr != nil && err == nil {
			err = derr
		}
		fmt.Fprintf(w, "\nlab %s removed: namespaces, agents and files are gone\n", l.ID)
	}()
	fmt.Fprintf(w, "lab %s: %d nodes, %d pods each, plugin %s; one kindnet agent per node namespace\n\n", l.ID, len(l.Nodes), o.PodsPerNode, o.CNIPlugin)
	for _, n := range l.Nodes {
		fmt.Fprintf(w, "  %-6s %-16s %-14s pods %s, %s\n", n.Name, n.IPv4, n.IPv6, n.PodCIDR4, n.PodCIDR6)
	}
	var problems []string

	m := l.PingMatrix(ctx)
	for f, fam := range []string{"IPv4", "IPv6"} {
		fmt.Fprintf(w, "\n== pod-to-pod ping, %s ==\n", fam)
		m.Print(w, f)
	}
	problems = append(problems, m.Failures()...)

	fmt.Fprintf(w, "\n== source address seen by the external host (%s, %s) ==\n", WorldIPv4, WorldIPv6)
	if err := l.Serve(ctx, l.Ext.NS); err != nil {
		return err
	}
	for _, n := range l.Nodes {
		p := n.Pods[0]
		for _, pair := range [][2]netip.Addr{{WorldIPv4, p.IPv4}, {WorldIPv6, p.IPv6}} {
			seen, err := l.SourceSeen(ctx, p.NS, pair[0])
			verdict := "masqueraded to the node"
			switch {
			case err != nil:
				verdict, seen = "FAILED: "+err.Error(), netip.Addr{}
				problems = append(problems, fmt.Sprintf("%s/%s -> %s: %v", n.Name, p.Name, pair[0], err))
			case seen != n.IPv4 && seen != n.IPv6:
				verdict = "NOT masqueraded"
				problems = append(problems, fmt.Sprintf("%s/%s -> %s seen as %s", n.Name, p.Name, pair[0], seen))
			}
			fmt.Fprintf(w, "  %s/%s (%s) -> %s: seen as %s, %s\n", n.Name, p.Name, pair[1], pair[0], seen, verdict)
		}
	}
	if len(l.Nodes) > 1 {
		a, b := l.Nodes[0].Pods[0], l.Nodes[1].Pods[0]
		if err := l.Serve(ctx, b.NS); err == nil {
			seen, err := l.SourceSeen(ctx, a.NS, b.IPv4)
			fmt.Fprintf(w, "  %s/%s -> %s/%s (pod to pod): seen as %s (pod address kept: %t)\n", a.Node, a.Name, b.Node, b.Name, seen, err == nil && seen == a.IPv4)
			if err != nil || seen != a.IPv4 {
				problems = append(problems, fmt.Sprintf("pod-to-pod source not kept: %v %s", err, seen))
			}
		}
	}

	for _, n := range l.Nodes {
		routes, err := KindnetRoutes(ctx, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\n== %s: kindnet routes (ip route show proto kindnet) ==\n%s", n.Name, routes)
	}
	n := l.Nodes[0]
	table, err := Exec(ctx, n.NS, "nft", "list", "table", "inet", "kindnet")
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "\n== %s: nft list table inet kindnet ==\n%s", n.Name, table)

	if len(problems) > 0 {
		return fmt.Errorf("demo found %d problems:\n  %s", len(problems), strings.Join(problems, "\n  "))
	}
	fmt.Fprintf(w, "\nall %d pods reach each other over IPv4 and IPv6; traffic leaving the cluster is masqueraded\n", len(l.AllPods()))
	return nil
}

// PrintStatus prints a running lab: nodes, agents, pods and routes.
func PrintStatus(ctx context.Context, w io.Writer, l *Lab) {
	if ctx == nil {
		ctx = context.Background()
	}
	fmt.Fprintf(w, "lab %s (%s)\n", l.ID, l.Dir)
	for _, n := range l.Nodes {
		state := "stopped"
		if n.AgentPID != 0 && l.isOurAgent(n, n.AgentPID) {
			state = fmt.Sprintf("running (pid %d)", n.AgentPID)
		}
		fmt.Fprintf(w, "  %s in netns %s: %s %s, agent %s, log %s\n", n.Name, n.NS, n.IPv4, n.IPv6, state, n.LogPath())
		for _, p := range n.Pods {
			fmt.Fprintf(w, "    pod %s in netns %s: %s %s\n", p.Name, p.NS, p.IPv4, p.IPv6)
		}
		if routes, err := KindnetRoutes(ctx, n); err == nil {
			for _, line := range strings.Split(strings.TrimSpace(routes), "\n") {
				fmt.Fprintf(w, "    route %s\n", line)
			}
		}
	}
}
