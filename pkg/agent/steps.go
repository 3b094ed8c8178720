package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// Report is what one run of a reconciler did, in the terms every consumer
// shares: the status record's list of runs, the metrics (runs, errors and
// duration by reconciler) and the log's one-line summary read reports and
// never a reconciler's own result type. A step turns its reconciler's
// result into a Report; the runner fills Name, Start and Duration.
type Report struct {
	Name     string
	Start    time.Time
	Duration time.Duration // the whole step's, its logging included
	Changes  int
	Err      error
	// Partial says Err concerns single items only (a route refused for
	// one peer): the run asks for a retry but the host counts as
	// converged, so the cache is saved and NetworkReady reported.
	Partial bool
	// Skipped says the reconciler did not run (no cluster view yet):
	// no run is counted, but Record and Details still say what the host
	// has.
	Skipped bool
	// Details are the run's counts as slog key-value pairs, logged in the
	// reconcile summary under the group Name; nil leaves the reconciler
	// out of the line.
	Details []any
	// Record writes what the run found into the reconciler's own part of
	// the status record (peers, masquerade table, CNI config); nil when
	// the list of runs says all there is.
	Record func(r *status.Record)
}

// failed says the run left the host not converged (not merely a peer's
// route refused).
func (r Report) failed() bool { return r.Err != nil && !r.Partial }

// run is the report as the status record's list of runs keeps it.
func (r Report) run() status.Run {
	return status.Run{Name: r.Name, Last: r.Start, Duration: r.Duration, Changes: r.Changes, Error: errString(r.Err)}
}

// phase says when in a reconcile a step runs.
type phase int

const (
	// beforeSnapshot steps need no view of the cluster (kernel
	// settings): they run even when the host cannot be read.
	beforeSnapshot phase = iota
	// converge steps take the validated snapshot, in table order.
	converge
	// afterConverged steps run only when no converge step failed (the
	// cache of the last good view).
	afterConverged
)

// step is one reconciler as the agent runs it.
type step struct {
	name  string
	phase phase
	// run converges one piece of the host to the snapshot (nil before
	// the snapshot) and reports what it did.
	run func(ctx context.Context, snap *model.Snapshot) Report
}

// steps is the one place that lists the reconcilers, in the order they
// run. Adding a reconciler is one entry here plus its step function (see
// the package comment).
func (a *Agent) steps() []step {
	return []step{
		{"sysctl", beforeSnapshot, a.sysctlStep},
		{"routes", converge, a.routesStep},
		{"masquerade", converge, a.masqStep},
		{"cni", converge, a.cniStep},
		{"cache", afterConverged, a.cacheStep},
	}
}

// runPhase runs the steps of one phase and records each report.
func (a *Agent) runPhase(ctx context.Context, p phase, snap *model.Snapshot) []Report {
	var steps []step
	for _, s := range a.steps() {
		if s.phase == p {
			steps = append(steps, s)
		}
	}
	return a.runSteps(ctx, steps, snap)
}

// runSteps runs steps in order; each report is logged when it carries an
// error, recorded and returned.
func (a *Agent) runSteps(ctx context.Context, steps []step, snap *model.Snapshot) []Report {
	var out []Report
	for _, s := range steps {
		start := time.Now()
		rep := s.run(ctx, snap)
		rep.Name, rep.Start, rep.Duration = s.name, start, time.Since(start)
		if rep.Err != nil {
			a.log.Error("reconcile failed; will retry", "reconciler", rep.Name, "err", rep.Err)
		}
		a.finish(rep)
		out = append(out, rep)
	}
	return out
}

// finish puts a report in the status record (its run, unless skipped, and
// its own part) in one update, and feeds the run to the metrics.
func (a *Agent) finish(rep Report) {
	a.store.Update(func(r *status.Record) {
		if !rep.Skipped {
			r.SetRun(rep.run())
		}
		if rep.Record != nil {
			rep.Record(r)
		}
	})
	if !rep.Skipped {
		a.metrics.ObserveRun(rep.run())
	}
}

// anyErr and anyFailed sum up reports: anyErr asks for a retry, anyFailed
// also stops what needs a converged host.
func anyErr(reps []Report) bool {
	for _, r := range reps {
		if r.Err != nil {
			return true
		}
	}
	return false
}

func anyFailed(reps []Report) bool {
	for _, r := range reps {
		if r.failed() {
			return true
		}
	}
	return false
}

// logSummary closes every reconcile with one line: why it ran and what
// each reconciler did, in counts (each report's Details, grouped under
// its name). It is at info level when anything it shows changed or
// anything failed, and at debug level for a run that found everything in
// place (the periodic resync), so a quiet node keeps a quiet journal.
func (a *Agent) logSummary(ctx context.Context, why string, began time.Time, reps []Report) {
	failed := anyErr(reps)
	level := slog.LevelDebug
	if failed {
		level = slog.LevelInfo
	}
	args := []any{"why", why, "summary", a.lastStatus,
		"duration", time.Since(began).Round(time.Microsecond), "failed", failed}
	for _, r := range reps {
		if r.Details == nil {
			continue
		}
		if r.Changes > 0 {
			level = slog.LevelInfo
		}
		args = append(args, slog.Group(r.Name, r.Details...))
	}
	a.log.Log(ctx, level, "reconciled", args...)
}
