package sysctl

import (
	"context"
	"os"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

func TestSettingsAppliedInsideNamespaceOnly(t *testing.T) {
	ns := netnstest.New(t)
	hostForward, _ := read("/proc/sys/net/ipv4/ip_forward")
	var first, second []Change
	err := ns.Do(func() error {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/all/arp_ignore", []byte("2"), 0o644); err != nil {
			return err
		}
		r := &Reconciler{Settings: Settings(true)}
		var err error
		if first, err = r.Reconcile(context.Background()); err != nil {
			return err
		}
		second, err = r.Reconcile(context.Background())
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != 3 {
		t.Fatalf("first run changed %v, want forwarding v4, v6 and arp_ignore 2->1", first)
	}
	if len(second) != 0 {
		t.Fatalf("second run changed %v, want nothing", second)
	}
	if now, _ := read("/proc/sys/net/ipv4/ip_forward"); now != hostForward {
		t.Fatalf("the host's own ip_forward changed from %d to %d", hostForward, now)
	}
}

func TestAtMostKeepsLowerValues(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(dir+"/net/ipv4/conf/all", 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir+"/net/ipv4/conf/all/arp_ignore", []byte("0\n"), 0o644)
	os.MkdirAll(dir+"/net/ipv4", 0o755)
	os.WriteFile(dir+"/net/ipv4/ip_forward", []byte("1\n"), 0o644)
	ch, err := (&Reconciler{Root: dir, Settings: Settings(false)}).Reconcile(context.Background())
	if err != nil || len(ch) != 0 {
		t.Fatalf("changes %v err %v, want none", ch, err)
	}
	_, err = (&Reconciler{Root: dir, Settings: Settings(true)}).Reconcile(context.Background())
	if err == nil {
		t.Fatal("missing IPv6 sysctl gave no error")
	}
}
