// Package nftutil holds what kindnet's nftables writers (pkg/masq,
// pkg/hostport) and readers (pkg/inspect) share: opening a connection in a
// network namespace, finding and deleting one of kindnet's tables by name,
// and the per-family constants and expressions of an inet table's rules.
//
// It owns no table and decides nothing: each caller names the one table it
// owns. It never lists, flushes or changes a table it was not given by name,
// and never touches links, addresses, routes or sysctls.
package nftutil

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Open connects to nftables in the network namespace netnsFd, or in the
// caller's own namespace when netnsFd is zero.
func Open(netnsFd int) (*nftables.Conn, error) {
	var opts []nftables.ConnOption
	if netnsFd != 0 {
		opts = append(opts, nftables.WithNetNSFd(netnsFd))
	}
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("open nftables: %w", err)
	}
	return c, nil
}

// INet is the inet table name, as a value to add, delete or look into.
// Every table kindnet owns is of family inet: one table serves IPv4 and
// IPv6.
func INet(name string) *nftables.Table {
	return &nftables.Table{Name: name, Family: nftables.TableFamilyINet}
}

// FindTable returns the inet table name, or nil when there is none.
//
//	nft list tables inet
func FindTable(c *nftables.Conn, name string) (*nftables.Table, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list nftables tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name {
			return t, nil
		}
	}
	return nil, nil
}

// DeleteTable removes the inet table name with everything in it; it reports
// whether there was one. A missing table is not an error.
//
//	nft delete table inet <name>
func DeleteTable(c *nftables.Conn, name string) (bool, error) {
	t, err := FindTable(c, name)
	if err != nil || t == nil {
		return false, err
	}
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return false, fmt.Errorf("delete nftables table inet %s: %w", name, err)
	}
	return true, nil
}

// Family is one address family inside an inet table: how its rules match
// it and where its addresses are in the network header.
type Family struct {
	Name    string // "v4" or "v6", as it appears in set names and comments
	NFProto byte   // what "meta nfproto" compares
	KeyType nftables.SetDatatype
	SAddr   uint32 // offset of the source address in the network header
	DAddr   uint32 // offset of the destination address
	Size    uint32 // address length in bytes
	Is4     bool
}

// IPv4 and IPv6 are the two families kindnet writes rules for.
var (
	IPv4 = Family{"v4", unix.NFPROTO_IPV4, nftables.TypeIPAddr, 12, 16, 4, true}
	IPv6 = Family{"v6", unix.NFPROTO_IPV6, nftables.TypeIP6Addr, 8, 24, 16, false}
)

// Families are both, IPv4 first: the order rules are written in.
var Families = []Family{IPv4, IPv6}

// Filter keeps the prefixes of the family, in their order.
func (f Family) Filter(ps []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == f.Is4 {
			out = append(out, p)
		}
	}
	return out
}

// Pick returns the first address of the family.
func (f Family) Pick(ips []netip.Addr) (netip.Addr, bool) {
	for _, ip := range ips {
		if ip.Is4() == f.Is4 {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// NFProtoExprs matches the family inside an inet table, which carries both:
//
//	meta nfproto ipv4
func (f Family) NFProtoExprs() []expr.Any {
	return []expr.Any{
		// meta nfproto ipv4   (or ipv6)
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.NFProto}},
	}
}
