// Package nldump is the one place where kindnet reads lists from the
// kernel over netlink (addresses, routes, links): each dump is retried when
// the kernel interrupted it.
//
// The kernel marks a dump NLM_F_DUMP_INTR when the list changed while it
// was being read (an address added by a pod starting, a route replaced);
// vishvananda/netlink then returns ErrDumpInterrupted with possibly
// inconsistent data. Under pod churn about a quarter of address dumps were
// interrupted (measured), and a reconcile whose host read failed was
// skipped. The data of an interrupted dump is never used: the dump is made
// again, as containernetworking/plugins' netlinksafe does (that module is
// not in kindnet's module graph, so this small wrapper stands in for it).
//
// It only reads: nothing here changes the kernel.
package nldump

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// Attempts bounds the dumps made for one read. An interrupted dump is
// immediately repeated; a list changing so fast that this many dumps in a
// row are interrupted is reported as the error, and the caller retries
// later (the agent with backoff).
const Attempts = 10

// Retry runs dump until it is not interrupted, at most Attempts times. The
// last error is returned wrapped, so errors.Is(err,
// netlink.ErrDumpInterrupted) still holds when every attempt was
// interrupted.
func Retry[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range Attempts {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	var zero T
	return zero, fmt.Errorf("%w (%d dumps in a row)", err, Attempts)
}

// AddrList is h.AddrList, retried when interrupted.
func AddrList(h *netlink.Handle, link netlink.Link, family int) ([]netlink.Addr, error) {
	return Retry(func() ([]netlink.Addr, error) { return h.AddrList(link, family) })
}

// RouteListFiltered is h.RouteListFiltered, retried when interrupted.
func RouteListFiltered(h *netlink.Handle, family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	return Retry(func() ([]netlink.Route, error) { return h.RouteListFiltered(family, filter, mask) })
}

// RouteListFilteredIter is h.RouteListFilteredIter, retried when
// interrupted. An interrupted dump has already handed routes to f, so reset
// is called before every new attempt: f's caller drops what it collected.
func RouteListFilteredIter(h *netlink.Handle, family int, filter *netlink.Route, mask uint64, reset func(), f func(netlink.Route) bool) error {
	first := true
	_, err := Retry(func() (struct{}, error) {
		if !first {
			reset()
		}
		first = false
		return struct{}{}, h.RouteListFilteredIter(family, filter, mask, f)
	})
	return err
}

// LinkList is h.LinkList, retried when interrupted.
func LinkList(h *netlink.Handle) ([]netlink.Link, error) {
	return Retry(h.LinkList)
}
