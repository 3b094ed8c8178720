package firewall

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
	"golang.org/x/sys/unix"
)

// ruleset is what was read of the kernel's: tables, chains, rules and the
// elements of the sets rules look up, keyed by table.
type ruleset struct {
	chains []*nftables.Chain
	rules  map[*nftables.Chain][]*nftables.Rule
	sets   map[string]*set // "family/table/set"
}

type set struct {
	interval bool
	elems    []nftables.SetElement
}

func key(t *nftables.Table, name string) string {
	return fmt.Sprintf("%d/%s/%s", t.Family, t.Name, name)
}

// readRuleset reads every chain of families ip, ip6 and inet with its
// rules, and the sets of the tables that have a forward base chain.
func readRuleset(conn *nftables.Conn) (*ruleset, error) {
	rs := &ruleset{rules: map[*nftables.Chain][]*nftables.Rule{}, sets: map[string]*set{}}
	chains, err := conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list nftables chains: %w", err)
	}
	for _, c := range chains {
		switch c.Table.Family {
		case nftables.TableFamilyIPv4, nftables.TableFamilyIPv6, nftables.TableFamilyINet:
			rs.chains = append(rs.chains, c)
		}
	}
	tables := map[string]*nftables.Table{}
	for _, c := range rs.baseForward() {
		tables[key(c.Table, "")] = c.Table
	}
	for _, c := range rs.chains {
		if tables[key(c.Table, "")] == nil {
			continue // only tables with a forward base chain matter
		}
		rules, err := conn.GetRules(c.Table, c)
		if err != nil {
			return nil, fmt.Errorf("list the rules of chain %s %s %s: %w", familyName(c.Table.Family), c.Table.Name, c.Name, err)
		}
		rs.rules[c] = rules
	}
	for _, t := range tables {
		sets, err := conn.GetSets(t)
		if err != nil {
			return nil, fmt.Errorf("list the sets of table %s %s: %w", familyName(t.Family), t.Name, err)
		}
		for _, s := range sets {
			elems, err := conn.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("list set %s of table %s %s: %w", s.Name, familyName(t.Family), t.Name, err)
			}
			rs.sets[key(t, s.Name)] = &set{interval: s.Interval, elems: elems}
		}
	}
	return rs, nil
}

// baseForward lists the filter base chains at the forward hook.
func (rs *ruleset) baseForward() []*nftables.Chain {
	var out []*nftables.Chain
	for _, c := range rs.chains {
		if c.Hooknum != nil && *c.Hooknum == *nftables.ChainHookForward && (c.Type == "" || c.Type == nftables.ChainTypeFilter) {
			out = append(out, c)
		}
	}
	return out
}

func (rs *ruleset) chain(t *nftables.Table, name string) *nftables.Chain {
	for _, c := range rs.chains {
		if c.Name == name && c.Table.Name == t.Name && c.Table.Family == t.Family {
			return c
		}
	}
	return nil
}

func (rs *ruleset) hasChain(t *nftables.Table, name string) bool { return rs.chain(t, name) != nil }

func (rs *ruleset) hasChainPrefix(t *nftables.Table, prefix string) bool {
	return slices.ContainsFunc(rs.chains, func(c *nftables.Chain) bool {
		return c.Table.Name == t.Name && c.Table.Family == t.Family && strings.HasPrefix(c.Name, prefix)
	})
}

// packet is a probe: what is known of one forwarded packet. Fields the
// evaluator is not told (ports, marks, …) are unknown, and a rule that
// tests one neither matches nor fails to.
type packet struct {
	src, dst netip.Addr
	iif, oif string // "" unknown
	ctState  uint32
}

// ctStatus is the conntrack status of a probe: confirmed, and for a reply
// seen both ways; never NATed (pod to pod, not through a Service).
func ctStatus(p packet) uint32 {
	const seenReply, assured, confirmed = 1 << 1, 1 << 2, 1 << 3
	if p.ctState == ctEstablished {
		return seenReply | assured | confirmed
	}
	return 0
}

// Conntrack state bits (nft's ct state).
const (
	ctEstablished = expr.CtStateBitESTABLISHED
	ctNew         = expr.CtStateBitNEW
)

type verdict int

const (
	verdictNone    verdict = iota // fell off the end of a chain (or return)
	verdictAccept                 // accepted by this table
	verdictDrop                   // dropped or rejected
	verdictUnknown                // depends on something the probe does not know
)

type result struct {
	verdict verdict
	what    string // for drops: the policy or the rule that drops
}

// maxDepth bounds jumps (the kernel allows 16 levels).
const maxDepth = 16

// run evaluates a base chain for the probe: the table's verdict.
func (rs *ruleset) run(c *nftables.Chain, p packet) result {
	res := rs.runChain(c, p, 0)
	if res.verdict != verdictNone {
		return res
	}
	if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
		return result{verdict: verdictDrop, what: "policy drop"}
	}
	return result{verdict: verdictAccept}
}

// runChain walks the rules in order. A rule whose match is uncertain is
// skipped when it would drop (only a sure drop is reported) and ends the
// walk as unknown when it would accept or jump (what follows may never be
// reached).
func (rs *ruleset) runChain(c *nftables.Chain, p packet, depth int) result {
	if depth > maxDepth {
		return result{verdict: verdictUnknown}
	}
	for _, r := range rs.rules[c] {
		m, v := rs.evalRule(c.Table, r, p)
		if m == no {
			continue
		}
		switch v.Kind {
		case expr.VerdictAccept:
			if m == maybe {
				return result{verdict: verdictUnknown}
			}
			return result{verdict: verdictAccept}
		case expr.VerdictDrop:
			if m == maybe {
				continue
			}
			what := fmt.Sprintf("rule handle %d in chain %s drops", r.Handle, c.Name)
			if v.Chain == "reject" {
				what = fmt.Sprintf("rule handle %d in chain %s rejects", r.Handle, c.Name)
			}
			return result{verdict: verdictDrop, what: what}
		case expr.VerdictReturn:
			if m == maybe {
				return result{verdict: verdictUnknown}
			}
			return result{verdict: verdictNone}
		case expr.VerdictJump, expr.VerdictGoto:
			if m == maybe {
				return result{verdict: verdictUnknown}
			}
			sub := rs.chain(c.Table, v.Chain)
			if sub == nil {
				return result{verdict: verdictUnknown}
			}
			res := rs.runChain(sub, p, depth+1)
			if res.verdict != verdictNone || v.Kind == expr.VerdictGoto {
				return res
			}
		case unknownVerdict:
			if m == maybe {
				continue
			}
			return result{verdict: verdictUnknown}
		}
		// verdictContinue: a rule without a verdict (counter, log).
	}
	return result{verdict: verdictNone}
}

type tri int

const (
	no tri = iota
	yes
	maybe
)

// Verdict kinds the evaluator adds to nft's: a rule with no verdict
// statement goes on; one it cannot read decides something unknown.
const (
	verdictContinue expr.VerdictKind = -100
	unknownVerdict  expr.VerdictKind = -101
)

// regs is nft's register file: 4 × 16-byte registers, which the 32-bit
// registers 8…23 overlay. known marks which bytes the probe knows.
type regs struct {
	data  [64]byte
	known [64]bool
}

func regOffset(r uint32) (int, bool) {
	switch {
	case r >= unix.NFT_REG_1 && r <= unix.NFT_REG_4:
		return int(r-unix.NFT_REG_1) * 16, true
	case r >= unix.NFT_REG32_00 && r <= unix.NFT_REG32_15:
		return int(r-unix.NFT_REG32_00) * 4, true
	}
	return 0, false
}

func (g *regs) set(r uint32, b []byte) {
	off, ok := regOffset(r)
	if !ok {
		return
	}
	for i := range b {
		if off+i < len(g.data) {
			g.data[off+i], g.known[off+i] = b[i], true
		}
	}
}

func (g *regs) unknown(r uint32, n int) {
	off, ok := regOffset(r)
	if !ok {
		return
	}
	for i := off; i < off+n && i < len(g.known); i++ {
		g.known[i] = false
	}
}

// get returns n bytes of register r, or false when any is unknown.
func (g *regs) get(r uint32, n int) ([]byte, bool) {
	off, ok := regOffset(r)
	if !ok || off+n > len(g.data) {
		return nil, false
	}
	for i := off; i < off+n; i++ {
		if !g.known[i] {
			return nil, false
		}
	}
	return slices.Clone(g.data[off : off+n]), true
}

// evalRule says whether the rule matches the probe and what it decides.
// Only what is needed to follow the common firewalls is understood:
// addresses, interface names, protocol family, conntrack state, sets and
// verdict maps of those; anything else makes the match uncertain.
func (rs *ruleset) evalRule(t *nftables.Table, r *nftables.Rule, p packet) (tri, expr.Verdict) {
	var g regs
	match := yes
	v := expr.Verdict{Kind: verdictContinue}
	for _, e := range r.Exprs {
		switch e := e.(type) {
		case *expr.Meta:
			if e.SourceRegister {
				continue // meta set: no test
			}
			if b, ok := metaValue(e.Key, p); ok {
				g.set(e.Register, b)
			} else {
				g.unknown(e.Register, 16)
			}
		case *expr.Payload:
			if e.OperationType != expr.PayloadLoad {
				continue
			}
			if b, ok := payloadValue(e, p); ok {
				g.set(e.DestRegister, b)
			} else {
				g.unknown(e.DestRegister, int(e.Len))
			}
		case *expr.Ct:
			if e.SourceRegister {
				continue
			}
			switch e.Key {
			case expr.CtKeySTATE:
				g.set(e.Register, nativeUint32(p.ctState))
			case expr.CtKeySTATUS:
				g.set(e.Register, nativeUint32(ctStatus(p)))
			default:
				g.unknown(e.Register, 16)
			}
		case *expr.Bitwise:
			b, ok := g.get(e.SourceRegister, int(e.Len))
			if !ok || len(e.Mask) < len(b) || len(e.Xor) < len(b) {
				g.unknown(e.DestRegister, int(e.Len))
				continue
			}
			for i := range b {
				b[i] = b[i]&e.Mask[i] ^ e.Xor[i]
			}
			g.set(e.DestRegister, b)
		case *expr.Cmp:
			b, ok := g.get(e.Register, len(e.Data))
			if !ok {
				match = and(match, maybe)
				continue
			}
			match = and(match, boolTri(cmp(e.Op, bytes.Compare(b, e.Data))))
		case *expr.Range:
			b, ok := g.get(e.Register, len(e.FromData))
			if !ok {
				match = and(match, maybe)
				continue
			}
			in := bytes.Compare(b, e.FromData) >= 0 && bytes.Compare(b, e.ToData) <= 0
			match = and(match, boolTri(in == (e.Op == expr.CmpOpEq)))
		case *expr.Lookup:
			m, vd := rs.lookup(t, e, &g)
			if e.IsDestRegSet {
				// A verdict map: its verdict is the rule's.
				if m == no {
					match = and(match, no)
				} else {
					match, v = and(match, m), vd
				}
				continue
			}
			match = and(match, m)
		case *expr.Verdict:
			v = *e
		case *expr.Reject:
			// reject: a drop that answers; told apart only in messages.
			v = expr.Verdict{Kind: expr.VerdictDrop, Chain: "reject"}
		case *expr.Target:
			switch e.Name {
			case "REJECT":
				v = expr.Verdict{Kind: expr.VerdictDrop, Chain: "reject"}
			case "DROP":
				v = expr.Verdict{Kind: expr.VerdictDrop}
			case "ACCEPT":
				v = expr.Verdict{Kind: expr.VerdictAccept}
			default:
				// LOG, MARK, … do not decide.
			}
		case *expr.Match:
			match = and(match, xtMatch(e, p))
		case *expr.Counter, *expr.Log, *expr.Immediate:
			// counters and logs do not decide; an immediate into a data
			// register feeds a set statement, not a test.
		default:
			// limit, quota, fib, socket, …: a test or statement it does
			// not model.
			match = and(match, maybe)
		}
		if match == no {
			return no, v
		}
	}
	return match, v
}

// xtMatch evaluates an xtables match iptables-nft left as one (it
// translates most to native expressions): comments, and conntrack on the
// state alone (`-m conntrack --ctstate RELATED,ESTABLISHED`, what Docker
// and ufw use); any other is uncertain.
func xtMatch(e *expr.Match, p packet) tri {
	if e.Name == "comment" {
		return yes
	}
	if e.Name != "conntrack" {
		return maybe
	}
	var base xt.ConntrackMtinfoBase
	var mask uint16
	switch i := e.Info.(type) {
	case *xt.ConntrackMtinfo1:
		base, mask = i.ConntrackMtinfoBase, uint16(i.StateMask)
	case *xt.ConntrackMtinfo2:
		base, mask = i.ConntrackMtinfoBase, i.StateMask
	case *xt.ConntrackMtinfo3:
		base, mask = i.ConntrackMtinfoBase, i.StateMask
	default:
		return maybe
	}
	flags := xt.ConntrackFlags(base.MatchFlags)
	if flags&^(xt.ConntrackState|xt.ConntrackStateAlias) != 0 || flags&xt.ConntrackState == 0 {
		return maybe
	}
	// xt_conntrack's state bits are nft's: invalid 1, established 2,
	// related 4, new 8.
	in := uint32(mask)&p.ctState != 0
	if base.InvertFlags&uint16(xt.ConntrackState) != 0 {
		in = !in
	}
	return boolTri(in)
}

func and(a, b tri) tri {
	switch {
	case a == no || b == no:
		return no
	case a == maybe || b == maybe:
		return maybe
	}
	return yes
}

func boolTri(b bool) tri {
	if b {
		return yes
	}
	return no
}

func cmp(op expr.CmpOp, c int) bool {
	switch op {
	case expr.CmpOpEq:
		return c == 0
	case expr.CmpOpNeq:
		return c != 0
	case expr.CmpOpLt:
		return c < 0
	case expr.CmpOpLte:
		return c <= 0
	case expr.CmpOpGt:
		return c > 0
	case expr.CmpOpGte:
		return c >= 0
	}
	return false
}

// nativeUint32 is how the kernel puts a 32-bit meta or ct value in a
// register: host byte order (little-endian on the machines kindnet ships
// for: amd64, arm64).
func nativeUint32(v uint32) []byte {
	return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)}
}

func metaValue(k expr.MetaKey, p packet) ([]byte, bool) {
	switch k {
	case expr.MetaKeyNFPROTO:
		if p.src.Is4() {
			return []byte{unix.NFPROTO_IPV4}, true
		}
		return []byte{unix.NFPROTO_IPV6}, true
	case expr.MetaKeyL4PROTO:
		return []byte{unix.IPPROTO_TCP}, true // probes are TCP
	case expr.MetaKeyIIFNAME:
		return ifname(p.iif)
	case expr.MetaKeyOIFNAME:
		return ifname(p.oif)
	}
	return nil, false
}

// ifname is an interface name as nft compares it: IFNAMSIZ bytes, NUL
// padded (a wildcard "kn*" compares only the prefix).
func ifname(n string) ([]byte, bool) {
	if n == "" {
		return nil, false
	}
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b, true
}

// payloadValue reads what the probe knows of the network header: the
// protocol and the addresses, also in part (iptables-nft loads only the
// two bytes of a /16's address that it compares).
func payloadValue(e *expr.Payload, p packet) ([]byte, bool) {
	if e.Base != expr.PayloadBaseNetworkHeader {
		return nil, false
	}
	// The known span of the header: from protoOff, the protocol byte(s)
	// and, from addrOff, source then destination address.
	hdr := make([]byte, 40)
	known := make([]bool, 40)
	protoOff, addrOff := 9, 12 // IPv4: protocol, saddr at 12, daddr at 16
	if p.src.Is6() {
		protoOff, addrOff = 6, 8 // IPv6: next header, saddr at 8, daddr at 24
	}
	hdr[protoOff], known[protoOff] = unix.IPPROTO_TCP, true
	addrs := append(p.src.AsSlice(), p.dst.AsSlice()...)
	copy(hdr[addrOff:], addrs)
	for i := range addrs {
		known[addrOff+i] = true
	}
	end := int(e.Offset) + int(e.Len)
	if end > len(hdr) || e.Len == 0 {
		return nil, false
	}
	for i := int(e.Offset); i < end; i++ {
		if !known[i] {
			return nil, false
		}
	}
	return slices.Clone(hdr[e.Offset:end]), true
}

// lookup tests the register against a named set (or map) of the table:
// exact keys, or intervals. A verdict map also gives the verdict.
func (rs *ruleset) lookup(t *nftables.Table, e *expr.Lookup, g *regs) (tri, expr.Verdict) {
	unknown := expr.Verdict{Kind: unknownVerdict}
	s := rs.sets[key(t, e.SetName)]
	if s == nil || len(s.elems) == 0 && !e.Invert {
		if s != nil {
			return no, unknown
		}
		return maybe, unknown
	}
	klen := len(s.elems[0].Key)
	v, ok := g.get(e.SourceRegister, klen)
	if !ok {
		return maybe, unknown
	}
	el, found := s.find(v)
	if e.Invert {
		return boolTri(!found), unknown
	}
	if !found {
		return no, unknown
	}
	if el.VerdictData != nil {
		return yes, *el.VerdictData
	}
	return yes, unknown
}

// find looks key up: an exact element, or for an interval set the
// interval starting at or below it that no interval end closes first.
func (s *set) find(k []byte) (nftables.SetElement, bool) {
	if !s.interval {
		for _, el := range s.elems {
			if bytes.Equal(el.Key, k) {
				return el, true
			}
		}
		return nftables.SetElement{}, false
	}
	var best *nftables.SetElement
	for i := range s.elems {
		el := &s.elems[i]
		if len(el.Key) != len(k) || bytes.Compare(el.Key, k) > 0 {
			continue
		}
		if best == nil || bytes.Compare(el.Key, best.Key) > 0 || bytes.Equal(el.Key, best.Key) && !el.IntervalEnd {
			best = el
		}
	}
	if best == nil || best.IntervalEnd {
		return nftables.SetElement{}, false
	}
	return *best, true
}
