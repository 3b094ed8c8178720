package lab

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// StartAgent starts the node's `kindnet agent` inside its namespace. Its
// output goes to agent.log in the node's directory. It runs in a session of
// its own so it outlives a `kindnet-lab up` that started it.
func (l *Lab) StartAgent(n *Node) error {
	if n.AgentPID != 0 && pidAlive(n.AgentPID) {
		return fmt.Errorf("agent of %s already runs (pid %d)", n.Name, n.AgentPID)
	}
	logf, err := os.OpenFile(n.LogPath(), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := append([]string{"netns", "exec", n.NS, l.Opts.Kindnet, "agent", "--config", n.ConfigPath()}, l.Opts.AgentArgs...)
	cmd := exec.Command("ip", args...) // ip netns exec execs the agent: same PID
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), "KINDNET_CONFIG=") // never pick up the machine's config
	cmd.Env = append(filterEnv(cmd.Env), n.AgentEnv...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start agent of %s: %w", n.Name, err)
	}
	n.agent, n.AgentPID, n.exited = cmd, cmd.Process.Pid, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(n.exited)
	l.Opts.Log("lab %s: agent of %s started (pid %d)", l.ID, n.Name, n.AgentPID)
	return nil
}

// filterEnv drops KINDNET_* variables of the caller, so a lab agent only
// sees its own config file.
func filterEnv(env []string) []string {
	out := env[:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "KINDNET_") {
			out = append(out, kv)
		}
	}
	return out
}

// LogPath is the node agent's log file.
func (n *Node) LogPath() string { return filepath.Join(n.Dir, "agent.log") }

// StopAgent sends sig to the node's agent and waits for it to exit,
// escalating to SIGKILL after 10 seconds. Only the PID recorded when the
// agent was started is signalled, and only if it still runs our config.
func (l *Lab) StopAgent(n *Node, sig syscall.Signal) error {
	pid := n.AgentPID
	if pid == 0 {
		return nil
	}
	n.AgentPID = 0
	if !l.isOurAgent(n, pid) {
		return nil // already gone (and the PID may have been reused)
	}
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal agent of %s (pid %d): %w", n.Name, pid, err)
	}
	if l.waitExit(n, pid, 10*time.Second) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	if !l.waitExit(n, pid, 5*time.Second) {
		return fmt.Errorf("agent of %s (pid %d) did not exit", n.Name, pid)
	}
	return nil
}

func (l *Lab) waitExit(n *Node, pid int, d time.Duration) bool {
	if n.exited != nil {
		select {
		case <-n.exited:
			return true
		case <-time.After(d):
			return false
		}
	}
	// Started by another process: poll.
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !l.isOurAgent(n, pid) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

// isOurAgent checks that pid still is this node's agent (its command line
// names the node's config file) before anything signals it.
func (l *Lab) isOurAgent(n *Node, pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err != nil {
		return false
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		if f := strings.Fields(string(st)); len(f) > 2 && f[2] == "Z" {
			return false // a zombie has exited already
		}
	}
	return strings.Contains(string(b), n.ConfigPath())
}

func pidAlive(pid int) bool { return syscall.Kill(pid, 0) == nil }

// RestartAgent stops the agent with sig and starts it again.
func (l *Lab) RestartAgent(n *Node, sig syscall.Signal) error {
	if err := l.StopAgent(n, sig); err != nil {
		return err
	}
	return l.StartAgent(n)
}

// WaitCNIConfig waits until the node's agent has written its conflist.
func (l *Lab) WaitCNIConfig(ctx context.Context, n *Node) error {
	return waitFor(ctx, 20*time.Second, "the CNI config of "+n.Name, func() (bool, error) {
		if n.exited != nil {
			select {
			case <-n.exited:
				log, _ := os.ReadFile(n.LogPath())
				return false, fmt.Errorf("agent of %s exited:\n%s", n.Name, log)
			default:
			}
		}
		_, err := os.Stat(n.CNIConfPath())
		return err == nil, err
	})
}

// NodeObject is one entry of the nodes file.
type NodeObject struct {
	Name      string
	Addresses []string
	PodCIDRs  []string
}

// Objects returns the lab's nodes as nodes-file entries.
func (l *Lab) Objects() []NodeObject {
	var out []NodeObject
	for _, n := range l.Nodes {
		out = append(out, NodeObject{Name: n.Name,
			Addresses: []string{n.IPv4.String(), n.IPv6.String()},
			PodCIDRs:  []string{n.PodCIDR4.String(), n.PodCIDR6.String()}})
	}
	return out
}

// WriteNodesFile replaces the shared nodes file with objs (nil: the lab's
// own nodes), as a kubectl-style v1 List, atomically.
func (l *Lab) WriteNodesFile(objs []NodeObject) error {
	if objs == nil {
		objs = l.Objects()
	}
	var b strings.Builder
	b.WriteString("apiVersion: v1\nkind: List\nitems:\n")
	for _, o := range objs {
		fmt.Fprintf(&b, "- apiVersion: v1\n  kind: Node\n  metadata:\n    name: %q\n  spec:\n    podCIDRs: [%s]\n  status:\n    addresses:\n",
			o.Name, quoteList(o.PodCIDRs))
		for _, a := range o.Addresses {
			fmt.Fprintf(&b, "    - {type: InternalIP, address: %q}\n", a)
		}
		if len(o.Addresses) == 0 {
			b.WriteString("    []\n")
		}
	}
	tmp := l.NodesFile + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, l.NodesFile)
}

func quoteList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return strings.Join(q, ", ")
}
