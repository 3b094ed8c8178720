package status

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// RenderOptions shape the human view.
type RenderOptions struct {
	// Color adds ANSI colours; only for a terminal, never with NO_COLOR.
	Color bool
	// Wide adds every address, the reconcilers table and counters.
	Wide bool
}

// ANSI colours of the view.
const (
	green  = "\x1b[32m"
	yellow = "\x1b[33m"
	red    = "\x1b[31m"
	bold   = "\x1b[1m"
	reset  = "\x1b[0m"
)

// Render writes the human view of a stamped record: the verdict line, then
// node, source, CNI, runtime, masquerade, IPAM and routes lines, then the peers
// table (and, wide, the reconcilers table). Times are shown relative to
// r.Now.
func Render(w io.Writer, r *Record, o RenderOptions) error {
	p := &printer{o: o, now: r.Now}
	p.line(p.paint(verdictColor(r.Verdict.State), r.Verdict.String()))
	p.kv("node", nodeLine(r, p))
	p.kv("source", sourceLine(r, p))
	p.kv("CNI", cniLine(r, p))
	p.kv("runtime", runtimeLine(r, p))
	if h := runtimeHint(r); h != "" {
		p.kv("", "  hint: "+h)
	}
	p.kv("masq", masqLine(r, o.Wide))
	if l := ipamLine(r); l != "" {
		p.kv("IPAM", l)
	}
	routesLines(r, p)
	for _, w := range r.Warnings { // shown whatever the verdict
		p.kv("WARNING", p.paint(red, w))
	}
	if o.Wide {
		p.kv("agent", agentLine(r, p))
	}
	p.line("")
	peersTable(r, p)
	if o.Wide && len(r.Reconcilers) > 0 {
		p.line("")
		reconcilersTable(r, p)
	}
	_, err := io.WriteString(w, p.b.String())
	return err
}

type printer struct {
	o   RenderOptions
	now time.Time
	b   strings.Builder
}

func (p *printer) line(s string) { p.b.WriteString(strings.TrimRight(s, " ") + "\n") }

func (p *printer) kv(key, val string) { p.line(fmt.Sprintf("%-8s %s", key, val)) }

func (p *printer) paint(color, s string) string {
	if !p.o.Color || color == "" {
		return s
	}
	return color + s + reset
}

// ago renders t relative to now: "12s ago", "3m ago"; the absolute time when
// the record carries no "now".
func (p *printer) ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	if p.now.IsZero() {
		return t.UTC().Format(time.RFC3339)
	}
	return shortDuration(p.now.Sub(t)) + " ago"
}

func shortDuration(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d"
}

func verdictColor(state string) string {
	switch state {
	case Healthy:
		return green
	case Degraded:
		return yellow
	}
	return red
}

func peerColor(state string) string {
	switch state {
	case PeerRouted:
		return green
	case PeerPending, PeerUnknown:
		return yellow
	}
	return red
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

func nodeLine(r *Record, p *printer) string {
	s := fmt.Sprintf("%s  podCIDRs %s", r.Node.Name, orNone(r.Node.PodCIDRs))
	if r.Node.Problem != "" {
		s += "  (" + r.Node.Problem + ")"
	}
	if r.Agent.Running {
		s += fmt.Sprintf("  agent %s up %s", r.Version, shortDuration(time.Duration(r.UptimeSeconds)*time.Second))
	} else {
		s += "  " + p.paint(red, "agent not running")
	}
	return s
}

func sourceLine(r *Record, p *printer) string {
	if r.Host != nil {
		c := r.Host.Cache
		switch {
		case c.Error != "":
			return fmt.Sprintf("cache %s unusable: %s", c.Path, c.Error)
		case !c.Present:
			return fmt.Sprintf("no cache at %s", c.Path)
		}
		return fmt.Sprintf("cache %s written %s, %s", c.Path, p.ago(c.Written), plural(c.Peers, "peer"))
	}
	s := r.Source
	var b strings.Builder
	b.WriteString(s.Name)
	switch {
	case !s.Healthy && s.Error != "":
		b.WriteString(": " + p.paint(yellow, sourceTrouble(s, p)))
		if s.Hint != "" {
			b.WriteString("; fix: " + s.Hint)
		}
	case s.Synced:
		b.WriteString(": synced, last event " + p.ago(s.LastEvent))
	default:
		b.WriteString(": " + p.paint(yellow, "no view yet"))
	}
	if s.ViewFrom != "" && s.ViewFrom != s.Name {
		b.WriteString("; view in force from " + s.ViewFrom)
	}
	if p.o.Wide {
		fmt.Fprintf(&b, "; %d events, %d errors", s.Events, s.Errors)
		if !s.LastSync.IsZero() {
			b.WriteString(", last sync " + p.ago(s.LastSync))
		}
	}
	return b.String()
}

// sourceTrouble says what is wrong with the source, by kind of problem.
func sourceTrouble(s Source, p *printer) string {
	since := "since " + s.Since.UTC().Format(time.RFC3339) + " (" + p.ago(s.Since) + ")"
	switch s.Reason {
	case "unreachable":
		return "unreachable " + since + ": " + s.Error
	case "forbidden":
		perm := s.MissingPermission
		if perm == "" {
			perm = "unknown"
		}
		return "forbidden (403), missing permission " + perm + " " + since + ": " + s.Error
	case "waiting":
		return "waiting " + since + ": " + s.Error
	}
	return "error " + since + ": " + s.Error
}

func cniLine(r *Record, p *printer) string {
	c := r.CNI
	if !c.Present {
		s := p.paint(red, "no config at "+c.Path)
		if c.Waiting != "" {
			s += " (" + c.Waiting + ")"
		}
		return s
	}
	s := c.Path
	if c.Plugin != "" {
		s += "  " + c.Plugin
	}
	if c.MTU > 0 {
		s += fmt.Sprintf(" mtu %d", c.MTU)
	}
	s += "  written " + p.ago(c.Written)
	if c.Hash != "" {
		h := c.Hash
		if !p.o.Wide && len(h) > 12 {
			h = h[:12]
		}
		s += "  sha256:" + h
	}
	if c.Waiting != "" {
		s += "  " + p.paint(yellow, "(may be stale: "+c.Waiting+")")
	}
	return s
}

// runtimeLine is what the container runtime reported about the pod
// network, e.g. "containerd v2.4.2  NetworkReady=true  unix:///run/containerd/containerd.sock
// (auto)  checked 2s ago".
func runtimeLine(r *Record, p *printer) string {
	rt := r.Runtime
	switch rt.State {
	case "":
		return "not asked yet"
	case RuntimeDisabled:
		return "not asked (cri.endpoint: none)"
	case RuntimeNotFound:
		s := "no CRI socket at the well-known paths (cri.endpoint auto)"
		if p.o.Wide && rt.Error != "" {
			s += ": " + rt.Error
		}
		return s
	case RuntimeNoSocket:
		return p.paint(yellow, "no socket at "+rt.Endpoint) + endpointNote(rt, p)
	case RuntimeUnanswered:
		return p.paint(yellow, rt.Who()+" does not answer: "+rt.Error) + endpointNote(rt, p)
	}
	who := rt.Name
	if who == "" {
		who = "runtime"
	}
	if rt.Version != "" {
		who += " " + rt.Version
	}
	var s string
	if rt.State == RuntimeReady {
		s = who + "  " + p.paint(green, "NetworkReady=true")
		if !r.CNI.Present {
			s += "  " + p.paint(yellow, "(kindnet wrote no CNI config: the runtime uses another one)")
		}
	} else {
		s = who + "  " + p.paint(red, "NetworkReady=false") + " since " + p.ago(rt.Since)
		if d := rt.condition(); d != "" {
			s += ": " + d
		}
	}
	return s + endpointNote(rt, p)
}

// runtimeHint says what to look at when the runtime has not loaded any CNI
// config although kindnet's has long been written (containerd's and
// CRI-O's messages for that case). When the runtime found the config and
// the plugin's STATUS fails, the message is kindnet's own and says enough.
func runtimeHint(r *Record) string {
	_, lasting := RuntimeDisagrees(r)
	msg := strings.ToLower(r.Runtime.Message)
	if !lasting || !(strings.Contains(msg, "not initialized") || strings.Contains(msg, "no network config") ||
		strings.Contains(msg, "no cni configuration")) {
		return ""
	}
	return "is " + dirOf(r.CNI.Path) + " the runtime's CNI conf dir? A runtime that missed the file being written " +
		"reads the dir again when restarted (running pods are not affected)"
}

// endpointNote is the socket asked, and when (the time only with -o wide).
func endpointNote(rt Runtime, p *printer) string {
	s := "  " + rt.Endpoint
	if rt.Auto {
		s += " (auto)"
	}
	if p.o.Wide {
		s += "  checked " + p.ago(rt.Checked)
	}
	return s
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, '/'); i > 0 {
		return path[:i]
	}
	return path
}

func masqLine(r *Record, wide bool) string {
	m := r.Masquerade
	if !m.Enabled && r.Host == nil {
		return "disabled"
	}
	state := "present"
	switch {
	case m.Error != "":
		state = "unknown (" + m.Error + ")"
	case !m.Present:
		state = "absent"
	}
	s := fmt.Sprintf("table inet %s %s", m.Table, state)
	if len(m.NoMasquerade) > 0 {
		s += "  no-masquerade " + strings.Join(m.NoMasquerade, ", ")
	}
	if wide && len(m.PodRanges) > 0 {
		s += "  pod sources " + strings.Join(m.PodRanges, ", ")
	}
	if r.Host != nil && len(r.Host.NftTables) > 0 {
		s += "  (kindnet tables: " + strings.Join(r.Host.NftTables, ", ") + ")"
	}
	return s
}

func ipamLine(r *Record) string {
	i := r.IPAM
	if !i.Available {
		if i.Note == "" {
			return ""
		}
		return "not available: " + i.Note
	}
	parts := make([]string, 0, len(i.Ranges))
	for _, rg := range i.Ranges {
		parts = append(parts, fmt.Sprintf("%s %d/%d used", rg.CIDR, rg.Used, rg.Capacity))
	}
	return orNone(parts)
}

func routesLines(r *Record, p *printer) {
	if r.Host == nil {
		s := fmt.Sprintf("%d kindnet routes installed", r.Routes.Installed)
		if r.Routes.Error != "" {
			s = p.paint(yellow, "unknown: "+r.Routes.Error)
		}
		p.kv("routes", s)
		return
	}
	p.kv("routes", fmt.Sprintf("%d kindnet routes on the host", len(r.Host.Routes)))
	for _, rt := range r.Host.Routes {
		s := rt.Dst + " via " + rt.Via
		if rt.Dev != "" {
			s += " dev " + rt.Dev
		}
		p.kv("", "  "+s)
	}
	for _, pr := range r.Host.Problems {
		p.kv("", p.paint(yellow, "could not inspect: "+pr))
	}
}

func agentLine(r *Record, p *printer) string {
	a := r.Agent
	if !a.Running {
		return "not running; socket " + a.Socket
	}
	s := fmt.Sprintf("pid %d  socket %s  heartbeat %s", a.PID, a.Socket, p.ago(a.LastHeartbeat))
	switch {
	case a.MetricsError != "":
		s += "  metrics: " + p.paint(yellow, a.MetricsError)
	case a.MetricsAddress != "":
		s += "  metrics http://" + a.MetricsAddress + "/metrics"
	default:
		s += "  metrics disabled"
	}
	return s
}

// cell is a table cell: its text and colour (padding counts the text only).
type cell struct{ text, color string }

func (p *printer) table(head []string, rows [][]cell) {
	// Widths count runes: "µs" is one column wide, two bytes long.
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = utf8.RuneCountInString(h)
	}
	for _, r := range rows {
		for i, c := range r {
			width[i] = max(width[i], utf8.RuneCountInString(c.text))
		}
	}
	write := func(cells []cell) {
		var b strings.Builder
		for i, c := range cells {
			b.WriteString(p.paint(c.color, c.text))
			if i < len(cells)-1 {
				b.WriteString(strings.Repeat(" ", width[i]-utf8.RuneCountInString(c.text)+2))
			}
		}
		p.line(b.String())
	}
	hc := make([]cell, len(head))
	for i, h := range head {
		hc[i] = cell{h, bold}
	}
	write(hc)
	for _, r := range rows {
		write(r)
	}
}

func peersTable(r *Record, p *printer) {
	if len(r.Peers) == 0 {
		p.line("no peers")
		return
	}
	rows := make([][]cell, 0, len(r.Peers))
	for _, pe := range r.Peers {
		addrs := pe.Addresses
		if !p.o.Wide && len(addrs) > 1 {
			addrs = []string{addrs[0] + fmt.Sprintf(" +%d", len(addrs)-1)}
		}
		rows = append(rows, []cell{
			{pe.Name, ""}, {pe.State, peerColor(pe.State)},
			{strings.Join(addrs, ","), ""}, {strings.Join(pe.PodCIDRs, ","), ""}, {pe.Reason, ""},
		})
	}
	p.table([]string{"PEER", "STATE", "ADDRESSES", "PODCIDRS", "REASON"}, rows)
}

func reconcilersTable(r *Record, p *printer) {
	rows := make([][]cell, 0, len(r.Reconcilers))
	for _, run := range r.Reconcilers {
		lastErr, color := run.LastError, ""
		if run.Error != "" {
			lastErr, color = run.Error, red
		} else if lastErr != "" {
			lastErr = "(" + p.ago(run.LastErrorAt) + ") " + lastErr
		}
		rows = append(rows, []cell{
			{run.Name, ""}, {p.ago(run.Last), ""}, {run.Duration.Round(time.Microsecond).String(), ""},
			{strconv.Itoa(run.Changes), ""}, {strconv.FormatUint(run.Runs, 10), ""},
			{strconv.FormatUint(run.Errors, 10), ""}, {lastErr, color},
		})
	}
	p.table([]string{"RECONCILER", "LAST RUN", "TOOK", "CHANGES", "RUNS", "ERRORS", "LAST ERROR"}, rows)
}
