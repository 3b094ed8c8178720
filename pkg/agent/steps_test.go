package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/pkg/metrics"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// A reconciler that is only a step (as the policy reconciler will be)
// reaches the status record's runs, its own part of the record, the
// metrics and the summary line without any of them naming it; a partial
// error asks for a retry without failing the run; a skipped step records
// what the host has but counts no run.
func TestAStepAloneReachesStatusMetricsAndTheSummary(t *testing.T) {
	var buf bytes.Buffer
	st := status.NewStore("test", t0)
	a := &Agent{log: testLogger(&buf, slog.LevelInfo), store: st, metrics: metrics.New(st, metrics.Build{})}
	policy := step{"policy", converge, func(context.Context, *model.Snapshot) Report {
		return Report{Changes: 3, Err: errors.New("namespace x: bad selector"), Partial: true,
			Details: []any{"rules", 3},
			Record:  func(r *status.Record) { r.Warnings = append(r.Warnings, "policy wrote this") }}
	}}
	idle := step{"idle", converge, func(context.Context, *model.Snapshot) Report {
		return Report{Skipped: true, Details: []any{"present", true},
			Record: func(r *status.Record) { r.Warnings = append(r.Warnings, "idle wrote this") }}
	}}

	reps := a.runSteps(context.Background(), []step{policy, idle}, &model.Snapshot{})
	if anyFailed(reps) || !anyErr(reps) {
		t.Errorf("a partial error: failed %v (want false), retry %v (want true)", anyFailed(reps), anyErr(reps))
	}

	rec := st.Get()
	if len(rec.Reconcilers) != 1 {
		t.Fatalf("runs %+v, want the policy run only (a skipped step counts none)", rec.Reconcilers)
	}
	if run := rec.Reconcilers[0]; run.Name != "policy" || run.Changes != 3 || run.Error != "namespace x: bad selector" ||
		run.Runs != 1 || run.Errors != 1 || run.Last.IsZero() {
		t.Errorf("policy run recorded as %+v", run)
	}
	if strings.Join(rec.Warnings, ";") != "policy wrote this;idle wrote this" {
		t.Errorf("the steps' own parts of the record: %q", rec.Warnings)
	}

	fams, err := a.metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]uint64{}
	for _, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() != "reconciler" {
					continue
				}
				key := f.GetName() + "{" + l.GetValue() + "}"
				switch {
				case m.GetCounter() != nil:
					counts[key] = uint64(m.GetCounter().GetValue())
				case m.GetHistogram() != nil:
					counts[key] = m.GetHistogram().GetSampleCount()
				}
			}
		}
	}
	for key, want := range map[string]uint64{
		"kindnet_reconcile_runs_total{policy}":       1,
		"kindnet_reconcile_errors_total{policy}":     1,
		"kindnet_reconcile_duration_seconds{policy}": 1,
		"kindnet_reconcile_runs_total{idle}":         0,
		"kindnet_reconcile_duration_seconds{idle}":   0,
	} {
		if counts[key] != want {
			t.Errorf("%s = %d, want %d (all: %v)", key, counts[key], want, counts)
		}
	}

	buf.Reset()
	a.logSummary(context.Background(), "test", t0, reps)
	got := lines(&buf)
	if len(got) != 1 || !strings.Contains(got[0], "msg=reconciled why=test ") ||
		!strings.Contains(got[0], " failed=true policy.rules=3 idle.present=true") {
		t.Errorf("summary %q, want one line with each step's details", got)
	}
}
