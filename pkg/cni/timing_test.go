package cni

import (
	"bytes"
	"regexp"
	"testing"
)

func TestStepTimerPrintsEveryStepOnlyWhenAsked(t *testing.T) {
	t.Setenv(TimingEnv, "")
	if tm := newStepTimer(); tm != nil {
		t.Fatalf("timer on without %s", TimingEnv)
	}
	var none *stepTimer
	none.mark("x") // a nil timer records nothing and must not panic
	none.print("DEL")

	t.Setenv(TimingEnv, "1")
	tm := newStepTimer()
	if tm == nil {
		t.Fatalf("%s=1 did not turn the timer on", TimingEnv)
	}
	var out bytes.Buffer
	tm.out = &out
	tm.mark("ipam-get")
	tm.mark("veth-del")
	tm.print("DEL")
	want := regexp.MustCompile(`^kindnet timing DEL: ipam-get=\d+us veth-del=\d+us total=\d+us\n$`)
	if !want.MatchString(out.String()) {
		t.Fatalf("printed %q, want it to match %s", out.String(), want)
	}
}
