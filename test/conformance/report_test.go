package conformance

import (
	"regexp"
	"strings"
	"testing"
	"time"
)

var (
	testFocus = regexp.MustCompile(`\[sig-network\].*(\[Conformance\]|\[Feature:IPv6DualStack\])`)
	testSkip  = regexp.MustCompile(`\[Serial\]`)
)

func TestReadRunKeepsOnlyTheSelectedTests(t *testing.T) {
	r, err := ReadRun("testdata/report.json", testFocus, testSkip)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range r.Specs {
		names = append(names, s.Name)
	}
	if len(r.Specs) != 3 {
		t.Fatalf("selected %d tests, want 3 (not the suite node, not sig-apps, not Serial): %q", len(r.Specs), names)
	}
	if c := r.Counts(); c != (Counts{Passed: 1, Failed: 1, Skipped: 1}) {
		t.Errorf("counts %+v", c)
	}
	if got := r.Specs[1].Location; got != "test/e2e/network/hostport.go:42" {
		t.Errorf("failure location %q", got)
	}
	if d := r.End.Sub(r.Start); d != 10*time.Minute {
		t.Errorf("suite time %s", d)
	}
}

func TestReadRunRefusesAReportWithoutSelectedTests(t *testing.T) {
	if _, err := ReadRun("testdata/report.json", regexp.MustCompile(`\[sig-storage\]`), nil); err == nil {
		t.Fatal("no error for a report in which no test matches")
	}
	if _, err := ReadRun("testdata/nope.json", testFocus, nil); err == nil {
		t.Fatal("no error for a missing report")
	}
}

func TestWriteMarkdownShowsCountsFailuresSkipsAndEveryTest(t *testing.T) {
	r, err := ReadRun("testdata/report.json", testFocus, testSkip)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	h := Header{Title: "Conformance", Date: time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC),
		Versions: [][2]string{{"Kubernetes", "v1.37.2"}}, Cluster: "3 nodes", Focus: testFocus.String(),
		Skip: testSkip.String(), SkipReasons: [][2]string{{`\[Serial\]`, "not on a shared machine"}}, Wall: 20 * time.Minute}
	if err := WriteMarkdown(&b, h, r); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"**1 passed, 1 failed, 1 skipped** of 3 selected tests; the suite ran 10m0s, `make conformance` took 20m0s",
		"| Kubernetes | v1.37.2 |",
		"### [sig-network] HostPort validates",
		"pod1 never became ready\nsecond line",
		"| [sig-network] [Feature:IPv6DualStack] should have at least one dual-stack node | Only supported for providers [gce] (not local) |",
		"| 1 | [sig-network] Services should serve a basic endpoint from pods [Conformance] | passed | 12.3s |",
		"- `\\[Serial\\]`: not on a shared machine",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
