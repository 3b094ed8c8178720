package hostnet

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// churnAddrs adds and removes IPv6 addresses on link, as pods starting and
// stopping do, until stop is closed. It runs at most 20 seconds.
func churnAddrs(tb testing.TB, ns *netnstest.NS, link netlink.Link, stop <-chan struct{}) {
	deadline := time.Now().Add(20 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		select {
		case <-stop:
			return
		default:
		}
		a := &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(fmt.Sprintf("fd00:77::%x", 1+i%1000)), Mask: net.CIDRMask(128, 128)}, Flags: unix.IFA_F_NODAD}
		if err := ns.NL.AddrAdd(link, a); err != nil {
			tb.Errorf("churn: add %s: %v", a, err)
			return
		}
		if err := ns.NL.AddrDel(link, a); err != nil {
			tb.Errorf("churn: del %s: %v", a, err)
			return
		}
	}
}

// Under address churn the kernel interrupts many dumps (NLM_F_DUMP_INTR);
// Read retries them, so it never fails for that, and a reconcile is not
// skipped because a pod started while the host was being read.
func TestReadUnderAddressChurnIsNeverInterrupted(t *testing.T) {
	ns := netnstest.New(t)
	eth0 := ns.AddVeth(t, "eth0")
	ns.AddAddrs(t, eth0, "192.168.60.1/24")
	// Enough addresses that one dump spans several netlink messages,
	// which is when the kernel can see the list change under it.
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "addr add %s/32 dev eth0\naddr add fd00:78::%x/128 dev eth0 nodad\n", net.IPv4(10, 78, byte(i/250), byte(1+i%250)), i+1)
	}
	batch := filepath.Join(t.TempDir(), "addrs")
	if err := os.WriteFile(batch, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := ns.Run("ip", "-batch", batch); err != nil {
		t.Fatalf("ip -batch: %v\n%s", err, out)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { churnAddrs(t, ns, eth0, stop) })
	defer func() { close(stop); wg.Wait() }()

	// Plain dumps alongside show how often the churn interrupted one: with
	// the plain dump Read failed about as often (1 to 10 in 100 on a
	// 2-core machine, measured; the rate varies with the machine's load).
	raw, reads, failed := 0, 0, 0
	for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); reads++ {
		if _, err := ns.NL.AddrList(nil, netlink.FAMILY_ALL); errors.Is(err, netlink.ErrDumpInterrupted) {
			raw++
		}
		if _, err := Read(ns.NL); err != nil {
			failed++
			t.Logf("Read: %v", err)
		}
	}
	t.Logf("%d of %d plain address dumps interrupted by the churn; %d of %d Reads failed", raw, reads, failed, reads)
	if failed > 0 {
		t.Fatalf("%d of %d Reads failed under churn", failed, reads)
	}
}
