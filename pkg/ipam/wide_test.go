package ipam

import (
	"net/netip"
	"os"
	"testing"
)

// The counts and the address walk must not be bounded by a 32-bit int:
// kindnet ships for 386 and armhf, where int is 32 bits, and a single
// IPv6 pod range holds far more than 2^31 addresses. These tests run under
// GOARCH=386 and under emulation for armhf (make test-arch).

func TestUsablePastTwoToThe31(t *testing.T) {
	cases := []struct {
		pool Pool
		want uint64
	}{
		// 2^31 addresses less network and broadcast.
		{Pool{Range: netip.MustParsePrefix("10.0.0.0/1")}, 1<<31 - 2},
		// 2^32 less the subnet-router anycast address.
		{Pool{Range: netip.MustParsePrefix("fd00::/96")}, 1<<32 - 1},
		// 2^48 less network and gateway.
		{Pool{Range: netip.MustParsePrefix("fd00::/80"), Gateway: netip.MustParseAddr("fd00::1")}, 1<<48 - 2},
		// 2^63 less the network address.
		{Pool{Range: netip.MustParsePrefix("fd00::/65")}, 1<<63 - 1},
	}
	for _, c := range cases {
		if got := Usable(c.pool); got != c.want {
			t.Errorf("Usable(%s) = %d, want %d", c.pool.Range, got, c.want)
		}
	}
}

// TestAllocateWalksPastTwoToThe32 starts the walk just below an offset of
// 2^32 in the range: the next addresses must cross it, not wrap to the
// start of the range or repeat an address.
func TestAllocateWalksPastTwoToThe32(t *testing.T) {
	pool := Pool{Range: netip.MustParsePrefix("fd00::/80")}
	s := New(t.TempDir(), "net")
	// The state as a long-running node could hold it: the last address
	// handed out is at offset 2^32-2.
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.write(state{Version: 1, Last: map[string]netip.Addr{pool.Range.String(): netip.MustParseAddr("fd00::ffff:fffe")}}, true); err != nil {
		t.Fatal(err)
	}
	want := []string{"fd00::ffff:ffff", "fd00::1:0:0", "fd00::1:0:1"}
	for i, w := range want {
		a, err := s.Allocate(key(i), []Pool{pool}, false)
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if got := a.IPs[0].String(); got != w {
			t.Errorf("allocation %d = %s, want %s", i, got, w)
		}
	}
	// And the state reads back with that last address.
	st, err := s.read()
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Last[pool.Range.String()]; got != netip.MustParseAddr("fd00::1:0:1") {
		t.Errorf("last = %s, want fd00::1:0:1", got)
	}
}
