package agent

import (
	"testing"
	"time"
)

func TestRetryBackoffDoublesUpToItsCapAndResets(t *testing.T) {
	b := backoff{min: retryMin, max: 4 * time.Second}
	var got []time.Duration
	for range 6 {
		got = append(got, b.next())
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second, 4 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("delays %v, want %v", got, want)
		}
	}
	b.reset()
	if d := b.next(); d != retryMin {
		t.Fatalf("after a success the first retry waits %s, want %s", d, retryMin)
	}
}
