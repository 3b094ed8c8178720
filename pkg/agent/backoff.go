package agent

import "time"

// Bounds of the wait before a failed or skipped reconcile is retried: soon
// enough that a passing fault (an interrupted read, a full disk freed) costs
// seconds, not the minute of the periodic resync; capped, so a fault that
// stays costs one run every retryMax (or resync interval, if shorter).
const (
	retryMin = 500 * time.Millisecond
	retryMax = 30 * time.Second
)

// backoff is a capped exponential delay: min, 2·min, 4·min … max, back to
// min after reset.
type backoff struct {
	min, max, cur time.Duration
}

// next returns the delay before the next retry and doubles the one after.
func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur < b.max:
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur
}

// reset starts over after a run that succeeded.
func (b *backoff) reset() { b.cur = 0 }
