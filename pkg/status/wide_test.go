package status

import (
	"strings"
	"testing"
)

// Reconciler counts and IPAM capacities must not be bounded by a 32-bit
// int: kindnet ships for 386 and armhf, where int is 32 bits, an agent that
// resyncs every few seconds passes 2^32 runs in a few centuries but a
// restarted one restores nothing, and an IPv6 pod range holds far more than
// 2^32 addresses. Run natively with GOARCH=386 and emulated for armhf.
func TestCountsPastTwoToThe32(t *testing.T) {
	r := &Record{}
	r.SetRun(Run{Name: "routes"})
	r.Reconcilers[0].Runs = 1<<32 - 1
	r.Reconcilers[0].Errors = 1<<32 - 1
	r.SetRun(Run{Name: "routes", Error: "boom"})
	if got := r.Reconcilers[0].Runs; got != 1<<32 {
		t.Errorf("runs = %d, want %d", got, uint64(1)<<32)
	}
	if got := r.Reconcilers[0].Errors; got != 1<<32 {
		t.Errorf("errors = %d, want %d", got, uint64(1)<<32)
	}
	r.IPAM = IPAM{Available: true, Ranges: []IPAMRange{{CIDR: "fd00::/80", Used: 3, Capacity: 1<<48 - 2}}}
	if got, want := ipamLine(r), "fd00::/80 3/281474976710654 used"; got != want {
		t.Errorf("ipam line = %q, want %q", got, want)
	}
	var b strings.Builder
	if err := Render(&b, r, RenderOptions{Wide: true}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "4294967296") {
		t.Errorf("status does not show the run count 4294967296:\n%s", b.String())
	}
}
