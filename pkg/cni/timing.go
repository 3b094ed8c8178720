package cni

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// TimingEnv names the environment variable that makes the plugin print how
// long each step of DEL took (monotonic clock) on stderr, for
// `make bench-cni` and for anyone asking where a pod's teardown time goes.
// Runtimes do not set it; the plugin's output is unchanged without it.
const TimingEnv = "KINDNET_CNI_TIMING"

// stepTimer records the duration of consecutive steps. A nil *stepTimer
// records nothing, so callers need no checks.
type stepTimer struct {
	start, last time.Time
	steps       []string
	out         io.Writer
}

// newStepTimer returns a timer when TimingEnv is set, or nil.
func newStepTimer() *stepTimer {
	if os.Getenv(TimingEnv) == "" {
		return nil
	}
	now := time.Now()
	return &stepTimer{start: now, last: now, out: os.Stderr}
}

// mark ends the step called name.
func (t *stepTimer) mark(name string) {
	if t == nil {
		return
	}
	now := time.Now()
	t.steps = append(t.steps, fmt.Sprintf("%s=%dus", name, now.Sub(t.last).Microseconds()))
	t.last = now
}

// print writes one line: "kindnet timing DEL: ipam-get=80us ... total=25123us".
func (t *stepTimer) print(verb string) {
	if t == nil {
		return
	}
	fmt.Fprintf(t.out, "kindnet timing %s: %s total=%dus\n", verb, strings.Join(t.steps, " "), time.Since(t.start).Microseconds())
}
