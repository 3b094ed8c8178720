package lab

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// IP runs one iproute2 command and names it in the error.
func IP(args ...string) error { return ip(args...) }

// IPScript runs several ip commands in order, stopping at the first error.
func IPScript(cmds ...[]string) error { return script(cmds...) }

// AddNS creates the network namespace name with loopback up.
func AddNS(name string) error { return addNS(name) }

// NewSwitch creates the namespace name holding the bridge br0, up: the
// switch that Plug connects hosts to.
func NewSwitch(name string) error {
	if err := addNS(name); err != nil {
		return err
	}
	return script(
		[]string{"-n", name, "link", "add", "br0", "type", "bridge"},
		[]string{"-n", name, "link", "set", "br0", "up"},
	)
}

// Plug creates a veth pair with one end ("eth0") inside ns and the other,
// named port, inside the switch namespace sw, attached to its bridge. Both
// ends are created directly in their namespaces: nothing appears on the
// host.
func Plug(sw, ns, port string) error {
	return script(
		[]string{"link", "add", "eth0", "netns", ns, "type", "veth", "peer", "name", port, "netns", sw},
		[]string{"-n", sw, "link", "set", port, "master", "br0", "up"},
		[]string{"-n", ns, "link", "set", "eth0", "up"},
	)
}

// ip runs one iproute2 command and names it in the error.
func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// script runs several ip commands in order, stopping at the first error.
func script(cmds ...[]string) error {
	for _, c := range cmds {
		if err := ip(c...); err != nil {
			return err
		}
	}
	return nil
}

func addNS(name string) error {
	return script(
		[]string{"netns", "add", name},
		[]string{"-n", name, "link", "set", "lo", "up"},
	)
}

// plug connects ns to the lab's switch (Plug).
func (l *Lab) plug(ns, port string) error { return Plug(l.Switch, ns, port) }

func (l *Lab) buildTopology() error {
	if err := NewSwitch(l.Switch); err != nil {
		return err
	}
	if err := l.buildExt(); err != nil {
		return err
	}
	if l.Opts.API {
		if err := l.buildAPI(); err != nil {
			return err
		}
	}
	for i := 1; i <= l.Opts.Nodes; i++ {
		if err := l.buildNode(i); err != nil {
			return err
		}
	}
	return nil
}

// buildExt makes the external host: the nodes' default gateway, with the
// "world" addresses on its loopback and no route to any pod range, so a
// reply reaches a pod only if the node masqueraded the request.
func (l *Lab) buildExt() error {
	l.Ext = Host{NS: l.ID + "-ext", IPv4: extIPv4, IPv6: extIPv6, World: []netip.Addr{WorldIPv4, WorldIPv6}}
	ns := l.Ext.NS
	if err := addNS(ns); err != nil {
		return err
	}
	if err := l.plug(ns, "ext"); err != nil {
		return err
	}
	return script(
		[]string{"-n", ns, "addr", "add", extIPv4.String() + "/24", "dev", "eth0"},
		[]string{"-n", ns, "addr", "add", extIPv6.String() + "/64", "dev", "eth0", "nodad"},
		[]string{"-n", ns, "addr", "add", WorldIPv4.String() + "/32", "dev", "lo"},
		[]string{"-n", ns, "addr", "add", WorldIPv6.String() + "/128", "dev", "lo"},
	)
}

// buildAPI makes the host a test API server runs on: plugged into the
// switch like a node, so agents reach it over the lab network only.
func (l *Lab) buildAPI() error {
	l.API = Host{NS: l.ID + "-api", IPv4: APIIPv4, IPv6: APIIPv6}
	ns := l.API.NS
	if err := addNS(ns); err != nil {
		return err
	}
	if err := l.plug(ns, "api"); err != nil {
		return err
	}
	return script(
		[]string{"-n", ns, "addr", "add", APIIPv4.String() + "/24", "dev", "eth0"},
		[]string{"-n", ns, "addr", "add", APIIPv6.String() + "/64", "dev", "eth0", "nodad"},
	)
}

func (l *Lab) buildNode(i int) error {
	v4, v6, c4, c6 := NodeSpec(i)
	n := &Node{
		Name: fmt.Sprintf("node%d", i), NS: fmt.Sprintf("%s-n%d", l.ID, i),
		IPv4: v4, IPv6: v6, PodCIDR4: c4, PodCIDR6: c6,
		Dir: filepath.Join(l.Dir, fmt.Sprintf("node%d", i)),
	}
	l.Nodes = append(l.Nodes, n)
	if err := os.MkdirAll(n.Dir, 0o700); err != nil {
		return err
	}
	if err := addNS(n.NS); err != nil {
		return err
	}
	if err := l.plug(n.NS, fmt.Sprintf("n%d", i)); err != nil {
		return err
	}
	if err := script(
		[]string{"-n", n.NS, "addr", "add", v4.String() + "/24", "dev", "eth0"},
		[]string{"-n", n.NS, "addr", "add", v6.String() + "/64", "dev", "eth0", "nodad"},
		[]string{"-n", n.NS, "route", "add", "default", "via", extIPv4.String()},
		[]string{"-n", n.NS, "-6", "route", "add", "default", "via", extIPv6.String()},
	); err != nil {
		return err
	}
	return os.WriteFile(n.ConfigPath(), []byte(l.agentConfig(n)), 0o600)
}

// ConfigPath is the node agent's config file.
func (n *Node) ConfigPath() string { return filepath.Join(n.Dir, "config.yaml") }

// CNIConfPath is where the node's agent writes the conflist.
func (n *Node) CNIConfPath() string { return filepath.Join(n.Dir, "cni", "10-kindnet.conflist") }

// KubeconfigPath is the kubeconfig the node's agent follows the API with
// (Options.API); the test writes it, like kubeadm join would.
func (n *Node) KubeconfigPath() string { return filepath.Join(n.Dir, "kubelet.conf") }

// agentConfig is the node's /etc/kindnet/config.yaml, with every path
// inside the node's lab directory.
func (l *Lab) agentConfig(n *Node) string {
	source := "nodesFile: " + l.NodesFile
	if l.Opts.API {
		source = "kubeconfig: " + n.KubeconfigPath()
	}
	return fmt.Sprintf(`# kindnet agent config of lab %s, node %s
nodeName: %s
%s
clusterCIDRs: [%s, %s]
cni:
  plugin: %s
  confDir: %s
  binDir: %s
cri:
  # The host's runtime, if any, is not this lab node's (tests that run
  # one pass --cri-endpoint).
  endpoint: none
stateDir: %s
runDir: %s
resyncInterval: 30s
logLevel: debug
`, l.ID, n.Name, n.Name, source, ClusterCIDR4, ClusterCIDR6, l.Opts.CNIPlugin,
		filepath.Join(n.Dir, "cni"), l.Opts.CNIBinDir, filepath.Join(n.Dir, "state"), filepath.Join(n.Dir, "run"))
}
