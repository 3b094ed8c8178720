// Package firewall finds other programs' firewalls that drop the pod
// traffic kindnet routes: nftables base chains at the forward hook — native
// ones and the tables iptables-nft writes for Docker, ufw and plain
// iptables — that drop or reject a forwarded packet between pods, and
// firewalld's table. An accept in kindnet's own table cannot override a
// drop in theirs (every base chain at a hook must accept a packet), so the
// agent can only report them, with the fix, in its status.
//
// It only reads the ruleset. It never adds, changes, flushes or deletes
// any table, chain, rule or set — not another program's, not kindnet's.
// Legacy iptables (x_tables, not nf_tables) is invisible to it.
package firewall

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
)

// Problem is one firewall that drops pod traffic, and how to stop it.
type Problem struct {
	// Owner is who wrote the table: "firewalld", "docker", "ufw",
	// "iptables" or "nftables".
	Owner string
	// Table is "family name", e.g. "ip filter"; Chain the base chain at
	// the forward hook that drops.
	Table string
	Chain string
	// What says how it drops: "policy drop", "rule handle 7 drops", …
	What string
	// Fix is the command or setting that lets pod traffic through, in
	// that program's own terms.
	Fix string
}

func (p Problem) String() string {
	return fmt.Sprintf("%s drops forwarded pod traffic (%s %s: %s); fix: %s", p.Owner, p.Table, p.Chain, p.What, p.Fix)
}

// Options say what pod traffic looks like on this node.
type Options struct {
	// PodRanges are the cluster's pod ranges (clusterCIDRs, or else every
	// known podCIDR). Nothing is checked without them.
	PodRanges []netip.Prefix
	// PodIface is the name of a host-side pod interface ("kn…" in ptp
	// mode, the bridge in bridge mode), what iifname/oifname rules see;
	// Uplink the interface towards the other nodes. Empty: unknown (rules
	// on an unknown name neither match nor fail to).
	PodIface, Uplink string
	// Own reports kindnet's own tables (its NetworkPolicy table drops on
	// purpose); tables named kindnet* in family inet are always its own.
	Own func(family nftables.TableFamily, table string) bool
}

// Detect reads the ruleset through conn and returns the firewalls that
// drop traffic between pods of PodRanges crossing this node.
func Detect(conn *nftables.Conn, o Options) ([]Problem, error) {
	if len(o.PodRanges) == 0 {
		return nil, nil
	}
	rs, err := readRuleset(conn)
	if err != nil {
		return nil, err
	}
	return detect(rs, o), nil
}

func detect(rs *ruleset, o Options) []Problem {
	var out []Problem
	firewalld := map[string]bool{} // tables already reported for firewalld
	for _, c := range rs.baseForward() {
		if own(o, c.Table) {
			continue
		}
		fam := familyName(c.Table.Family)
		for _, p := range probes(o, c.Table.Family) {
			res := rs.run(c, p)
			if res.verdict != verdictDrop && !(res.verdict == verdictUnknown && isFirewalld(c.Table)) {
				continue
			}
			what := res.what
			if res.verdict == verdictUnknown {
				what = "firewalld rejects forwarded traffic from sources in no zone that allows it"
			}
			prob := Problem{Table: fam + " " + c.Table.Name, Chain: c.Name, What: what}
			prob.Owner, prob.Fix = ownerAndFix(rs, c, o.PodRanges)
			if prob.Owner == "firewalld" {
				if firewalld[prob.Table] {
					break
				}
				firewalld[prob.Table] = true
			}
			out = append(out, prob)
			break // one report per chain
		}
	}
	return out
}

func own(o Options, t *nftables.Table) bool {
	if t.Family == nftables.TableFamilyINet && strings.HasPrefix(t.Name, "kindnet") {
		return true
	}
	return o.Own != nil && o.Own(t.Family, t.Name)
}

func isFirewalld(t *nftables.Table) bool { return t.Name == "firewalld" }

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyINet:
		return "inet"
	}
	return fmt.Sprint(f)
}

// ownerAndFix names who wrote the chain's table and how to let pod traffic
// through there. Docker and ufw write iptables rules (through iptables-nft
// they are the tables ip/ip6 filter); each has its own place for the
// operator's rules, which it keeps across its restarts.
func ownerAndFix(rs *ruleset, c *nftables.Chain, ranges []netip.Prefix) (owner, fix string) {
	fam := c.Table.Family
	var cmds []string
	each := func(f func(r netip.Prefix, tool string) []string) string {
		for _, r := range ranges {
			if !familyMatches(fam, r) {
				continue
			}
			tool := "iptables"
			if r.Addr().Is6() {
				tool = "ip6tables"
			}
			cmds = append(cmds, f(r, tool)...)
		}
		return strings.Join(cmds, "; ")
	}
	switch {
	case isFirewalld(c.Table):
		cmds = nil
		for _, r := range ranges {
			cmds = append(cmds, "firewall-cmd --permanent --zone=trusted --add-source="+r.String())
		}
		return "firewalld", strings.Join(append(cmds, "firewall-cmd --reload"), "; ")
	case rs.hasChain(c.Table, "DOCKER-USER"):
		return "docker", each(func(r netip.Prefix, tool string) []string {
			return []string{tool + " -I DOCKER-USER -s " + r.String() + " -j ACCEPT", tool + " -I DOCKER-USER -d " + r.String() + " -j ACCEPT"}
		})
	case rs.hasChainPrefix(c.Table, "ufw"):
		return "ufw", each(func(r netip.Prefix, _ string) []string {
			return []string{"ufw route allow from " + r.String(), "ufw route allow to " + r.String()}
		})
	case c.Table.Name == "filter" && c.Name == "FORWARD" && fam != nftables.TableFamilyINet:
		return "iptables", each(func(r netip.Prefix, tool string) []string {
			return []string{tool + " -I FORWARD -s " + r.String() + " -j ACCEPT", tool + " -I FORWARD -d " + r.String() + " -j ACCEPT"}
		})
	}
	f := familyName(fam)
	return "nftables", each(func(r netip.Prefix, _ string) []string {
		ip := "ip"
		if r.Addr().Is6() {
			ip = "ip6"
		}
		loc := f + " " + c.Table.Name + " " + c.Name
		return []string{"nft insert rule " + loc + " " + ip + " saddr " + r.String() + " accept",
			"nft insert rule " + loc + " " + ip + " daddr " + r.String() + " accept"}
	})
}

func familyMatches(f nftables.TableFamily, r netip.Prefix) bool {
	switch f {
	case nftables.TableFamilyIPv4:
		return r.Addr().Is4()
	case nftables.TableFamilyIPv6:
		return r.Addr().Is6()
	}
	return true
}

// probes are the packets a forward chain must accept: the first packet of
// a connection from a pod to a pod on another node (in from a pod
// interface, out the uplink) and the reply coming back (in from the
// uplink, out to the pod, conntrack established), for each family the
// table sees.
func probes(o Options, fam nftables.TableFamily) []packet {
	var out []packet
	for _, r := range o.PodRanges {
		if !familyMatches(fam, r) {
			continue
		}
		a, b := r.Masked().Addr().Next(), lastBut1(r)
		out = append(out,
			packet{src: a, dst: b, iif: o.PodIface, oif: o.Uplink, ctState: ctNew},
			packet{src: b, dst: a, iif: o.Uplink, oif: o.PodIface, ctState: ctEstablished})
	}
	return out
}

// lastBut1 is the address before the last of r: another pod's, as far
// from the first as the range allows.
func lastBut1(r netip.Prefix) netip.Addr {
	a := r.Masked().Addr().AsSlice()
	bits := r.Addr().BitLen() - r.Bits()
	for i := len(a) - 1; i >= 0 && bits > 0; i-- {
		n := min(bits, 8)
		a[i] |= byte(1<<n - 1)
		bits -= n
	}
	last, _ := netip.AddrFromSlice(a)
	if p := last.Prev(); r.Contains(p) && p != r.Masked().Addr() {
		return p
	}
	return last
}
