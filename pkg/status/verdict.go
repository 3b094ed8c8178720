package status

import (
	"fmt"
	"strings"
	"time"
)

// Verdict states, worst last.
const (
	Healthy  = "healthy"
	Degraded = "degraded"
	Down     = "down"
)

// Exit codes of `kindnet status`, one per verdict state.
const (
	ExitHealthy  = 0
	ExitDegraded = 1
	ExitDown     = 2
)

// Verdict is the one-word answer to "is the pod network of this node
// working", with the reasons when it is not.
type Verdict struct {
	State   string   `json:"state"`
	Reasons []string `json:"reasons,omitempty"`
}

// String is the header line: "healthy", "degraded: 1 peer rejected (x)".
func (v Verdict) String() string {
	if len(v.Reasons) == 0 {
		return v.State
	}
	return v.State + ": " + strings.Join(v.Reasons, "; ")
}

// ExitCode is what `kindnet status` exits with for this verdict.
func (v Verdict) ExitCode() int {
	switch v.State {
	case Healthy:
		return ExitHealthy
	case Degraded:
		return ExitDegraded
	}
	return ExitDown
}

// RuntimeGrace is how long after the CNI config was written a runtime that
// still reports NetworkReady=false only makes the verdict degraded, not
// down: containerd and CRI-O reload their CNI configs on an inotify event,
// within a second, and the agent asks the runtime every few seconds.
const RuntimeGrace = 15 * time.Second

// Judge draws the verdict from a record. It is the only place that decides
// what healthy means:
//
//   - down: the agent does not answer; there is no CNI config file on the
//     host (a failed write of a new one leaves the old one, and that is
//     degraded, not down); or the CNI config is written but the container runtime has reported
//     NetworkReady=false for longer than RuntimeGrace since (either way
//     new pods cannot start);
//   - degraded: a peer is rejected, off-link or in conflict; the source
//     cannot see the cluster or has not delivered a view yet; the CNI config
//     is stale (its write failed: the old file is in use); a reconciler
//     is failing; the cache could not be read or saved; the routes or the
//     masquerade table on the host could not be read; this node's podCIDR
//     is unusable;
//     the runtime does not report NetworkReady within RuntimeGrace of the
//     CNI config being written; the runtime's socket is configured but
//     missing, or the runtime does not answer; another program's firewall
//     drops forwarded pod traffic;
//   - healthy otherwise. Pending peers (no podCIDR yet) are normal, and so
//     is a host where cri.endpoint is auto and no runtime socket exists.
//
// When the verdict is down only the reasons for down are given.
func Judge(r *Record) Verdict {
	if down := downReasons(r); len(down) > 0 {
		return Verdict{State: Down, Reasons: down}
	}
	if deg := degradedReasons(r); len(deg) > 0 {
		return Verdict{State: Degraded, Reasons: deg}
	}
	return Verdict{State: Healthy}
}

func downReasons(r *Record) []string {
	var out []string
	if !r.Agent.Running {
		s := "agent not running"
		if r.Agent.Error != "" {
			s += " (" + r.Agent.Error + ")"
		}
		out = append(out, s)
	}
	if !r.CNI.Present {
		s := "no CNI config at " + r.CNI.Path
		if r.CNI.Waiting != "" {
			s += " (" + r.CNI.Waiting + ")"
		}
		if e := runError(r, "cni"); e != "" {
			s += ": " + e
		}
		out = append(out, s)
	}
	if s, lasting := RuntimeDisagrees(r); s != "" && lasting {
		out = append(out, s)
	}
	return out
}

// RuntimeDisagrees says when kindnet has written its CNI config and the
// runtime, asked since, still reports NetworkReady=false; lasting is true
// once that has gone on for RuntimeGrace after the write. An answer from
// before the write is no disagreement: the runtime had nothing to load.
func RuntimeDisagrees(r *Record) (reason string, lasting bool) {
	rt := r.Runtime
	if !r.CNI.Present || rt.State != RuntimeNotReady || rt.Checked.Before(r.CNI.Written) {
		return "", false
	}
	cond := "NetworkReady=false"
	if d := rt.condition(); d != "" {
		cond += ": " + d
	}
	if rt.Checked.Sub(r.CNI.Written) < RuntimeGrace && !r.CNI.Written.IsZero() {
		return fmt.Sprintf("CNI config written %s, %s does not report the network ready yet (%s)",
			when(r.Now, r.CNI.Written), rt.Who(), cond), false
	}
	written := "CNI config written " + when(r.Now, r.CNI.Written)
	if r.CNI.Written.IsZero() {
		written = "CNI config present"
	}
	return fmt.Sprintf("%s but %s reports %s", written, rt.Who(), cond), true
}

// condition is the NetworkReady condition's reason and message, as one
// phrase.
func (rt Runtime) condition() string {
	switch {
	case rt.Reason != "" && rt.Message != "":
		return rt.Reason + ": " + rt.Message
	case rt.Message != "":
		return rt.Message
	}
	return rt.Reason
}

// runtimeProblem says why the runtime could not be asked, when that is a
// problem: the socket the user named is missing, or the runtime found does
// not answer.
func runtimeProblem(r *Record) string {
	rt := r.Runtime
	switch rt.State {
	case RuntimeNoSocket:
		return "no container runtime socket at " + rt.Endpoint + " (cri.endpoint)"
	case RuntimeUnanswered:
		who := rt.Who()
		if rt.Name != "" {
			who += " at " + rt.Endpoint
		}
		return fmt.Sprintf("%s does not answer: %s", who, rt.Error)
	}
	return ""
}

// when renders t relative to now ("3m ago"), or absolute when now is unknown.
func when(now, t time.Time) string {
	if now.IsZero() {
		return "at " + t.UTC().Format(time.RFC3339)
	}
	return shortDuration(now.Sub(t)) + " ago"
}

func degradedReasons(r *Record) []string {
	var out []string
	byState := map[string][]string{}
	for _, p := range r.Peers {
		byState[p.State] = append(byState[p.State], p.Name)
	}
	for _, st := range []string{PeerRejected, PeerOffLink, PeerConflict} {
		if names := byState[st]; len(names) > 0 {
			out = append(out, fmt.Sprintf("%s %s (%s)", plural(len(names), "peer"), st, nameList(names, 3)))
		}
	}
	if s := sourceProblem(r); s != "" {
		out = append(out, s)
	}
	if !r.Bootstrapped {
		out = append(out, "bootstrap not applied yet")
	}
	if r.Node.Problem != "" {
		out = append(out, "this node: "+r.Node.Problem)
	}
	for _, w := range r.Warnings {
		out = append(out, "insecure: "+w)
	}
	if r.CNI.Present && r.CNI.Waiting != "" {
		out = append(out, "CNI config may be stale: "+r.CNI.Waiting)
	}
	for _, run := range r.Reconcilers {
		if run.Error == "" {
			continue
		}
		switch run.Name {
		case "cni":
			if r.CNI.Present {
				out = append(out, "CNI config stale: "+run.Error)
			}
			continue
		case "cache":
			// Not a reconciler of the host, but what a restart without the
			// source would start from: a cache that cannot be read or
			// saved is a restart that loses the cluster view.
			out = append(out, "cache: "+run.Error)
			continue
		}
		out = append(out, fmt.Sprintf("%s reconcile failing: %s", run.Name, run.Error))
	}
	if r.Routes.Error != "" {
		out = append(out, "kindnet routes on the host unknown: "+r.Routes.Error)
	}
	if r.Masquerade.Error != "" {
		out = append(out, "masquerade table on the host unknown: "+r.Masquerade.Error)
	}
	if r.Masquerade.Enabled && !r.Masquerade.Present && r.Masquerade.Error == "" && ran(r, "masquerade") {
		out = append(out, "masquerade table inet "+r.Masquerade.Table+" missing")
	}
	if s, lasting := RuntimeDisagrees(r); s != "" && !lasting {
		out = append(out, s)
	}
	if s := runtimeProblem(r); s != "" {
		out = append(out, s)
	}
	for _, d := range r.Firewall.Drops {
		out = append(out, fmt.Sprintf("%s drops forwarded pod traffic (%s %s: %s); fix: %s", d.Owner, d.Table, d.Chain, d.What, d.Fix))
	}
	return out
}

// sourceProblem describes why the source cannot be trusted right now.
func sourceProblem(r *Record) string {
	s := r.Source
	name := s.Name
	if name == "" {
		name = "source"
	}
	switch {
	case !s.Healthy && s.Error != "":
		switch s.Reason {
		case "unreachable":
			return fmt.Sprintf("%s unreachable since %s", name, s.Since.UTC().Format(time.RFC3339))
		case "forbidden":
			perm := s.MissingPermission
			if perm == "" {
				perm = s.Error
			}
			return fmt.Sprintf("%s forbidden (403): missing permission %s", name, perm)
		case "waiting":
			return fmt.Sprintf("%s waiting: %s", name, s.Error)
		}
		return fmt.Sprintf("%s: %s", name, s.Error)
	case !s.Synced:
		return name + " has not delivered a view yet"
	}
	return ""
}

// runError is the error of the named run's last time, "" when it
// succeeded or never ran.
func runError(r *Record, name string) string {
	for _, run := range r.Reconcilers {
		if run.Name == name {
			return run.Error
		}
	}
	return ""
}

func ran(r *Record, name string) bool {
	for _, run := range r.Reconcilers {
		if run.Name == name {
			return true
		}
	}
	return false
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// nameList joins up to max names, then says how many more.
func nameList(names []string, max int) string {
	if len(names) <= max {
		return strings.Join(names, ", ")
	}
	return strings.Join(names[:max], ", ") + fmt.Sprintf(" and %d more", len(names)-max)
}
