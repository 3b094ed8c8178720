// Package conformance turns a run of the upstream Kubernetes end-to-end
// suite (e2e.test, its ginkgo JSON report) against the cluster of
// scripts/cluster.sh into the report committed under conformance/results:
// versions, every selected test with its outcome and duration, the reason
// of every skip, the message of every failure, and the total time.
//
// It reads reports and writes Markdown; it never talks to a cluster.
package conformance

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Spec is one test of the run, as the report shows it.
type Spec struct {
	Name     string        // "[sig-network] Services should … [Conformance]"
	State    string        // passed, failed, skipped, timedout, panicked, …
	Duration time.Duration // how long it ran
	Message  string        // the failure, or the reason of a skip
	Location string        // where it failed or was skipped (file:line)
}

// Passed, Failed and Skipped say how the spec ended; every ginkgo state
// other than passed, skipped and pending counts as a failure.
func (s Spec) Passed() bool  { return s.State == "passed" }
func (s Spec) Skipped() bool { return s.State == "skipped" || s.State == "pending" }
func (s Spec) Failed() bool  { return !s.Passed() && !s.Skipped() }

// Run is one e2e.test run: the specs it selected, in the order they ran.
type Run struct {
	Start, End time.Time
	Specs      []Spec
}

// The fields of ginkgo's JSON report (github.com/onsi/ginkgo/v2/types)
// this package reads; the rest is ignored.
type ginkgoReport struct {
	StartTime, EndTime time.Time
	SpecReports        []struct {
		ContainerHierarchyTexts []string
		LeafNodeText            string
		LeafNodeType            string
		State                   string
		StartTime               time.Time
		RunTime                 time.Duration
		Failure                 struct {
			Message  string
			Location struct {
				FileName   string
				LineNumber int
			}
		}
	}
}

// ReadRun reads the JSON report e2e.test writes with --ginkgo.json-report
// and keeps the tests focus selects and skip does not: the specs the
// focus filtered out are in ginkgo's report too, as "skipped", and are
// not part of the run.
func ReadRun(path string, focus, skip *regexp.Regexp) (*Run, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read e2e report: %w", err)
	}
	var reports []ginkgoReport
	if err := json.Unmarshal(b, &reports); err != nil {
		return nil, fmt.Errorf("parse e2e report %s: %w", path, err)
	}
	run := &Run{}
	for _, r := range reports {
		if run.Start.IsZero() || r.StartTime.Before(run.Start) {
			run.Start = r.StartTime
		}
		if r.EndTime.After(run.End) {
			run.End = r.EndTime
		}
		for _, s := range r.SpecReports {
			if s.LeafNodeType != "It" {
				continue // suite setup and teardown nodes
			}
			name := strings.TrimSpace(strings.Join(append(slices.Clone(s.ContainerHierarchyTexts), s.LeafNodeText), " "))
			if !focus.MatchString(name) || (skip != nil && skip.MatchString(name)) {
				continue
			}
			spec := Spec{Name: name, State: s.State, Duration: s.RunTime, Message: strings.TrimSpace(s.Failure.Message)}
			if s.Failure.Location.FileName != "" {
				spec.Location = fmt.Sprintf("%s:%d", trimModulePath(s.Failure.Location.FileName), s.Failure.Location.LineNumber)
			}
			run.Specs = append(run.Specs, spec)
		}
	}
	if len(run.Specs) == 0 {
		return nil, fmt.Errorf("e2e report %s: no test matches the focus %q", path, focus)
	}
	return run, nil
}

// trimModulePath shortens a source path to the part from k8s.io/kubernetes
// on ("test/e2e/network/service.go").
func trimModulePath(p string) string {
	if i := strings.Index(p, "/test/e2e/"); i >= 0 {
		return p[i+1:]
	}
	return p
}

// Counts are the totals of a run.
type Counts struct{ Passed, Failed, Skipped int }

// Counts adds up the outcomes.
func (r *Run) Counts() Counts {
	var c Counts
	for _, s := range r.Specs {
		switch {
		case s.Passed():
			c.Passed++
		case s.Skipped():
			c.Skipped++
		default:
			c.Failed++
		}
	}
	return c
}

// Header is what the report says about the run besides the tests.
type Header struct {
	Title    string
	Date     time.Time
	Versions [][2]string // name, version: kindnet, Kubernetes, containerd, …
	Cluster  string      // "3 nodes, dual-stack (IPv4 primary)"
	Focus    string
	Skip     string
	// SkipReasons explains each --ginkgo.skip pattern: why those tests are
	// not run here.
	SkipReasons [][2]string
	Wall        time.Duration // make conformance from start to end
	Extra       string        // Markdown appended as is (node restart, …)
}

// WriteMarkdown writes the report.
func WriteMarkdown(w io.Writer, h Header, r *Run) error {
	c := r.Counts()
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", h.Title)
	fmt.Fprintf(&b, "Run on %s. **%d passed, %d failed, %d skipped** of %d selected tests; the suite ran %s, `make conformance` took %s in all.\n\n",
		h.Date.UTC().Format("2006-01-02 15:04 MST"), c.Passed, c.Failed, c.Skipped, len(r.Specs),
		r.End.Sub(r.Start).Round(time.Second), h.Wall.Round(time.Second))
	b.WriteString("| component | version |\n| --- | --- |\n")
	for _, v := range h.Versions {
		fmt.Fprintf(&b, "| %s | %s |\n", v[0], v[1])
	}
	fmt.Fprintf(&b, "\nCluster: %s.\n\nSelected with `--ginkgo.focus='%s'`", h.Cluster, h.Focus)
	if h.Skip != "" {
		fmt.Fprintf(&b, " and `--ginkgo.skip='%s'`", h.Skip)
	}
	b.WriteString(".\n")
	if len(h.SkipReasons) > 0 {
		b.WriteString("\nNot run here, and why:\n\n")
		for _, s := range h.SkipReasons {
			fmt.Fprintf(&b, "- `%s`: %s\n", s[0], s[1])
		}
	}
	if c.Failed > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, s := range r.Specs {
			if s.Failed() {
				fmt.Fprintf(&b, "### %s\n\n%s at %s after %s:\n\n```\n%s\n```\n\n", s.Name, s.State, s.Location, s.Duration.Round(time.Second), excerpt(s.Message, 30))
			}
		}
	}
	if c.Skipped > 0 {
		b.WriteString("\n## Skipped by the suite itself\n\n| test | reason |\n| --- | --- |\n")
		for _, s := range r.Specs {
			if s.Skipped() {
				fmt.Fprintf(&b, "| %s | %s |\n", cell(s.Name), cell(firstLine(s.Message)))
			}
		}
	}
	b.WriteString("\n## Every test\n\n| # | test | result | time |\n| ---: | --- | --- | ---: |\n")
	for i, s := range r.Specs {
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", i+1, cell(s.Name), s.State, s.Duration.Round(100*time.Millisecond))
	}
	if h.Extra != "" {
		b.WriteString("\n" + strings.TrimSpace(h.Extra) + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func excerpt(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) > lines {
		l = append(l[:lines], fmt.Sprintf("… (%d more lines)", len(l)-lines))
	}
	return strings.Join(l, "\n")
}

func firstLine(s string) string { return strings.TrimSpace(strings.SplitN(s, "\n", 2)[0]) }

// cell makes s safe inside a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
