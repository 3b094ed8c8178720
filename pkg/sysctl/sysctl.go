// Package sysctl sets the kernel parameters a node needs to route pod
// traffic: IPv4 and IPv6 forwarding, and an arp_ignore that point-to-point
// pod links can live with.
//
// It writes only the parameters listed here, only when their value differs,
// and never turns anything off that the host had on.
package sysctl

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Setting is one kernel parameter and the value kindnet needs.
type Setting struct {
	Key    string // dotted name, e.g. net.ipv4.ip_forward
	Want   int
	AtMost bool // Want is an upper bound: lower values are fine and kept
	Why    string
}

// Settings returns what a node needs. IPv6 settings only when the cluster
// uses IPv6: enabling IPv6 forwarding changes how the kernel treats router
// advertisements, so it is not done for nothing.
func Settings(ipv6 bool) []Setting {
	s := []Setting{
		{Key: "net.ipv4.ip_forward", Want: 1, Why: "route pod traffic between links"},
		// kind#3880: with arp_ignore >= 2 the host stops answering ARP for the
		// /32 addresses of point-to-point pod links; 1 still answers them.
		{Key: "net.ipv4.conf.all.arp_ignore", Want: 1, AtMost: true, Why: "let point-to-point pod links resolve their gateway"},
	}
	if ipv6 {
		s = append(s, Setting{Key: "net.ipv6.conf.all.forwarding", Want: 1, Why: "route IPv6 pod traffic between links"})
	}
	return s
}

// Reconciler applies settings under a /proc/sys root.
type Reconciler struct {
	// Root is /proc/sys (a test may point elsewhere).
	Root     string
	Settings []Setting
}

// Change is a parameter that was set.
type Change struct {
	Key      string
	Old, New int
}

func (c Change) String() string { return fmt.Sprintf("%s %d -> %d", c.Key, c.Old, c.New) }

// Reconcile sets every parameter that differs. A missing parameter (IPv6
// disabled on the host) is an error naming it.
func (r *Reconciler) Reconcile(_ context.Context) ([]Change, error) {
	root := r.Root
	if root == "" {
		root = "/proc/sys"
	}
	var changes []Change
	var errs []error
	for _, s := range r.Settings {
		path := filepath.Join(root, strings.ReplaceAll(s.Key, ".", "/"))
		cur, err := read(path)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("%s is missing: is the feature disabled on this host?", s.Key)
			}
			errs = append(errs, fmt.Errorf("sysctl %s: %w", s.Key, err))
			continue
		}
		if cur == s.Want || (s.AtMost && cur < s.Want) {
			continue
		}
		if err := os.WriteFile(path, []byte(strconv.Itoa(s.Want)), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("set sysctl %s=%d (%s): %w", s.Key, s.Want, s.Why, err))
			continue
		}
		changes = append(changes, Change{Key: s.Key, Old: cur, New: s.Want})
	}
	return changes, errors.Join(errs...)
}

func read(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}
