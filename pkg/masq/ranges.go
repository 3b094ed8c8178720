package masq

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
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

// span is a half-open address range [start, end); end is invalid when the
// range runs to the top of the address space.
type span struct{ start, end netip.Addr }

// intervalElements turns prefixes of one family into the elements of an
// nftables interval set: each range is a start element and an end element
// one past its last address, which is how nft itself stores "10.0.0.0/8".
// Touching or overlapping ranges are merged first: the kernel refuses
// overlapping intervals.
func intervalElements(ps []netip.Prefix) []nftables.SetElement {
	var spans []span
	for _, p := range mergePrefixes(ps) {
		s := span{start: p.Addr(), end: lastAddr(p).Next()}
		if n := len(spans); n > 0 && spans[n-1].end.IsValid() && spans[n-1].end == s.start {
			spans[n-1].end = s.end // adjacent: extend
			continue
		}
		spans = append(spans, s)
	}
	var els []nftables.SetElement
	for _, s := range spans {
		els = append(els, nftables.SetElement{Key: s.start.AsSlice()})
		if s.end.IsValid() {
			els = append(els, nftables.SetElement{Key: s.end.AsSlice(), IntervalEnd: true})
		}
	}
	return els
}

// lastAddr is the highest address inside p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
