// Package masq converges kindnet's nftables table (family inet) that
// masquerades pod traffic leaving the cluster: the source is a pod address,
// the destination is neither a pod range, a no-masquerade range nor a local
// address. Pod-to-pod traffic keeps the pod address.
//
// It owns exactly one table, named by the config (default "kindnet"), and
// replaces it whole in one netlink batch. It never lists, flushes or changes
// any other table: other software's rules are not its business.
package masq

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/nftutil"
)

// Reconciler owns one nftables table.
type Reconciler struct {
	// Table is the name of the inet table kindnet owns.
	Table string
	// Enabled false means the table must not exist.
	Enabled bool
	// NoMasquerade are extra destinations that keep the pod address.
	NoMasquerade []netip.Prefix
	// NetNSFd, when non-zero, is the network namespace to manage (tests);
	// zero means the agent's own namespace.
	NetNSFd int
}

// Result reports one reconcile.
type Result struct {
	// Changed is true when the table was (re)written or removed.
	Changed bool
	// Present says whether the table exists after the run.
	Present bool
	// Pods and NoMasquerade are the ranges in force (both families).
	Pods, NoMasquerade []netip.Prefix
}

// Desired is the content the table should have for a snapshot.
type Desired struct {
	Pods         []netip.Prefix // sources that are pods
	NoMasquerade []netip.Prefix // destinations that keep the pod address
}

// desired derives the ranges: pods are the cluster ranges and every node's
// podCIDRs; pod traffic to any of those, or to a no-masquerade range, keeps
// its source address.
func (r *Reconciler) desired(snap *model.Snapshot) Desired {
	pods := mergePrefixes(append(slices.Clone(snap.ClusterCIDRs), snap.AllPodCIDRs()...))
	nomasq := mergePrefixes(append(slices.Clone(pods), r.NoMasquerade...))
	return Desired{Pods: pods, NoMasquerade: nomasq}
}

// Reconcile makes the table match the snapshot. When the table already holds
// exactly the desired sets and rules, nothing is written.
func (r *Reconciler) Reconcile(_ context.Context, snap *model.Snapshot) (Result, error) {
	c, err := nftutil.Open(r.NetNSFd)
	if err != nil {
		return Result{}, err
	}
	if !r.Enabled {
		// delete table inet kindnet
		removed, err := nftutil.DeleteTable(c, r.Table)
		return Result{Changed: removed}, err
	}
	d := r.desired(snap)
	res := Result{Present: true, Pods: d.Pods, NoMasquerade: d.NoMasquerade}
	want := build(r.Table, d)
	same, err := matches(c, want)
	if err != nil {
		return res, err
	}
	if same {
		return res, nil
	}
	if err := write(c, want); err != nil {
		return res, err
	}
	res.Changed = true
	return res, nil
}

// Cleanup removes the table. It reports whether there was one.
func Cleanup(table string, netnsFd int) (bool, error) {
	c, err := nftutil.Open(netnsFd)
	if err != nil {
		return false, err
	}
	// delete table inet <table>
	return nftutil.DeleteTable(c, table)
}

// Exists reports whether the table is present (for status and tests).
func Exists(table string, netnsFd int) (bool, error) {
	c, err := nftutil.Open(netnsFd)
	if err != nil {
		return false, err
	}
	// nft list tables inet
	t, err := nftutil.FindTable(c, table)
	return t != nil, err
}

// tableSpec is the whole table as it will be written.
type tableSpec struct {
	table *nftables.Table
	chain *nftables.Chain
	sets  []setSpec
	rules []*nftables.Rule
}

type setSpec struct {
	set      *nftables.Set
	elements []nftables.SetElement
}

const chainName = "postrouting"

// build lays out the table. For a dual-stack cluster it reads:
//
//	table inet kindnet {
//	  set pods-v4 { type ipv4_addr; flags interval; elements = { 10.244.0.0/16 } }
//	  set no-masquerade-v4 { type ipv4_addr; flags interval; elements = { ... } }
//	  set pods-v6 { type ipv6_addr; flags interval; elements = { fd00:10:244::/56 } }
//	  set no-masquerade-v6 { type ipv6_addr; flags interval; elements = { ... } }
//	  chain postrouting {
//	    type nat hook postrouting priority srcnat; policy accept;
//	    ip saddr @pods-v4 ip daddr != @no-masquerade-v4 fib daddr type != local masquerade fully-random
//	    ip6 saddr @pods-v6 ip6 daddr != @no-masquerade-v6 fib daddr type != local masquerade fully-random
//	  }
//	}
//
// A family with no pod range gets neither sets nor a rule.
func build(name string, d Desired) tableSpec {
	// table inet kindnet
	t := nftutil.INet(name)
	policy := nftables.ChainPolicyAccept
	// chain postrouting { type nat hook postrouting priority srcnat; policy accept; }
	ch := &nftables.Chain{
		Name: chainName, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &policy,
	}
	spec := tableSpec{table: t, chain: ch}
	digest := digestOf(d)
	for _, fam := range nftutil.Families {
		pods := fam.Filter(d.Pods)
		if len(pods) == 0 {
			continue
		}
		// set pods-v4 { type ipv4_addr; flags interval; comment "pod ranges"; elements = { ... } }
		podSet := newSet(fam, t, "pods-"+fam.Name, "pod ranges", pods)
		// set no-masquerade-v4 { type ipv4_addr; flags interval; comment "..."; elements = { ... } }
		noSet := newSet(fam, t, "no-masquerade-"+fam.Name, "destinations that keep the pod address", fam.Filter(d.NoMasquerade))
		spec.sets = append(spec.sets, podSet, noSet)
		spec.rules = append(spec.rules, &nftables.Rule{
			Table: t, Chain: ch,
			// ip saddr @pods-v4 ip daddr != @no-masquerade-v4 fib daddr type != local masquerade fully-random comment "..."
			Exprs:    masqExprs(fam, podSet.set, noSet.set),
			UserData: userdata.AppendString(nil, userdata.TypeComment, "kindnet: masquerade pods leaving the cluster "+fam.Name+" "+digest),
		})
	}
	return spec
}

// digestOf fingerprints the desired ranges; it is stored in each rule's
// comment so a reconcile can tell the rules are current without decoding
// every expression.
func digestOf(d Desired) string {
	h := sha256.New()
	for _, p := range d.Pods {
		fmt.Fprintf(h, "p%s;", p)
	}
	for _, p := range d.NoMasquerade {
		fmt.Fprintf(h, "n%s;", p)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// newSet builds an interval set of one family:
//
//	set <name> { type ipv4_addr; flags interval; comment "..."; elements = { ... } }
func newSet(f nftutil.Family, t *nftables.Table, name, comment string, ps []netip.Prefix) setSpec {
	s := &nftables.Set{Table: t, Name: name, KeyType: f.KeyType, Interval: true, Comment: comment}
	return setSpec{set: s, elements: intervalElements(ps)}
}

// masqExprs is one masquerade rule for the family:
//
//	ip saddr @pods-v4 ip daddr != @no-masquerade-v4 fib daddr type != local masquerade fully-random
func masqExprs(f nftutil.Family, pods, nomasq *nftables.Set) []expr.Any {
	// meta nfproto ipv4   (the inet family carries both; match ours)
	return append(f.NFProtoExprs(),
		// ip saddr @pods-v4
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.SAddr, Len: f.Size},
		&expr.Lookup{SourceRegister: 1, SetName: pods.Name, SetID: pods.ID},
		// ip daddr != @no-masquerade-v4
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: f.DAddr, Len: f.Size},
		&expr.Lookup{SourceRegister: 1, SetName: nomasq.Name, SetID: nomasq.ID, Invert: true},
		// fib daddr type != local
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		// masquerade fully-random   (spreads source ports: no conntrack clashes under load)
		&expr.Masq{FullyRandom: true},
	)
}

// write replaces the table in one batch: make sure it exists, delete it
// with everything in it, and create it anew. Readers of the ruleset see the
// old table or the new one, never a half-written one.
func write(c *nftables.Conn, s tableSpec) error {
	// add table inet kindnet; delete table inet kindnet; add table inet kindnet
	c.AddTable(s.table)
	c.DelTable(s.table)
	c.AddTable(s.table)
	for _, st := range s.sets {
		if err := c.AddSet(st.set, st.elements); err != nil {
			return fmt.Errorf("nftables set %s: %w", st.set.Name, err)
		}
	}
	c.AddChain(s.chain)
	for _, r := range s.rules {
		c.AddRule(r)
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("write nftables table inet %s: %w", s.table.Name, err)
	}
	return nil
}

// matches reports whether the kernel's table already equals the spec: same
// sets with the same elements, same chain, and rules carrying the same
// comments (which hold the digest of the ranges).
func matches(c *nftables.Conn, s tableSpec) (bool, error) {
	// nft list tables inet
	t, err := nftutil.FindTable(c, s.table.Name)
	if err != nil || t == nil {
		return false, err
	}
	sets, err := c.GetSets(t)
	if err != nil {
		return false, fmt.Errorf("list sets of inet %s: %w", t.Name, err)
	}
	if len(sets) != len(s.sets) {
		return false, nil
	}
	for _, want := range s.sets {
		i := slices.IndexFunc(sets, func(got *nftables.Set) bool { return got.Name == want.set.Name })
		if i < 0 || sets[i].KeyType.Name != want.set.KeyType.Name || !sets[i].Interval {
			return false, nil
		}
		els, err := c.GetSetElements(sets[i])
		if err != nil {
			return false, fmt.Errorf("list elements of set %s: %w", want.set.Name, err)
		}
		if elementsKey(els) != elementsKey(want.elements) {
			return false, nil
		}
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list chains: %w", err)
	}
	n := 0
	for _, ch := range chains {
		if ch.Table.Name != t.Name {
			continue
		}
		n++
		if ch.Name != chainName || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookPostrouting ||
			ch.Type != nftables.ChainTypeNAT || ch.Priority == nil || *ch.Priority != *nftables.ChainPriorityNATSource {
			return false, nil
		}
	}
	if n != 1 {
		return false, nil
	}
	rules, err := c.GetRules(t, s.chain)
	if err != nil {
		return false, fmt.Errorf("list rules of inet %s: %w", t.Name, err)
	}
	if len(rules) != len(s.rules) {
		return false, nil
	}
	for i := range rules {
		got, _ := userdata.GetString(rules[i].UserData, userdata.TypeComment)
		want, _ := userdata.GetString(s.rules[i].UserData, userdata.TypeComment)
		if got != want || len(rules[i].Exprs) != len(s.rules[i].Exprs) {
			return false, nil
		}
	}
	return true, nil
}

// elementsKey renders elements in a canonical order for comparison.
func elementsKey(els []nftables.SetElement) string {
	keys := make([]string, 0, len(els))
	for _, e := range els {
		keys = append(keys, fmt.Sprintf("%x/%t", e.Key, e.IntervalEnd))
	}
	slices.Sort(keys)
	return strings.Join(keys, ",")
}
