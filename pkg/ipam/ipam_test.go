package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func pools(ranges ...string) []Pool {
	var out []Pool
	for _, r := range ranges {
		out = append(out, Pool{Range: netip.MustParsePrefix(r)})
	}
	return out
}

func key(i int) Key { return Key{ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"} }

func TestAllocateSkipsNetworkBroadcastAndGateway(t *testing.T) {
	cases := []struct {
		name    string
		pool    Pool
		n       int // allocations to make
		want    []string
		usable  uint64
		wantErr bool // the n+1-th allocation fails
	}{
		{"v4 /30 ptp", Pool{Range: netip.MustParsePrefix("10.0.0.0/30")}, 2, []string{"10.0.0.1", "10.0.0.2"}, 2, true},
		{"v4 /30 bridge", Pool{Range: netip.MustParsePrefix("10.0.0.0/30"), Gateway: netip.MustParseAddr("10.0.0.1")}, 1, []string{"10.0.0.2"}, 1, true},
		{"v4 /29 bridge", Pool{Range: netip.MustParsePrefix("10.0.0.0/29"), Gateway: netip.MustParseAddr("10.0.0.1")}, 5, []string{"10.0.0.2", "10.0.0.3", "10.0.0.4", "10.0.0.5", "10.0.0.6"}, 5, true},
		{"v6 /126 ptp keeps the last address", Pool{Range: netip.MustParsePrefix("fd00::/126")}, 3, []string{"fd00::1", "fd00::2", "fd00::3"}, 3, true},
		{"v6 /64", Pool{Range: netip.MustParsePrefix("fd00:1::/64"), Gateway: netip.MustParseAddr("fd00:1::1")}, 2, []string{"fd00:1::2", "fd00:1::3"}, 1<<64 - 1, false},
		{"v4 /31 has nothing", Pool{Range: netip.MustParsePrefix("10.0.0.0/31")}, 0, nil, 0, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := Usable(c.pool); got != c.usable && c.usable != 1<<64-1 {
				t.Errorf("Usable = %d, want %d", got, c.usable)
			}
			s := New(t.TempDir(), "net")
			var got []string
			for i := range c.n {
				a, err := s.Allocate(key(i), []Pool{c.pool}, false)
				if err != nil {
					t.Fatalf("allocation %d: %v", i, err)
				}
				got = append(got, a.IPs[0].String())
			}
			if strings.Join(got, ",") != strings.Join(c.want, ",") {
				t.Errorf("allocated %v, want %v", got, c.want)
			}
			_, err := s.Allocate(key(c.n), []Pool{c.pool}, false)
			if c.wantErr && !errors.Is(err, ErrExhausted) {
				t.Errorf("allocation past the end: err = %v, want ErrExhausted", err)
			}
			if !c.wantErr && err != nil {
				t.Errorf("allocation %d: %v", c.n, err)
			}
		})
	}
}

func TestAllocateDualStackGivesOneAddressPerFamily(t *testing.T) {
	s := New(t.TempDir(), "net")
	a, err := s.Allocate(key(1), pools("10.244.1.0/24", "fd00:10:244:1::/64"), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(a.IPs) != 2 || !a.IPs[0].Is4() || !a.IPs[1].Is6() || !a.HostPorts {
		t.Fatalf("got %+v", a)
	}
	got, ok, err := s.Get(key(1))
	if err != nil || !ok || got.IPs[0] != a.IPs[0] || got.IPs[1] != a.IPs[1] {
		t.Fatalf("Get = %+v %v %v, want %+v", got, ok, err, a)
	}
}

func TestReleasedAddressIsNotReusedAtOnce(t *testing.T) {
	s := New(t.TempDir(), "net")
	p := pools("10.0.0.0/29") // .1 - .6
	a1, _ := s.Allocate(key(1), p, false)
	if _, ok, err := s.Release(key(1)); !ok || err != nil {
		t.Fatalf("release: %v %v", ok, err)
	}
	a2, _ := s.Allocate(key(2), p, false)
	if a2.IPs[0] == a1.IPs[0] {
		t.Fatalf("released %s was handed out again immediately", a1.IPs[0])
	}
	// Wrapping around finds the freed address once the rest is taken.
	for i := 3; i <= 7; i++ {
		if _, err := s.Allocate(key(i), p, false); err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
	}
	all, _ := s.List()
	if len(all) != 6 {
		t.Fatalf("%d allocations, want 6", len(all))
	}
}

func TestAllocateAgainReturnsTheSameAddresses(t *testing.T) {
	s := New(t.TempDir(), "net")
	p := pools("10.0.0.0/24", "fd00::/64")
	a, _ := s.Allocate(key(1), p, false)
	b, err := s.Allocate(key(1), p, true)
	if err != nil || a.IPs[0] != b.IPs[0] || a.IPs[1] != b.IPs[1] || !b.HostPorts {
		t.Fatalf("second allocation %+v (%v), want the addresses of %+v", b, err, a)
	}
	// A changed range replaces the record instead.
	c, err := s.Allocate(key(1), pools("10.1.0.0/24"), false)
	if err != nil || len(c.IPs) != 1 || !netip.MustParsePrefix("10.1.0.0/24").Contains(c.IPs[0]) {
		t.Fatalf("allocation for a new range: %+v %v", c, err)
	}
	if all, _ := s.List(); len(all) != 1 {
		t.Fatalf("%d records, want 1", len(all))
	}
}

func TestReleaseTwiceAndReleaseWithoutStoreSucceed(t *testing.T) {
	s := New(filepath.Join(t.TempDir(), "missing"), "net")
	if _, ok, err := s.Release(key(1)); ok || err != nil {
		t.Fatalf("release from a store never written: %v %v", ok, err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("release created %s", s.Dir)
	}
	_, _ = s.Allocate(key(1), pools("10.0.0.0/24"), false)
	for i := range 2 {
		_, ok, err := s.Release(key(1))
		if err != nil || ok != (i == 0) {
			t.Fatalf("release %d: found=%v err=%v", i, ok, err)
		}
	}
}

func TestGCReleasesEveryAttachmentNotValid(t *testing.T) {
	s := New(t.TempDir(), "net")
	for i := range 5 {
		if _, err := s.Allocate(key(i), pools("10.0.0.0/24"), false); err != nil {
			t.Fatal(err)
		}
	}
	released, err := s.GC([]Key{key(1), key(3), {ContainerID: "c4", IfName: "eth1"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(released) != 3 {
		t.Fatalf("released %v, want c0, c2, c4", released)
	}
	left, _ := s.List()
	if len(left) != 2 || left[0].ContainerID != "c1" || left[1].ContainerID != "c3" {
		t.Fatalf("left %+v, want c1 and c3", left)
	}
}

func TestStaleTemporaryFileOfAKilledWriterIsRemovedAndStateKept(t *testing.T) {
	s := New(t.TempDir(), "net")
	a, _ := s.Allocate(key(1), pools("10.0.0.0/24"), false)
	// What a process killed between creating and renaming leaves behind.
	stale := filepath.Join(s.Dir, tmpPrefix+"12345")
	if err := os.WriteFile(stale, []byte(`{"version":1,"allocations":[{"contai`), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := s.Allocate(key(2), pools("10.0.0.0/24"), false)
	if err != nil || b.IPs[0] == a.IPs[0] {
		t.Fatalf("allocation after a crash: %+v %v", b, err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatal("stale temporary file is still there")
	}
}

func TestCorruptStateIsAnErrorNamingTheFile(t *testing.T) {
	s := New(t.TempDir(), "net")
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.StatePath(), []byte("{garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Allocate(key(1), pools("10.0.0.0/24"), false)
	if !errors.Is(err, ErrUnusable) || !strings.Contains(err.Error(), s.StatePath()) {
		t.Fatalf("err = %v, want ErrUnusable naming %s", err, s.StatePath())
	}
}

func TestStatusReportsWhyAnAddCouldNotAllocate(t *testing.T) {
	dir := t.TempDir()
	s := New(dir, "net")
	if err := s.Status(pools("10.0.0.0/30")); err != nil {
		t.Fatalf("empty store: %v", err)
	}
	if err := s.Status(nil); err == nil {
		t.Fatal("no ranges: want an error")
	}
	for i := range 2 {
		_, _ = s.Allocate(key(i), pools("10.0.0.0/30"), false)
	}
	if err := s.Status(pools("10.0.0.0/30")); !errors.Is(err, ErrExhausted) {
		t.Fatalf("full range: err = %v, want ErrExhausted", err)
	}
	// A file where the network's directory should be.
	blocked := New(dir, "blocked")
	if err := os.WriteFile(blocked.Dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := blocked.Status(pools("10.0.0.0/24")); !errors.Is(err, ErrUnusable) {
		t.Fatalf("blocked dir: err = %v, want ErrUnusable", err)
	}
}

func TestConcurrentAllocationsNeverShareAnAddress(t *testing.T) {
	dir := t.TempDir()
	const n = 100
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A Store per goroutine: each takes the flock through its own
			// file description, as separate processes do.
			_, err := New(dir, "net").Allocate(key(i), pools("10.0.0.0/24", "fd00::/120"), false)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	all, _ := New(dir, "net").List()
	seen := map[netip.Addr]string{}
	for _, a := range all {
		for _, ip := range a.IPs {
			if prev, dup := seen[ip]; dup {
				t.Fatalf("%s given to %s and %s", ip, prev, a.ContainerID)
			}
			seen[ip] = a.ContainerID
		}
	}
	if len(all) != n || len(seen) != 2*n {
		t.Fatalf("%d records with %d addresses, want %d and %d", len(all), len(seen), n, 2*n)
	}
}

// A failed ADD releases with its own token: a record another Allocate of
// the same attachment has claimed since (a concurrent ADD that reused it,
// or an ADD after a DEL that made it anew) stays.
func TestReleaseOwnedFreesOnlyTheCallersRecord(t *testing.T) {
	s := New(t.TempDir(), "net")
	p := pools("10.0.0.0/24", "fd00::/64")
	first, err := s.Allocate(key(1), p, false)
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Allocate(key(1), p, false) // reuses the record, claims it
	if err != nil {
		t.Fatal(err)
	}
	if first.Token == "" || first.Token == second.Token || first.IPs[0] != second.IPs[0] {
		t.Fatalf("tokens %q, %q for %v, %v: want two distinct tokens for the same addresses", first.Token, second.Token, first.IPs, second.IPs)
	}
	if _, released, err := s.ReleaseOwned(key(1), first.Token); err != nil || released {
		t.Fatalf("ReleaseOwned with the superseded token: released=%v err=%v, want nothing released", released, err)
	}
	if _, found, _ := s.Get(key(1)); !found {
		t.Fatal("the record claimed by the second call is gone")
	}
	// After a DEL and a new ADD, the first call's token is still no good.
	if _, _, err := s.Release(key(1)); err != nil {
		t.Fatal(err)
	}
	third, err := s.Allocate(key(1), p, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, released, _ := s.ReleaseOwned(key(1), second.Token); released {
		t.Fatal("a token of before the DEL released the new record")
	}
	if _, released, err := s.ReleaseOwned(key(1), third.Token); err != nil || !released {
		t.Fatalf("ReleaseOwned with the current token: released=%v err=%v", released, err)
	}
	if _, _, err := s.ReleaseOwned(key(1), ""); err == nil {
		t.Error("ReleaseOwned without a token must fail, not release whatever is there")
	}
	if all, _ := s.List(); len(all) != 0 {
		t.Errorf("records left: %+v", all)
	}
}

// Every file the store leaves in its directory, whatever it did, is one
// OwnsFile names: `kindnet cleanup` removes exactly those, so a new kind of
// file (a per-attachment lock, say) that storeFiles does not list would be
// left behind, with the directory. The stale temporary file is what a
// writer killed mid-write leaves.
func TestEveryFileTheStoreMakesIsOneCleanupRemoves(t *testing.T) {
	s := New(t.TempDir(), "kindnet")
	for i := range 4 {
		if _, err := s.Allocate(key(i), pools("10.0.0.0/24", "fd00::/64"), i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Release(key(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GC([]Key{key(0)}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.Dir, tmpPrefix+"12345"), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(s.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) < 2 {
		t.Fatalf("store directory holds %d files, expected at least the state and the lock", len(entries))
	}
	for _, e := range entries {
		if !OwnsFile(e.Name()) {
			t.Errorf("the store made %s, which OwnsFile (and so kindnet cleanup) does not name: add its pattern to storeFiles", e.Name())
		}
	}
}
