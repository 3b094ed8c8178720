package nldump

import (
	"errors"
	"fmt"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestRetryRepeatsOnlyInterruptedDumps(t *testing.T) {
	calls := 0
	v, err := Retry(func() (int, error) {
		calls++
		if calls < 3 {
			return -1, netlink.ErrDumpInterrupted // inconsistent data, never used
		}
		return 42, nil
	})
	if v != 42 || err != nil || calls != 3 {
		t.Fatalf("got %d, %v after %d calls; want 42 after 3", v, err, calls)
	}

	calls = 0
	other := errors.New("permission denied")
	if _, err := Retry(func() (int, error) { calls++; return 0, other }); !errors.Is(err, other) || calls != 1 {
		t.Fatalf("another error: %v after %d calls, want it at once", err, calls)
	}

	calls = 0
	v, err = Retry(func() (int, error) { calls++; return 7, fmt.Errorf("list: %w", netlink.ErrDumpInterrupted) })
	if !errors.Is(err, netlink.ErrDumpInterrupted) || calls != Attempts || v != 0 {
		t.Fatalf("always interrupted: %d, %v after %d calls; want the error after %d and no data", v, err, calls, Attempts)
	}
}
