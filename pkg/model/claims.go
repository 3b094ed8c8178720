package model

import (
	"net/netip"
	"slices"
	"sort"
)

// claims indexes what the peers accepted so far claim — their addresses
// and podCIDRs — so that checking one more peer costs a few map lookups and
// a binary search, not a scan of every accepted peer. With the scans, one
// validation of 5,000 nodes took 30 s and 3.8 GB of allocations (measured),
// and the agent validates on every change.
type claims struct {
	addrOwner map[netip.Addr]int   // accepted address → position in Snapshot.Peers
	cidrOwner map[netip.Prefix]int // accepted podCIDR → position; these never overlap
	// Every candidate's parsed podCIDRs and addresses, sorted by address,
	// with the candidate they belong to. Range queries read them and keep
	// only the candidates accepted so far.
	cidrs []claimed[netip.Prefix]
	addrs []claimed[netip.Addr]
	pos   []int // candidate → position in Snapshot.Peers, -1 until accepted
}

type claimed[T any] struct {
	v    T
	cand int
}

func newClaims(parsed []parsedNode) *claims {
	c := &claims{addrOwner: map[netip.Addr]int{}, cidrOwner: map[netip.Prefix]int{}, pos: make([]int, len(parsed))}
	for i, pn := range parsed {
		c.pos[i] = -1
		for _, a := range pn.addrs {
			c.addrs = append(c.addrs, claimed[netip.Addr]{a, i})
		}
		for _, p := range pn.cidrs {
			c.cidrs = append(c.cidrs, claimed[netip.Prefix]{p, i})
		}
	}
	slices.SortFunc(c.addrs, func(a, b claimed[netip.Addr]) int { return a.v.Compare(b.v) })
	slices.SortFunc(c.cidrs, func(a, b claimed[netip.Prefix]) int { return a.v.Addr().Compare(b.v.Addr()) })
	return c
}

// accept records candidate cand, accepted as Snapshot.Peers[pos].
func (c *claims) accept(cand, pos int, p Peer) {
	c.pos[cand] = pos
	for _, a := range p.Addrs {
		c.addrOwner[a] = pos
	}
	for _, q := range p.PodCIDRs {
		c.cidrOwner[q] = pos
	}
}

// cidrContaining returns the accepted podCIDR that holds a, if any (at most
// one does: accepted podCIDRs never overlap).
func (c *claims) cidrContaining(a netip.Addr) (netip.Prefix, int, bool) {
	for bits := 0; bits <= a.BitLen(); bits++ {
		p, _ := a.Prefix(bits)
		if at, ok := c.cidrOwner[p]; ok {
			return p, at, true
		}
	}
	return netip.Prefix{}, 0, false
}

// firstOverlap returns, among the accepted podCIDRs overlapping cidr, the
// one accepted first: those containing it are found by lookup, those inside
// it in the sorted range of its addresses.
func (c *claims) firstOverlap(cidr netip.Prefix) (int, netip.Prefix, bool) {
	best, bestP := -1, netip.Prefix{}
	for bits := 0; bits <= cidr.Bits(); bits++ {
		p, _ := cidr.Addr().Prefix(bits)
		if at, ok := c.cidrOwner[p]; ok && (best < 0 || at < best) {
			best, bestP = at, p
		}
	}
	lo, hi := cidr.Masked().Addr(), lastAddr(cidr)
	i := sort.Search(len(c.cidrs), func(i int) bool { return c.cidrs[i].v.Addr().Compare(lo) >= 0 })
	for ; i < len(c.cidrs) && c.cidrs[i].v.Addr().Compare(hi) <= 0; i++ {
		e := c.cidrs[i]
		if at := c.pos[e.cand]; at >= 0 && e.v.Bits() > cidr.Bits() && (best < 0 || at < best) {
			best, bestP = at, e.v
		}
	}
	return best, bestP, best >= 0
}

// firstAddrIn returns, among the accepted peers with an address inside
// cidr, the one accepted first, and that address.
func (c *claims) firstAddrIn(cidr netip.Prefix) (int, netip.Addr, bool) {
	best, bestA := -1, netip.Addr{}
	lo, hi := cidr.Masked().Addr(), lastAddr(cidr)
	i := sort.Search(len(c.addrs), func(i int) bool { return c.addrs[i].v.Compare(lo) >= 0 })
	for ; i < len(c.addrs) && c.addrs[i].v.Compare(hi) <= 0; i++ {
		e := c.addrs[i]
		if at := c.pos[e.cand]; at >= 0 && (best < 0 || at < best) {
			best, bestA = at, e.v
		}
	}
	return best, bestA, best >= 0
}

// lastAddr is the highest address of a prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for bit := p.Bits(); bit < len(b)*8; bit++ {
		b[bit/8] |= 0x80 >> (bit % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
