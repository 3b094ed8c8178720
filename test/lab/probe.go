package lab

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// WhoamiPort is where Serve listens: it answers every TCP connection with
// the source address it saw, which is how the lab sees masquerading.
const WhoamiPort = 8080

// Serve starts `kindnet-lab whoami` inside namespace ns. It is stopped (by
// PID) when ctx ends or by Down.
func (l *Lab) Serve(ctx context.Context, ns string) error {
	cmd := exec.Command("ip", "netns", "exec", ns, l.Opts.LabTool, "whoami", "--listen", "[::]:"+strconv.Itoa(WhoamiPort))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	pid := cmd.Process.Pid
	go func() { _ = cmd.Wait() }()
	go func() {
		<-ctx.Done()
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}()
	// wait until it accepts connections
	return waitFor(ctx, 5*time.Second, "whoami in "+ns, func() (bool, error) {
		_, err := Exec(ctx, ns, l.Opts.LabTool, "fetch", "--timeout", "200ms", hostPort(netip.MustParseAddr("::1")))
		return err == nil, err
	})
}

func hostPort(a netip.Addr) string { return netip.AddrPortFrom(a, WhoamiPort).String() }

// SourceSeen connects from namespace ns to the whoami server at dst and
// returns the source address that server saw. It tries three times, like
// pingRetry, for links that are still settling.
func (l *Lab) SourceSeen(ctx context.Context, ns string, dst netip.Addr) (netip.Addr, error) {
	var out string
	var err error
	for range 3 {
		if out, err = Exec(ctx, ns, l.Opts.LabTool, "fetch", "--timeout", "2s", hostPort(dst)); err == nil {
			return netip.ParseAddr(strings.TrimSpace(out))
		}
	}
	return netip.Addr{}, err
}

// Matrix is the result of pinging every pod from every other pod.
type Matrix struct {
	Pods []*Pod
	// OK[i][j][f] says pod i reached pod j over family f (0: IPv4, 1: IPv6).
	OK [][][2]bool
}

// PingMatrix pings every pod from every other pod over IPv4 and IPv6, a
// handful at a time.
func (l *Lab) PingMatrix(ctx context.Context) Matrix {
	pods := l.AllPods()
	m := Matrix{Pods: pods, OK: make([][][2]bool, len(pods))}
	for i := range m.OK {
		m.OK[i] = make([][2]bool, len(pods))
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, from := range pods {
		for j, to := range pods {
			if i == j {
				continue
			}
			for f, dst := range []netip.Addr{to.IPv4, to.IPv6} {
				if !dst.IsValid() {
					continue
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					sem <- struct{}{}
					defer func() { <-sem }()
					m.OK[i][j][f] = pingRetry(ctx, from.NS, dst) == nil
				}()
			}
		}
	}
	wg.Wait()
	return m
}

// pingRetry allows three one-second tries: the first packets to a new pod
// may wait for neighbour discovery or for IPv6 duplicate address detection
// on links a plugin just created.
func pingRetry(ctx context.Context, ns string, dst netip.Addr) error {
	var err error
	for range 3 {
		if err = Ping(ctx, ns, dst); err == nil {
			return nil
		}
	}
	return err
}

// Failures lists the pairs that could not reach each other.
func (m Matrix) Failures() []string {
	var out []string
	for i := range m.Pods {
		for j := range m.Pods {
			for f, fam := range []string{"IPv4", "IPv6"} {
				if i != j && !m.OK[i][j][f] {
					out = append(out, fmt.Sprintf("%s/%s -> %s/%s over %s", m.Pods[i].Node, m.Pods[i].Name, m.Pods[j].Node, m.Pods[j].Name, fam))
				}
			}
		}
	}
	return out
}

// Print draws the matrix of one family.
func (m Matrix) Print(w io.Writer, family int) {
	name := func(p *Pod) string { return p.Node + "/" + p.Name }
	fmt.Fprintf(w, "%-12s", "from \\ to")
	for _, p := range m.Pods {
		fmt.Fprintf(w, " %-11s", name(p))
	}
	fmt.Fprintln(w)
	for i, from := range m.Pods {
		fmt.Fprintf(w, "%-12s", name(from))
		for j := range m.Pods {
			cell := "-"
			if i != j {
				cell = "FAIL"
				if m.OK[i][j][family] {
					cell = "ok"
				}
			}
			fmt.Fprintf(w, " %-11s", cell)
		}
		fmt.Fprintln(w)
	}
}

// KindnetRoutes lists the node's kindnet routes as `ip route` prints them.
func KindnetRoutes(ctx context.Context, n *Node) (string, error) {
	var b strings.Builder
	for _, fam := range []string{"-4", "-6"} {
		out, err := Exec(ctx, n.NS, "ip", fam, "route", "show", "proto", "107")
		if err != nil {
			return "", err
		}
		b.WriteString(out)
	}
	return b.String(), nil
}
