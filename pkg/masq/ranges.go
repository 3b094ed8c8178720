package masq

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"go4.org/netipx"
)

// mergePrefixes sorts prefixes and drops those inside another one, so the
// desired state has one canonical form.
func mergePrefixes(in []netip.Prefix) []netip.Prefix {
	ps := slices.Clone(in)
	for i := range ps {
		ps[i] = ps[i].Masked()
	}
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	var out []netip.Prefix
	for _, p := range ps {
		if n := len(out); n > 0 && out[n-1].Addr().Is4() == p.Addr().Is4() &&
			out[n-1].Bits() <= p.Bits() && out[n-1].Contains(p.Addr()) {
			continue // inside the previous (wider) prefix
		}
		out = append(out, p)
	}
	return out
}

// intervalElements turns prefixes of one family into the elements of an
// nftables interval set: each range is a start element and an end element
// one past its last address, which is how nft itself stores "10.0.0.0/8";
// a range that runs to the top of the address space has no end element.
// Touching or overlapping ranges are merged first (netipx.IPSet keeps the
// fewest ranges that cover the union): the kernel refuses overlapping
// intervals.
//
//	elements = { 10.0.0.0/23, 240.0.0.0/4 }
func intervalElements(ps []netip.Prefix) []nftables.SetElement {
	var b netipx.IPSetBuilder
	for _, p := range ps {
		b.AddPrefix(p.Masked())
	}
	set, _ := b.IPSet() // the prefixes are valid: they come from a validated snapshot or config
	var els []nftables.SetElement
	for _, r := range set.Ranges() {
		els = append(els, nftables.SetElement{Key: r.From().AsSlice()})
		if end := r.To().Next(); end.IsValid() {
			els = append(els, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return els
}
