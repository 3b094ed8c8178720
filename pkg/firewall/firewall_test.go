package firewall

import (
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

var (
	pods4 = netip.MustParsePrefix("10.244.0.0/16")
	pods6 = netip.MustParsePrefix("fd00:10:244::/56")
)

// inNS runs a command inside the throwaway namespace (nft, iptables: the
// tools the firewalls themselves use, so the tables are the real thing).
func inNS(t *testing.T, ns *netnstest.NS, args ...string) {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func nftIn(t *testing.T, ns *netnstest.NS, ruleset string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns.Name, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft -f: %v\n%s\n%s", err, out, ruleset)
	}
}

func detectIn(t *testing.T, ns *netnstest.NS, ranges ...netip.Prefix) []Problem {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	probs, err := Detect(conn, Options{PodRanges: ranges, PodIface: "kn0123456789ab", Uplink: "eth0"})
	if err != nil {
		t.Fatalf("Detect: %v", err)
	}
	for _, p := range probs {
		t.Logf("found: %s", p)
	}
	return probs
}

func needTool(t *testing.T, tool string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("%s not found: `make deps` installs it", tool)
	}
}

// applyFix runs the fix a problem names, inside the namespace: the fix
// the status shows must be one that works.
func applyFix(t *testing.T, ns *netnstest.NS, fix string) {
	t.Helper()
	for _, c := range strings.Split(fix, "; ") {
		inNS(t, ns, strings.Fields(c)...)
	}
}

// TestDockerForwardPolicyDropIsReportedWithItsFix builds Docker's FORWARD
// chain with iptables (iptables-nft: the table ip filter), policy DROP and
// accepts only for docker0: forwarded pod traffic is dropped. The fix given
// (DOCKER-USER accepts) clears it.
func TestDockerForwardPolicyDropIsReportedWithItsFix(t *testing.T) {
	needTool(t, "iptables")
	needTool(t, "nft")
	ns := netnstest.New(t)
	for _, c := range [][]string{
		{"-N", "DOCKER-USER"}, {"-N", "DOCKER-FORWARD"}, {"-N", "DOCKER"},
		{"-P", "FORWARD", "DROP"},
		{"-A", "FORWARD", "-j", "DOCKER-USER"},
		{"-A", "FORWARD", "-j", "DOCKER-FORWARD"},
		{"-A", "DOCKER-USER", "-j", "RETURN"},
		{"-A", "DOCKER-FORWARD", "-o", "docker0", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"-A", "DOCKER-FORWARD", "-o", "docker0", "-j", "DOCKER"},
		{"-A", "DOCKER-FORWARD", "-i", "docker0", "-j", "ACCEPT"},
	} {
		inNS(t, ns, append([]string{"iptables"}, c...)...)
	}
	probs := detectIn(t, ns, pods4)
	if len(probs) != 1 {
		t.Fatalf("want one problem (Docker's FORWARD policy), got %v", probs)
	}
	p := probs[0]
	if p.Owner != "docker" || p.Table != "ip filter" || p.Chain != "FORWARD" || p.What != "policy drop" ||
		!strings.Contains(p.Fix, "iptables -I DOCKER-USER -s 10.244.0.0/16 -j ACCEPT") {
		t.Errorf("got %+v", p)
	}
	applyFix(t, ns, p.Fix)
	if probs := detectIn(t, ns, pods4); len(probs) != 0 {
		t.Errorf("after the fix (%s) still: %v", p.Fix, probs)
	}
}

// TestFirewalldTableIsReportedWithItsZoneFix: firewalld's inet table, as
// firewalld 1.x writes it (forward chain ending in a reject, interfaces
// dispatched to zones), rejects forwarded pod traffic; the fix names the
// trusted zone. With the pod ranges as sources of an accepting zone (what
// that fix makes firewalld write), it is no longer reported.
func TestFirewalldTableIsReportedWithItsZoneFix(t *testing.T) {
	needTool(t, "nft")
	ns := netnstest.New(t)
	nftIn(t, ns, `
table inet firewalld {
	set trusted_sources4 { type ipv4_addr; flags interval; }
	chain filter_FORWARD {
		type filter hook forward priority filter + 10; policy accept;
		ct state established,related accept
		ct status dnat accept
		iifname "lo" accept
		ct state invalid drop
		ip6 daddr { ::/96, ::ffff:0.0.0.0/96, 2002::/24 } reject with icmpv6 addr-unreachable
		jump filter_FORWARD_ZONES
		reject with icmpx admin-prohibited
	}
	chain filter_FORWARD_ZONES {
		ip saddr @trusted_sources4 goto filter_FWD_trusted
		iifname "eth0" goto filter_FWD_public
	}
	chain filter_FWD_trusted { accept; }
	chain filter_FWD_public {
		meta l4proto { icmp, ipv6-icmp } accept
	}
}`)
	probs := detectIn(t, ns, pods4)
	if len(probs) != 1 {
		t.Fatalf("want one problem (firewalld), got %v", probs)
	}
	p := probs[0]
	if p.Owner != "firewalld" || p.Table != "inet firewalld" || p.Chain != "filter_FORWARD" ||
		p.Fix != "firewall-cmd --permanent --zone=trusted --add-source=10.244.0.0/16; firewall-cmd --reload" {
		t.Errorf("got %+v", p)
	}
	if !strings.Contains(p.What, "rejects") {
		t.Errorf("what: %q, want the rule that rejects", p.What)
	}
	nftIn(t, ns, "add element inet firewalld trusted_sources4 { 10.244.0.0/16 }\n")
	if probs := detectIn(t, ns, pods4); len(probs) != 0 {
		t.Errorf("with the pod range in the trusted zone's sources still: %v", probs)
	}
}

// TestNftForwardPolicyDropIsReportedForBothFamilies: a native inet table
// with a forward chain of policy drop, in a dual-stack cluster; the fix
// names both families and, applied, clears it.
func TestNftForwardPolicyDropIsReportedForBothFamilies(t *testing.T) {
	needTool(t, "nft")
	ns := netnstest.New(t)
	nftIn(t, ns, `
table inet hostfw {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "docker0" accept
	}
}`)
	probs := detectIn(t, ns, pods4, pods6)
	if len(probs) != 1 {
		t.Fatalf("want one problem, got %v", probs)
	}
	p := probs[0]
	if p.Owner != "nftables" || p.Table != "inet hostfw" || p.Chain != "forward" || p.What != "policy drop" ||
		!strings.Contains(p.Fix, "nft insert rule inet hostfw forward ip saddr 10.244.0.0/16 accept") ||
		!strings.Contains(p.Fix, "nft insert rule inet hostfw forward ip6 daddr fd00:10:244::/56 accept") {
		t.Errorf("got %+v", p)
	}
	applyFix(t, ns, p.Fix)
	if probs := detectIn(t, ns, pods4, pods6); len(probs) != 0 {
		t.Errorf("after the fix (%s) still: %v", p.Fix, probs)
	}
}

// TestRuleThatDropsPodRangeIsReported: a forward policy of accept with one
// rule dropping traffic to the pod range (iptables -A FORWARD -d … -j DROP).
func TestRuleThatDropsPodRangeIsReported(t *testing.T) {
	needTool(t, "iptables")
	ns := netnstest.New(t)
	inNS(t, ns, "iptables", "-A", "FORWARD", "-d", "10.244.0.0/16", "-j", "DROP")
	probs := detectIn(t, ns, pods4)
	if len(probs) != 1 || probs[0].Owner != "iptables" || !strings.Contains(probs[0].What, "drops") {
		t.Fatalf("want the iptables FORWARD rule reported, got %v", probs)
	}
}

// TestBenignForwardChainsAreNotReported: chains that accept pod traffic —
// policy accept with drops only for other interfaces, invalid packets or a
// port the probe cannot know; policy drop with the pod ranges accepted
// from a set; kindnet's own NetworkPolicy table, which drops on purpose —
// are not reported.
func TestBenignForwardChainsAreNotReported(t *testing.T) {
	needTool(t, "nft")
	ns := netnstest.New(t)
	nftIn(t, ns, `
table inet benign {
	chain forward_ {
		type filter hook forward priority 0; policy accept;
		ct state invalid drop
		iifname "docker0" oifname "eth0" drop
		tcp dport 22 drop
		ip saddr 192.0.2.0/24 drop
	}
}
table ip allowed {
	set pods { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 } }
	chain forward_ {
		type filter hook forward priority 0; policy drop;
		ip saddr @pods ip daddr @pods accept
	}
}
table inet kindnet-policy {
	chain forward {
		type filter hook forward priority 0; policy drop;
	}
}`)
	if probs := detectIn(t, ns, pods4); len(probs) != 0 {
		t.Errorf("benign chains reported: %v", probs)
	}
}

// TestNoPodRangesChecksNothing: without pod ranges there is no pod
// traffic to probe, and Detect does not read the ruleset.
func TestNoPodRangesChecksNothing(t *testing.T) {
	probs, err := Detect(nil, Options{})
	if err != nil || probs != nil {
		t.Fatalf("Detect without ranges: %v %v", probs, err)
	}
}

func TestLastBut1(t *testing.T) {
	for in, want := range map[string]string{
		"10.244.0.0/16":    "10.244.255.254",
		"10.0.0.0/30":      "10.0.0.2",
		"10.0.0.0/31":      "10.0.0.1",
		"fd00:10:244::/56": "fd00:10:244:ff:ffff:ffff:ffff:fffe",
	} {
		if got := lastBut1(netip.MustParsePrefix(in)).String(); got != want {
			t.Errorf("lastBut1(%s) = %s, want %s", in, got, want)
		}
	}
}
