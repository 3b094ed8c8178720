package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"
	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/vishvananda/netlink"
	"go4.org/netipx"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
)

// TestMain doubles as the plugin: the tests execute their own binary with
// CNI_COMMAND set, exactly as a runtime executes kindnet.
func TestMain(m *testing.M) {
	if os.Getenv("CNI_COMMAND") != "" {
		os.Exit(Main())
	}
	os.Exit(m.Run())
}

// Addresses on the test node's loopback, for pods to reach "the node".
var (
	nodeV4 = netip.MustParseAddr("192.168.7.1")
	nodeV6 = netip.MustParseAddr("fd00:7::1")
)

const (
	range4 = "10.244.1.0/24"
	range6 = "fd00:10:244:1::/64"
)

// node is a throwaway namespace standing for the host the plugin runs on.
type node struct {
	t       *testing.T
	ns      *netnstest.NS
	ipamDir string
}

func newNode(t *testing.T) *node {
	t.Helper()
	ns := netnstest.New(t)
	n := &node{t: t, ns: ns, ipamDir: t.TempDir()}
	ns.Exec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")
	ns.Exec(t, "ip", "addr", "add", nodeV4.String()+"/32", "dev", "lo")
	ns.Exec(t, "ip", "addr", "add", nodeV6.String()+"/128", "dev", "lo")
	return n
}

// conf is a network config as the agent writes it; extra fields override.
func (n *node) conf(version string, mode Mode, extra map[string]any) []byte {
	c := map[string]any{
		"cniVersion": version, "name": "kindnet", "type": "kindnet", "mode": string(mode), "mtu": 1400,
		"ranges": []string{range4, range6}, "ipamDir": n.ipamDir,
	}
	for k, v := range extra {
		c[k] = v
	}
	b, err := json.Marshal(c)
	if err != nil {
		n.t.Fatal(err)
	}
	return b
}

// call is one plugin execution.
type call struct {
	verb, id, netns, ifname string
	conf                    []byte
}

// command builds the plugin process; start it inside the node with
// n.ns.Do so it runs in the node's namespace.
func (c call) command() (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	self, _ := os.Executable()
	cmd := exec.Command(self)
	cmd.Env = []string{"CNI_COMMAND=" + c.verb, "CNI_CONTAINERID=" + c.id, "CNI_NETNS=" + c.netns,
		"CNI_IFNAME=" + c.ifname, "CNI_PATH=/nonexistent", "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(c.conf)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	return cmd, &stdout, &stderr
}

// run executes the plugin in the node's namespace and returns its stdout,
// or the CNI error it printed.
func (n *node) run(c call) ([]byte, *types.Error) {
	n.t.Helper()
	cmd, stdout, stderr := c.command()
	var runErr error
	if err := n.ns.Do(func() error { runErr = cmd.Run(); return nil }); err != nil {
		n.t.Fatalf("enter node namespace: %v", err)
	}
	if runErr == nil {
		return stdout.Bytes(), nil
	}
	var e types.Error
	if err := json.Unmarshal(stdout.Bytes(), &e); err != nil || e.Code == 0 {
		n.t.Fatalf("%s %s: %v, and stdout holds no CNI error: %q (stderr %q)", c.verb, c.id, runErr, stdout, stderr)
	}
	return nil, &e
}

// must runs the plugin and fails the test on a CNI error.
func (n *node) must(c call) []byte {
	n.t.Helper()
	out, e := n.run(c)
	if e != nil {
		n.t.Fatalf("%s %s: error %d: %s", c.verb, c.id, e.Code, e.Error())
	}
	return out
}

// add runs ADD and returns the result in the current spec's types.
func (n *node) add(version string, conf []byte, id string, pod *netnstest.NS) *types100.Result {
	n.t.Helper()
	out := n.must(call{verb: "ADD", id: id, netns: pod.Path(), ifname: "eth0", conf: conf})
	res, err := create.Create(version, out)
	if err != nil {
		n.t.Fatalf("ADD result is not a %s result: %v\n%s", version, err, out)
	}
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		n.t.Fatal(err)
	}
	return cur
}

// withPrev injects a result as prevResult, as a runtime does for CHECK and
// DEL.
func withPrev(t *testing.T, conf []byte, version string, res *types100.Result) []byte {
	t.Helper()
	r, err := res.GetAsVersion(version)
	if err != nil {
		t.Fatal(err)
	}
	rb, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var c map[string]any
	_ = json.Unmarshal(conf, &c)
	var prev map[string]any
	_ = json.Unmarshal(rb, &prev)
	c["prevResult"] = prev
	b, _ := json.Marshal(c)
	return b
}

// allocations reads the IPAM store of the test network.
func (n *node) allocations() []ipam.Allocation {
	n.t.Helper()
	all, err := ipam.New(n.ipamDir, "kindnet").List()
	if err != nil {
		n.t.Fatalf("IPAM store: %v", err)
	}
	return all
}

// hostLinks lists the node's links the plugin made (name kn…).
func (n *node) hostLinks() []string {
	n.t.Helper()
	links, err := n.ns.NL.LinkList()
	if err != nil {
		n.t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, "kn") && l.Type() == "veth" {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// hostPortRules lists the comments of the rules in the hostPort table.
func (n *node) hostPortRules() []string {
	n.t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(n.ns.Fd()))
	if err != nil {
		n.t.Fatal(err)
	}
	tbl := &nftables.Table{Name: hostport.DefaultTable, Family: nftables.TableFamilyINet}
	var out []string
	for _, ch := range []string{"hostports", "localhost", "postrouting"} {
		rules, err := c.GetRules(tbl, &nftables.Chain{Name: ch, Table: tbl})
		if err != nil {
			continue // no table yet
		}
		for _, r := range rules {
			s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			out = append(out, s)
		}
	}
	return out
}

// assertNothingLeft checks the node holds no trace of any attachment: no
// pod veth, no address allocated, no hostPort rule.
func (n *node) assertNothingLeft(when string) {
	n.t.Helper()
	if l := n.hostLinks(); len(l) > 0 {
		n.t.Errorf("%s: host links left: %v", when, l)
	}
	if a := n.allocations(); len(a) > 0 {
		n.t.Errorf("%s: allocations left: %+v", when, a)
	}
	if r := n.hostPortRules(); len(r) > 0 {
		n.t.Errorf("%s: hostPort rules left: %v", when, r)
	}
}

// ping checks that from can reach dst (three tries of a second: the first
// packet on a fresh link may wait for the link to come up).
func ping(t *testing.T, from *netnstest.NS, dst netip.Addr) {
	t.Helper()
	var out string
	var err error
	for range 3 {
		if out, err = from.Run("ping", "-n", "-q", "-c", "1", "-W", "1", dst.String()); err == nil {
			return
		}
	}
	t.Errorf("ping %s from %s: %v\n%s", dst, from.Name, err, out)
}

func addrsOf(t *testing.T, nl *netlink.Handle, ifname string) []netip.Prefix {
	t.Helper()
	l, err := nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("%s: %v", ifname, err)
	}
	addrs, err := nl.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if p, ok := netipx.FromStdIPNet(a.IPNet); ok && !p.Addr().IsLinkLocalUnicast() {
			out = append(out, p)
		}
	}
	return out
}

func readSysctl(t *testing.T, ns *netnstest.NS, key string) string {
	t.Helper()
	var v []byte
	err := ns.Do(func() (err error) {
		v, err = os.ReadFile("/proc/sys/net/" + key)
		return err
	})
	if err != nil {
		t.Fatalf("read net.%s in %s: %v", key, ns.Name, err)
	}
	return strings.TrimSpace(string(v))
}

func id(prefix string, i int) string { return fmt.Sprintf("%s-%04d", prefix, i) }
