package hostport

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/nftables"

	"github.com/kindnet-dev/kindnet/internal/golden"
	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

var (
	podIPs = []netip.Addr{netip.MustParseAddr("10.244.1.5"), netip.MustParseAddr("fd00:10:244:1::5")}
	web    = []Mapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}, {HostPort: 53, ContainerPort: 5353, Protocol: "udp", HostIP: netip.MustParseAddr("192.168.1.1")}}
)

func hairpin(ips []netip.Addr) []netip.Prefix {
	var out []netip.Prefix
	for _, ip := range ips {
		out = append(out, netip.PrefixFrom(ip, ip.BitLen()))
	}
	return out
}

func owners(t *testing.T, tbl Table) []string {
	t.Helper()
	c, err := tbl.conn()
	if err != nil {
		t.Fatal(err)
	}
	rules, err := tbl.listRules(c)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range rules {
		o, _ := ruleOwner(r)
		if !slices.Contains(out, o) {
			out = append(out, o)
		}
	}
	slices.Sort(out)
	return out
}

func TestConcurrentFirstAddsCreateOneSkeleton(t *testing.T) {
	ns := netnstest.New(t)
	tbl := Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- tbl.Add(Owner("kindnet", "c"+string(rune('a'+i)), "eth0"), podIPs, hairpin(podIPs), web[:1])
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	c, _ := nftables.New(nftables.WithNetNSFd(ns.Fd()))
	tb := tbl.table()
	for _, ch := range []string{chainPrerouting, chainOutput} {
		rules, err := c.GetRules(tb, &nftables.Chain{Name: ch, Table: tb})
		if err != nil || len(rules) != 2 {
			t.Errorf("chain %s has %d rules (%v), want the 2 jump rules once", ch, len(rules), err)
		}
	}
	if got := owners(t, tbl); len(got) != 10 {
		t.Errorf("rules of %d attachments, want 10: %v", len(got), got)
	}
}

func TestRulesOfOneFamilyMappingAndTheirText(t *testing.T) {
	ns := netnstest.New(t)
	tbl := Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	if err := tbl.Add("kindnet/c1/eth0", podIPs, hairpin(podIPs), web); err != nil {
		t.Fatal(err)
	}
	// The whole table: the skeleton (prerouting and output jump to
	// hostports for local destinations but loopback), a DNAT per family for
	// the wildcard mapping, only an IPv4 one for the 192.168.1.1 mapping,
	// and the hairpin masquerade.
	golden.Check(t, "testdata/one-pod.golden", []byte(ns.Exec(t, "nft", "list", "table", "inet", "kindnet_hostport")))
	if err := tbl.Check("kindnet/c1/eth0", podIPs, hairpin(podIPs), web); err != nil {
		t.Errorf("Check right after Add: %v", err)
	}
	if err := tbl.Check("kindnet/c1/eth0", podIPs, hairpin(podIPs), web[:1]); err == nil {
		t.Error("Check accepted an extra mapping")
	}
	v6only := []Mapping{{HostPort: 80, ContainerPort: 80, Protocol: "tcp", HostIP: netip.MustParseAddr("fd00::1")}}
	if err := tbl.Add("kindnet/c2/eth0", podIPs[:1], nil, v6only); err == nil || !strings.Contains(err.Error(), "no address of the family") {
		t.Errorf("IPv6 hostIP for an IPv4-only pod: %v", err)
	}
}

func TestRemoveAndGCTouchOnlyTheirOwnRules(t *testing.T) {
	ns := netnstest.New(t)
	tbl := Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	for _, o := range []string{"a/c1/eth0", "a/c2/eth0", "a/c3/eth0", "b/c1/eth0"} {
		if err := tbl.Add(o, podIPs, hairpin(podIPs), web); err != nil {
			t.Fatal(err)
		}
	}
	n, err := tbl.Remove("a/c1/eth0")
	if err != nil || n != 6 { // per family: dnat tcp, dnat udp (v4 only), hairpin tcp, hairpin udp (v4 only)
		t.Errorf("Remove: %d rules, %v; want 6", n, err)
	}
	if n, _ := tbl.Remove("a/c1/eth0"); n != 0 {
		t.Errorf("second Remove deleted %d rules", n)
	}
	if _, err := tbl.GC("a", func(o string) bool { return o == "a/c3/eth0" }); err != nil {
		t.Fatal(err)
	}
	if got := owners(t, tbl); !slices.Equal(got, []string{"a/c3/eth0", "b/c1/eth0"}) {
		t.Errorf("left %v, want a/c3 and network b's rules", got)
	}
	if removed, err := Cleanup("kindnet_hostport", ns.Fd()); !removed || err != nil {
		t.Errorf("Cleanup: %v %v", removed, err)
	}
	if n, err := tbl.Remove("a/c3/eth0"); n != 0 || err != nil {
		t.Errorf("Remove without a table: %d %v", n, err)
	}
}

var (
	localhost = netip.MustParseAddr("127.0.0.1")
	onLo      = []Mapping{
		{HostPort: 54323, ContainerPort: 80, Protocol: "tcp", HostIP: localhost},
		{HostPort: 54323, ContainerPort: 8053, Protocol: "udp", HostIP: localhost},
	}
)

// guardRules returns the guard chain's rules as the kernel holds them.
func guardRules(t *testing.T, tbl Table) []*nftables.Rule {
	t.Helper()
	c, err := tbl.conn()
	if err != nil {
		t.Fatal(err)
	}
	tb := tbl.table()
	rules, err := c.GetRules(tb, &nftables.Chain{Name: chainGuard, Table: tb})
	if err != nil {
		t.Fatalf("guard chain: %v", err)
	}
	return rules
}

func TestLocalhostMappingDNATsNodeTrafficOnlyAndInstallsTheGuard(t *testing.T) {
	ns := netnstest.New(t)
	tbl := Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	if AnyLocalhost(web) || !AnyLocalhost(onLo) {
		t.Fatal("AnyLocalhost does not tell loopback hostIPs from others")
	}
	if err := tbl.Add("kindnet/c1/eth0", podIPs, hairpin(podIPs), onLo); err != nil {
		t.Fatal(err)
	}
	// The whole table: the DNAT of 127.0.0.1 in a chain hooked on output
	// only (no packet from outside is DNATed), the masquerade of loopback
	// sources, the guard dropping 127/8 on any interface but lo, and no
	// IPv6 or hairpin rule and no rule in the hostports chain.
	golden.Check(t, "testdata/localhost.golden", []byte(ns.Exec(t, "nft", "list", "table", "inet", "kindnet_hostport")))
	if err := tbl.Check("kindnet/c1/eth0", podIPs, hairpin(podIPs), onLo); err != nil {
		t.Errorf("Check right after Add: %v", err)
	}
	ns.Exec(t, "nft", "flush", "chain", "inet", "kindnet_hostport", chainGuard)
	if err := tbl.Check("kindnet/c1/eth0", podIPs, hairpin(podIPs), onLo); err == nil || !strings.Contains(err.Error(), "127.0.0.0/8 local") {
		t.Errorf("Check with the guard flushed: %v", err)
	}
	// The next ADD with a loopback mapping makes the guard whole again.
	if err := tbl.Add("kindnet/c2/eth0", podIPs, hairpin(podIPs), onLo[:1]); err != nil {
		t.Fatal(err)
	}
	if n := len(guardRules(t, tbl)); n != 2 {
		t.Errorf("guard has %d rules after repair, want 2", n)
	}
	if n, err := tbl.Remove("kindnet/c1/eth0"); err != nil || n != 4 { // 2 DNAT + 2 masquerade
		t.Errorf("Remove: %d rules, %v; want 4", n, err)
	}
	if got := owners(t, tbl); !slices.Equal(got, []string{"kindnet/c2/eth0"}) {
		t.Errorf("left %v, want only c2's rules", got)
	}
	// The guard belongs to no attachment: it stays while the table does.
	if _, err := tbl.GC("kindnet", func(string) bool { return false }); err != nil {
		t.Fatal(err)
	}
	if n := len(guardRules(t, tbl)); n != 2 {
		t.Errorf("guard has %d rules after GC of every attachment, want 2", n)
	}
}

func TestIPv6LoopbackHostIPIsRefusedNamingWhy(t *testing.T) {
	m := Mapping{HostPort: 80, ContainerPort: 80, Protocol: "tcp", HostIP: netip.IPv6Loopback()}
	err := Validate(m)
	if err == nil || !strings.Contains(err.Error(), "::1") || !strings.Contains(err.Error(), "route_localnet") {
		t.Errorf("Validate(::1): %v, want an error naming ::1 and why", err)
	}
	for _, ip := range []string{"127.0.0.1", "127.0.0.53", "192.168.1.1", "fd00::1"} {
		if err := Validate(Mapping{HostPort: 80, ContainerPort: 80, Protocol: "tcp", HostIP: netip.MustParseAddr(ip)}); err != nil {
			t.Errorf("Validate(%s): %v", ip, err)
		}
	}
	ns := netnstest.New(t)
	tbl := Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	if err := tbl.Add("kindnet/c1/eth0", podIPs, hairpin(podIPs), []Mapping{m}); err == nil {
		t.Error("Add accepted ::1")
	}
	if err := tbl.Add("kindnet/c1/eth0", podIPs[1:], nil, onLo); err == nil || !strings.Contains(err.Error(), "no address of the family") {
		t.Errorf("127.0.0.1 for an IPv6-only pod: %v", err)
	}
}

// Concurrent first ADDs with loopback mappings, into a table an older
// kindnet made (no localhost chains), end with the guard exactly once; a
// later ADD that finds it whole leaves it untouched (same rule handles,
// so its counters keep counting).
func TestGuardIsMadeOnceInAnOldTableAndLeftAloneAfterwards(t *testing.T) {
	ns := netnstest.New(t)
	tbl := Table{Name: "kindnet_hostport", NetNSFd: ns.Fd()}
	if err := tbl.Add("kindnet/old/eth0", podIPs, hairpin(podIPs), web); err != nil {
		t.Fatal(err)
	}
	if out := ns.Exec(t, "nft", "list", "table", "inet", "kindnet_hostport"); strings.Contains(out, chainGuard) || strings.Contains(out, "chain localhost") {
		t.Fatalf("a table without loopback mappings got the localhost chains:\n%s", out)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- tbl.Add(Owner("kindnet", "lo"+string(rune('a'+i)), "eth0"), podIPs, hairpin(podIPs), onLo)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	before := guardRules(t, tbl)
	if len(before) != 2 {
		t.Fatalf("guard has %d rules after 10 concurrent ADDs, want 2", len(before))
	}
	if got := owners(t, tbl); len(got) != 11 {
		t.Errorf("rules of %d attachments, want 11: %v", len(got), got)
	}
	if err := tbl.Add("kindnet/later/eth0", podIPs, hairpin(podIPs), onLo); err != nil {
		t.Fatal(err)
	}
	after := guardRules(t, tbl)
	if len(after) != 2 || after[0].Handle != before[0].Handle || after[1].Handle != before[1].Handle {
		t.Errorf("a complete guard was rewritten: handles %d,%d -> %v", before[0].Handle, before[1].Handle, after)
	}
}
