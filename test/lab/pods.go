package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// CNIResult is what `kindnet-lab cni add` prints.
type CNIResult struct {
	IPs []netip.Prefix `json:"ips"`
}

// PortMapping is a hostPort of a pod, as a runtime passes it to CNI.
type PortMapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	// HostIP limits the mapping to one address of the node; empty: all.
	HostIP string `json:"hostIP,omitempty"`
}

// flag renders the mapping for `kindnet-lab cni --port`.
func (m PortMapping) flag() string {
	f := fmt.Sprintf("%d:%d/%s", m.HostPort, m.ContainerPort, m.Protocol)
	if m.HostIP != "" {
		f += "@" + m.HostIP
	}
	return f
}

// AddPod creates a pod namespace on node n and wires it by running the
// CNI plugin the node's agent-written conflist names, as a runtime would,
// with the given hostPorts.
func (l *Lab) AddPod(ctx context.Context, n *Node, name string, ports ...PortMapping) (*Pod, error) {
	p, err := l.wirePod(ctx, n, name, n.CNIConfPath(), ports)
	if err != nil {
		return nil, err
	}
	n.Pods = append(n.Pods, p)
	l.Opts.Log("lab %s: pod %s on %s: %s %s", l.ID, p.Name, n.Name, p.IPv4, p.IPv6)
	return p, nil
}

// wirePod creates a pod namespace on node n and runs CNI ADD for it with
// the given conflist and hostPorts.
func (l *Lab) wirePod(ctx context.Context, n *Node, name, conflist string, ports []PortMapping) (*Pod, error) {
	p := &Pod{Name: name, Node: n.Name, NS: fmt.Sprintf("%s-%s-%s", l.ID, strings.TrimPrefix(n.NS, l.ID+"-"), name), Ports: ports}
	if err := addNS(p.NS); err != nil {
		return nil, err
	}
	out, err := l.cniWith(ctx, n, conflist, "add", p)
	if err != nil {
		_ = ip("netns", "del", p.NS)
		return nil, err
	}
	var res CNIResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		return nil, fmt.Errorf("CNI ADD result for %s: %w: %s", p.NS, err, out)
	}
	for _, a := range res.IPs {
		if a.Addr().Is4() {
			p.IPv4 = a.Addr()
		} else {
			p.IPv6 = a.Addr()
		}
	}
	return p, nil
}

// DelPod runs CNI DEL for the pod and deletes its namespace.
func (l *Lab) DelPod(ctx context.Context, p *Pod) error {
	n := l.Node(p.Node)
	if _, err := l.CNI(ctx, n, "del", p); err != nil {
		return err
	}
	for i, q := range n.Pods {
		if q == p {
			n.Pods = append(n.Pods[:i], n.Pods[i+1:]...)
			break
		}
	}
	return ip("netns", "del", p.NS)
}

// CNI runs one CNI verb (add, check, del) for pod p through libcni inside
// the node's namespace, with the node's conflist.
func (l *Lab) CNI(ctx context.Context, n *Node, verb string, p *Pod) (string, error) {
	return l.cniWith(ctx, n, n.CNIConfPath(), verb, p)
}

func (l *Lab) cniWith(ctx context.Context, n *Node, conflist, verb string, p *Pod) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	args := []string{"netns", "exec", n.NS, l.Opts.LabTool, "cni", verb,
		"--conflist", conflist, "--bin-dir", l.Opts.CNIBinDir,
		"--cache-dir", filepath.Join(n.Dir, "cni-cache"),
		"--netns", "/run/netns/" + p.NS, "--container-id", p.NS, "--pod-name", p.Name}
	for _, m := range p.Ports {
		args = append(args, "--port", m.flag())
	}
	out, err := exec.CommandContext(ctx, "ip", args...).Output()
	if err != nil {
		msg := err.Error()
		if ee, ok := err.(*exec.ExitError); ok {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", fmt.Errorf("CNI %s for pod %s on %s: %s", strings.ToUpper(verb), p.Name, n.Name, msg)
	}
	return string(out), nil
}

// Exec runs a command inside a lab namespace and returns its output.
func Exec(ctx context.Context, ns string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %v: %s", ns, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Ping sends one echo request from namespace ns to addr, waiting at most a
// second for the reply.
func Ping(ctx context.Context, ns string, addr netip.Addr) error {
	_, err := Exec(ctx, ns, "ping", "-n", "-q", "-c", "1", "-W", "1", addr.String())
	return err
}
