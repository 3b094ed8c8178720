// Package ipam is kindnet's built-in address management for pods: it hands
// out one address per IP family from this node's pod ranges to each CNI
// attachment (container ID + interface name) and takes it back on DEL or GC.
//
// It owns one directory per network, <ipamDir>/<network> (default
// /run/kindnet/ipam/kindnet: tmpfs, so no allocation survives a reboot and
// nothing can leak across one). In it, "allocations.json" is the whole
// state, replaced atomically (temporary file, fsync, rename) under an
// exclusive flock on "lock", so concurrent plugin processes never hand out an
// address twice, and a process killed at any point leaves either the old
// state or the new one, never a half-written record. It never touches
// anything outside that directory, and never the network: addresses are
// only bookkeeping here; pkg/cni puts them on links.
package ipam

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go4.org/netipx"
	"golang.org/x/sys/unix"
)

// File names inside a network's directory.
const (
	StateFile = "allocations.json"
	lockFile  = "lock"
	// tmpPrefix marks temporary files of an unfinished write. Only the
	// holder of the lock writes them, so whoever takes the lock removes any
	// it finds: they belong to a process that was killed mid-write.
	tmpPrefix = ".allocations.json.tmp-"
)

// storeFiles are the patterns (path.Match syntax) of every file the store
// creates in a network's directory. `kindnet cleanup` removes exactly
// these (OwnsFile), so a new kind of file the store makes must be added
// here, or cleanup leaves it behind — and the directory with it.
var storeFiles = []string{StateFile, lockFile, tmpPrefix + "*"}

// OwnsFile reports whether name (a base name in a network's directory) is
// a file the store creates there.
func OwnsFile(name string) bool {
	for _, pat := range storeFiles {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// stateVersion is the format of StateFile; a newer one is refused rather
// than misread.
const stateVersion = 1

// ErrExhausted says a range has no free address left.
var ErrExhausted = errors.New("no free address")

// ErrUnusable says the store cannot be read or written (directory missing
// and not creatable, read-only, corrupt state file).
var ErrUnusable = errors.New("IPAM store unusable")

// Pool is one range to allocate from.
type Pool struct {
	Range netip.Prefix
	// Gateway, when valid, is never handed out (bridge mode puts it on the
	// bridge). Point-to-point mode uses a link-local gateway and leaves it
	// zero, so no address of the range is wasted.
	Gateway netip.Addr
}

// Key identifies a CNI attachment.
type Key struct {
	ContainerID string
	IfName      string
}

func (k Key) String() string { return k.ContainerID + "/" + k.IfName }

// Allocation is the record of one attachment's addresses.
type Allocation struct {
	ContainerID string       `json:"containerID"`
	IfName      string       `json:"ifname"`
	IPs         []netip.Addr `json:"ips"`
	// HostPorts is set when the attachment asked for hostPort mappings, so
	// DEL knows there are nftables rules to remove without listing them.
	HostPorts bool      `json:"hostPorts,omitempty"`
	Created   time.Time `json:"created"`
	// Token names the Allocate call that last claimed the record (random,
	// new on every call). A failed ADD releases with it (ReleaseOwned), so
	// its rollback can never free a record a later ADD of the same
	// attachment has claimed since.
	Token string `json:"token,omitempty"`
}

// Key returns the attachment the allocation belongs to.
func (a Allocation) Key() Key { return Key{ContainerID: a.ContainerID, IfName: a.IfName} }

// state is the content of StateFile.
type state struct {
	Version int `json:"version"`
	// Last is the address most recently handed out per range: the next
	// allocation starts after it, so a released address is not reused at
	// once (late packets and conntrack entries of the old pod die first).
	Last        map[string]netip.Addr `json:"last,omitempty"`
	Allocations []Allocation          `json:"allocations"`
}

// Store is the allocation store of one network.
type Store struct {
	Dir string
}

// New returns the store of network under ipamDir. It touches nothing yet.
func New(ipamDir, network string) *Store {
	return &Store{Dir: filepath.Join(ipamDir, network)}
}

// StatePath is the file holding the allocations.
func (s *Store) StatePath() string { return filepath.Join(s.Dir, StateFile) }

// Allocate gives the attachment one address from each pool. An attachment
// that already holds addresses from exactly these pools gets them back (an
// ADD retried after being killed); otherwise its old record is replaced.
// Either way the record now carries a new Token: the caller claims it.
func (s *Store) Allocate(key Key, pools []Pool, hostPorts bool) (Allocation, error) {
	if key.ContainerID == "" || key.IfName == "" {
		return Allocation{}, fmt.Errorf("allocate: container ID and interface name are required (got %q)", key)
	}
	token := newToken()
	var out Allocation
	err := s.update(func(st *state) (bool, error) {
		if i := st.find(key); i >= 0 {
			a := &st.Allocations[i]
			if coversExactly(a.IPs, pools) {
				a.HostPorts = hostPorts
				a.Token = token
				out = *a
				return true, nil
			}
			st.Allocations = slices.Delete(st.Allocations, i, i+1)
		}
		used := st.used()
		a := Allocation{ContainerID: key.ContainerID, IfName: key.IfName, HostPorts: hostPorts,
			Created: time.Now().UTC().Truncate(time.Second), Token: token}
		for _, p := range pools {
			ip, err := pick(p, used, st.Last[p.Range.String()])
			if err != nil {
				return false, err
			}
			a.IPs = append(a.IPs, ip)
			used[ip] = true
			if st.Last == nil {
				st.Last = map[string]netip.Addr{}
			}
			st.Last[p.Range.String()] = ip
		}
		st.Allocations = append(st.Allocations, a)
		out = a
		return true, nil
	})
	return out, err
}

// Get returns the attachment's record, if any. It reads the state file
// without the lock: the file is only ever replaced whole, so it is always
// a consistent snapshot.
func (s *Store) Get(key Key) (Allocation, bool, error) {
	st, err := s.read()
	if err != nil {
		return Allocation{}, false, err
	}
	if i := st.find(key); i >= 0 {
		return st.Allocations[i], true, nil
	}
	return Allocation{}, false, nil
}

// List returns every record (for GC, STATUS and consistency checks).
func (s *Store) List() ([]Allocation, error) {
	st, err := s.read()
	return st.Allocations, err
}

// Release frees the attachment's addresses. Releasing what is not there is
// not an error (DEL may come twice): it reports whether a record existed.
func (s *Store) Release(key Key) (Allocation, bool, error) {
	return s.release(key, "")
}

// ReleaseOwned frees the attachment's addresses only if the record still
// carries token, the one Allocate gave the caller: what the rollback of a
// failed ADD uses. A record another call has claimed since (or made anew
// after a DEL) is left alone, checked under the lock; it reports whether
// something was released.
func (s *Store) ReleaseOwned(key Key, token string) (Allocation, bool, error) {
	if token == "" {
		return Allocation{}, false, errors.New("release: no allocation token")
	}
	return s.release(key, token)
}

// release frees the record of key; with a token, only the record carrying it.
func (s *Store) release(key Key, token string) (Allocation, bool, error) {
	var out Allocation
	var found bool
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return out, false, nil // nothing was ever allocated here
	}
	err := s.updateFreeing(func(st *state) (bool, error) {
		i := st.find(key)
		if i < 0 || (token != "" && st.Allocations[i].Token != token) {
			return false, nil
		}
		out, found = st.Allocations[i], true
		st.Allocations = slices.Delete(st.Allocations, i, i+1)
		return true, nil
	})
	return out, found, err
}

// GC releases every allocation whose attachment is not in valid, and
// returns what it released.
func (s *Store) GC(valid []Key) ([]Allocation, error) {
	keep := make(map[Key]bool, len(valid))
	for _, k := range valid {
		keep[k] = true
	}
	var released []Allocation
	if _, err := os.Stat(s.Dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	err := s.updateFreeing(func(st *state) (bool, error) {
		kept := st.Allocations[:0]
		for _, a := range st.Allocations {
			if keep[a.Key()] {
				kept = append(kept, a)
			} else {
				released = append(released, a)
			}
		}
		st.Allocations = kept
		return len(released) > 0, nil
	})
	if err != nil {
		return nil, err
	}
	return released, nil
}

// Status reports why an ADD could not get addresses right now: the store
// cannot be locked, read or written, or a pool is full. nil means an ADD
// would be served.
func (s *Store) Status(pools []Pool) error {
	if len(pools) == 0 {
		return errors.New("no pod ranges to allocate from")
	}
	return s.update(func(st *state) (bool, error) {
		used := st.used()
		for _, p := range pools {
			if _, err := pick(p, used, st.Last[p.Range.String()]); err != nil {
				return false, err
			}
		}
		// Prove that the directory takes a new file, as the next write will.
		f, err := os.CreateTemp(s.Dir, tmpPrefix)
		if err != nil {
			return false, fmt.Errorf("%w: %s is not writable: %v", ErrUnusable, s.Dir, err)
		}
		f.Close()
		return false, os.Remove(f.Name())
	})
}

// newToken is 128 random bits in hex: unique to one Allocate call.
func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

func (st *state) find(key Key) int {
	return slices.IndexFunc(st.Allocations, func(a Allocation) bool { return a.Key() == key })
}

func (st *state) used() map[netip.Addr]bool {
	used := map[netip.Addr]bool{}
	for _, a := range st.Allocations {
		for _, ip := range a.IPs {
			used[ip] = true
		}
	}
	return used
}

// coversExactly reports whether ips hold exactly one address inside each
// pool, and nothing else.
func coversExactly(ips []netip.Addr, pools []Pool) bool {
	if len(ips) != len(pools) {
		return false
	}
	for _, p := range pools {
		n := 0
		for _, ip := range ips {
			if p.Range.Contains(ip) && !reserved(p, ip) {
				n++
			}
		}
		if n != 1 {
			return false
		}
	}
	return true
}

// update runs fn on the state under the exclusive lock and writes the state
// back atomically and durably when fn reports a change.
func (s *Store) update(fn func(*state) (bool, error)) error {
	return s.updateDurably(fn, true)
}

// updateFreeing is update for changes that only free addresses (DEL, GC): the
// state file is still replaced atomically, so every later reader sees the
// addresses free, but not fsynced. Losing a release to a power cut costs
// an address held until the runtime's next GC; losing an allocation would
// hand one address to two pods, so Allocate stays durable. The fsyncs are
// free on tmpfs (/run on systemd hosts) but not where the IPAM directory
// is on a disk, where they were most of DEL's own time.
func (s *Store) updateFreeing(fn func(*state) (bool, error)) error {
	return s.updateDurably(fn, false)
}

func (s *Store) updateDurably(fn func(*state) (bool, error), durable bool) error {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("%w: create %s: %v", ErrUnusable, s.Dir, err)
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	s.removeStaleTemps()
	st, err := s.read()
	if err != nil {
		return err
	}
	changed, err := fn(&st)
	if err != nil || !changed {
		return err
	}
	return s.write(st, durable)
}

// lock takes the exclusive flock. The kernel drops it when the process
// dies, so a killed plugin never blocks the next one.
func (s *Store) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, lockFile), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: open lock file in %s: %v", ErrUnusable, s.Dir, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: lock %s: %v", ErrUnusable, f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func (s *Store) removeStaleTemps() {
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			_ = os.Remove(filepath.Join(s.Dir, e.Name()))
		}
	}
}

func (s *Store) read() (state, error) {
	st := state{Version: stateVersion}
	b, err := os.ReadFile(s.StatePath())
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("%w: read %s: %v", ErrUnusable, s.StatePath(), err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%w: %s is not a kindnet IPAM state file (%v): move it away; "+
			"addresses of running pods may then be handed out again", ErrUnusable, s.StatePath(), err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("%w: %s has format version %d, this kindnet reads %d", ErrUnusable, s.StatePath(), st.Version, stateVersion)
	}
	return st, nil
}

// write replaces the state file: a temporary file in the same directory,
// fsynced when durable, renamed over the old one, then the directory
// fsynced when durable. On tmpfs the syncs cost nothing; on a disk they
// make the state survive power loss.
func (s *Store) write(st state, durable bool) error {
	st.Version = stateVersion
	if st.Allocations == nil {
		st.Allocations = []Allocation{}
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(s.Dir, tmpPrefix)
	if err != nil {
		return fmt.Errorf("%w: create temporary file in %s: %v", ErrUnusable, s.Dir, err)
	}
	tmp := f.Name()
	_, err = f.Write(append(b, '\n'))
	if err == nil && durable {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, s.StatePath())
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("%w: write %s: %v", ErrUnusable, s.StatePath(), err)
	}
	if !durable {
		return nil
	}
	if d, err := os.Open(s.Dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// pick finds a free address in the pool, starting after last and wrapping
// around. It fails with ErrExhausted when every usable address is taken.
func pick(p Pool, used map[netip.Addr]bool, last netip.Addr) (netip.Addr, error) {
	r := p.Range.Masked()
	inUse := 0
	for ip := range used {
		if r.Contains(ip) && !reserved(p, ip) {
			inUse++
		}
	}
	usable := Usable(p)
	if uint64(inUse) >= usable {
		return netip.Addr{}, fmt.Errorf("%w in %s: all %d usable addresses are allocated", ErrExhausted, r, usable)
	}
	first := r.Addr()
	a := first
	if last.IsValid() && r.Contains(last) {
		a = last
	}
	// Every address the walk skips is used or reserved, so a free one turns
	// up within len(used)+3 steps (network, broadcast, gateway).
	for range len(used) + 4 {
		a = a.Next()
		if !a.IsValid() || !r.Contains(a) {
			a = first
			continue
		}
		if !reserved(p, a) && !used[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("%w in %s", ErrExhausted, r)
}

// reserved reports whether ip may never be handed out: the network address
// (for IPv6 the subnet-router anycast address), the IPv4 broadcast address,
// and the gateway.
func reserved(p Pool, ip netip.Addr) bool {
	r := p.Range.Masked()
	if ip == r.Addr() || ip == p.Gateway {
		return true
	}
	return ip.Is4() && ip == netipx.PrefixLastIP(r)
}

// Usable is the number of addresses the pool can hand out (capped at
// MaxUint64 for huge IPv6 ranges).
func Usable(p Pool) uint64 {
	r := p.Range.Masked()
	hostBits := r.Addr().BitLen() - r.Bits()
	if hostBits >= 64 {
		return math.MaxUint64
	}
	size := uint64(1) << hostBits
	res := uint64(1)
	if r.Addr().Is4() {
		res++
	}
	if p.Gateway.IsValid() && r.Contains(p.Gateway) && p.Gateway != r.Addr() && !(r.Addr().Is4() && p.Gateway == netipx.PrefixLastIP(r)) {
		res++
	}
	if size <= res {
		return 0
	}
	return size - res
}

// Gateway returns the first address after the network address: what bridge
// mode puts on the bridge.
func Gateway(r netip.Prefix) netip.Addr { return r.Masked().Addr().Next() }
