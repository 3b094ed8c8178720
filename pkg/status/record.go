// Package status holds the record of what the agent last did: the node, the
// source and its health, every peer's state, the masquerade table, the CNI
// config, IPAM usage, what the container runtime reports about the pod
// network and the last run of every reconciler; the verdict drawn
// from it (healthy, degraded, down); its human rendering; and the Unix-socket
// server and client that carry it from the agent to `kindnet status`.
// `kindnet status`, /metrics, /healthz and systemd's STATUS= line all read
// this one record.
//
// It never touches the host's network: the record is plain data plus a lock,
// and the only file it creates is the agent's status socket.
package status

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// SchemaVersion is bumped whenever a field of Record changes meaning or type
// or is removed; adding a field does not bump it. testdata/schema.golden
// pins the fields of each version (see TestSchemaIsStable).
const SchemaVersion = 1

// Peer states.
const (
	PeerRouted   = "routed"   // a route to each of its podCIDRs is installed
	PeerOffLink  = "off-link" // its address is not on a directly connected network
	PeerConflict = "conflict" // a route kindnet does not own is in the way
	PeerRejected = "rejected" // validation refused it; nothing installed
	PeerPending  = "pending"  // accepted, nothing to route yet (no podCIDR)
	// PeerUnknown is used only when the agent is down and `kindnet status`
	// inspected the host itself: the peer comes from the cache and not
	// every one of its podCIDRs has a kindnet route.
	PeerUnknown = "unknown"
)

// PeerStates lists the states in display order.
var PeerStates = []string{PeerRouted, PeerPending, PeerOffLink, PeerConflict, PeerRejected, PeerUnknown}

// Record is the agent's live state. Its JSON form is the stable schema of
// `kindnet status -o json` (docs/status.md).
type Record struct {
	SchemaVersion int    `json:"schemaVersion"`
	Version       string `json:"version"`
	// Generation grows on every change of the record; a watcher asks for a
	// record newer than the one it has.
	Generation uint64    `json:"generation"`
	Started    time.Time `json:"started,omitzero"`
	// Now is when this copy was taken, UptimeSeconds is Now - Started.
	Now           time.Time `json:"now"`
	UptimeSeconds int64     `json:"uptimeSeconds"`
	// Verdict is drawn from the rest of the record by Judge.
	Verdict    Verdict `json:"verdict"`
	Agent      Agent   `json:"agent"`
	Node       Node    `json:"node"`
	Source     Source  `json:"source"`
	Peers      []Peer  `json:"peers"`
	Routes     Routes  `json:"routes"`
	Masquerade Masq    `json:"masquerade"`
	CNI        CNI     `json:"cni"`
	IPAM       IPAM    `json:"ipam"`
	// Runtime is what the container runtime says about the pod network.
	Runtime     Runtime `json:"runtime"`
	Reconcilers []Run   `json:"reconcilers"`
	// Warnings are problems of the node's setup that do not stop the pod
	// network but must be fixed: a file the agent trusts (config, nodes
	// file, kubeconfig) that a user other than root can change.
	Warnings []string `json:"warnings,omitempty"`
	// Bootstrapped is true once the state from local files (nodes file or
	// cache) has been applied at start.
	Bootstrapped bool `json:"bootstrapped"`
	// Ready is true once bootstrapped and the source has delivered a first
	// view (what /readyz answers).
	Ready bool `json:"ready"`
	// Host is filled only by `kindnet status` when the agent does not
	// answer: what it found on the host by itself.
	Host *Host `json:"host,omitempty"`
	// Firewall is what the last check of other programs' firewalls found
	// dropping forwarded pod traffic (package firewall).
	Firewall Firewall `json:"firewall"`
}

// Firewall is the last check of the host's other firewalls.
type Firewall struct {
	Checked time.Time `json:"checked,omitzero"`
	// Drops lists the firewalls that drop forwarded pod traffic.
	Drops []FirewallDrop `json:"drops,omitempty"`
	// Error says why the ruleset could not be read.
	Error string `json:"error,omitempty"`
}

// FirewallDrop is one chain of another program that drops pod traffic,
// and the fix in that program's terms.
type FirewallDrop struct {
	Owner string `json:"owner"`
	Table string `json:"table"`
	Chain string `json:"chain"`
	What  string `json:"what"`
	Fix   string `json:"fix"`
}

// Agent is the process serving the record.
type Agent struct {
	// Running is true when the agent answered on its socket; false when
	// `kindnet status` had to inspect the host itself.
	Running bool   `json:"running"`
	PID     int    `json:"pid,omitempty"`
	Socket  string `json:"socket"`
	// Error says why the agent could not be reached (only when not running).
	Error string `json:"error,omitempty"`
	// LastHeartbeat is when the agent's main loop last proved it is alive.
	LastHeartbeat  time.Time `json:"lastHeartbeat,omitzero"`
	MetricsAddress string    `json:"metricsAddress,omitempty"`
	// MetricsError says why /metrics is not served (e.g. address in use).
	MetricsError string `json:"metricsError,omitempty"`
}

// Node is this node.
type Node struct {
	Name     string   `json:"name"`
	PodCIDRs []string `json:"podCIDRs"`
	// Problem says why this node's own podCIDRs cannot be used.
	Problem string `json:"problem,omitempty"`
}

// Source is the source the agent follows and how that is going.
type Source struct {
	// Name is the source followed: "kubernetes" or "nodes file".
	Name string `json:"name"`
	// ViewFrom is where the view in force came from: the source's name,
	// "cache" (bootstrap from the last run's view), or "" (no view yet).
	ViewFrom string `json:"viewFrom"`
	// Healthy is false while the source cannot see the cluster.
	Healthy bool `json:"healthy"`
	// Reason classifies a problem: "unreachable", "forbidden", "waiting",
	// "invalid", or "error" for anything else.
	Reason string `json:"reason,omitempty"`
	Error  string `json:"error,omitempty"`
	// MissingPermission is set with reason "forbidden".
	MissingPermission string `json:"missingPermission,omitempty"`
	Hint              string `json:"hint,omitempty"`
	// Since is when the current problem started.
	Since time.Time `json:"since,omitzero"`
	// LastEvent is the last update of any kind from the source.
	LastEvent time.Time `json:"lastEvent,omitzero"`
	// LastSync is the last time the source delivered a complete view.
	LastSync time.Time `json:"lastSync,omitzero"`
	// Synced is true once a first complete view arrived from the source.
	Synced bool `json:"synced"`
	// Events and Errors count updates since the agent started.
	Events uint64 `json:"events"`
	Errors uint64 `json:"errors"`
}

// Peer is another node and what kindnet made of it.
type Peer struct {
	Name      string   `json:"name"`
	State     string   `json:"state"`
	Reason    string   `json:"reason,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	PodCIDRs  []string `json:"podCIDRs,omitempty"`
}

// Routes sums up kindnet's routes on the host.
type Routes struct {
	// Installed is the number of kindnet routes present after the last
	// routes reconcile; before any (no cluster view yet) or when it could
	// not read the routes, the number found on the host.
	Installed int `json:"installed"`
	// Error says why the routes on the host could not be counted: then
	// Installed is not known to be what the host has.
	Error string `json:"error,omitempty"`
}

// Masq is the masquerade table.
type Masq struct {
	Enabled bool   `json:"enabled"`
	Table   string `json:"table"`
	// Present is whether the table exists on the host, also when the last
	// masquerade reconcile failed or none ran yet.
	Present bool `json:"present"`
	// Error says why the host's tables could not be read: then Present is
	// not known to be what the host has.
	Error string `json:"error,omitempty"`
	// PodRanges are the sources that get masqueraded; NoMasquerade the
	// destinations that keep the pod address.
	PodRanges    []string `json:"podRanges,omitempty"`
	NoMasquerade []string `json:"noMasquerade,omitempty"`
}

// CNI is the config file for the runtime.
type CNI struct {
	Path    string    `json:"path"`
	Present bool      `json:"present"`
	Hash    string    `json:"hash,omitempty"` // sha256 of the file
	Written time.Time `json:"written,omitzero"`
	Plugin  string    `json:"plugin,omitempty"`
	MTU     int       `json:"mtu,omitempty"`
	// Waiting says why the agent does not write the config (yet).
	Waiting string `json:"waiting,omitempty"`
}

// Runtime states: what came of the last check of the container runtime.
const (
	// RuntimeReady: the runtime reports NetworkReady=true.
	RuntimeReady = "ready"
	// RuntimeNotReady: the runtime reports NetworkReady=false (or no
	// NetworkReady condition at all, which kubelet reads the same way).
	RuntimeNotReady = "not-ready"
	// RuntimeUnanswered: the socket is there but the runtime did not
	// answer in time, or answered with an error.
	RuntimeUnanswered = "unanswered"
	// RuntimeNoSocket: the configured socket does not exist.
	RuntimeNoSocket = "no-socket"
	// RuntimeNotFound: cri.endpoint is auto and none of the well-known
	// sockets exists (a host without a CRI runtime, or one not started).
	RuntimeNotFound = "not-found"
	// RuntimeDisabled: cri.endpoint is none; the runtime is not asked.
	RuntimeDisabled = "disabled"
)

// Runtime is what the node's container runtime reported about the pod
// network when last asked over CRI (RuntimeStatus): its NetworkReady
// condition, the one kubelet turns into the Node's Ready condition. An
// empty State means it has not been asked yet.
type Runtime struct {
	// Endpoint is the CRI socket asked (empty when none was found or the
	// check is off).
	Endpoint string `json:"endpoint,omitempty"`
	// Auto is true when the endpoint was looked for among the well-known
	// sockets (cri.endpoint auto) rather than configured.
	Auto  bool   `json:"auto"`
	State string `json:"state"`
	// Name and Version are the runtime's own (CRI Version), e.g.
	// "containerd" "v2.4.2"; empty until it answered once.
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	// NetworkReady is the status of the runtime's NetworkReady condition
	// (true only in state ready); Reason and Message are the condition's.
	NetworkReady bool   `json:"networkReady"`
	Reason       string `json:"reason,omitempty"`
	Message      string `json:"message,omitempty"`
	// Error says why the runtime could not be asked (states unanswered,
	// no-socket).
	Error string `json:"error,omitempty"`
	// Checked is when the runtime was last asked; Since is when the
	// current state began (as first seen by the agent).
	Checked time.Time `json:"checked,omitzero"`
	Since   time.Time `json:"since,omitzero"`
}

// Observe takes the result of a new check, keeping Since when the state
// is the same as before. It reports whether anything but the times
// changed (a record watcher is woken only then).
func (rt *Runtime) Observe(next Runtime) (changed bool) {
	prev := *rt
	next.Since = next.Checked
	if prev.State == next.State && prev.Endpoint == next.Endpoint && !prev.Since.IsZero() {
		next.Since = prev.Since
	}
	if next.Name == "" && prev.Endpoint == next.Endpoint {
		// An unanswered runtime is still the one that answered before.
		next.Name, next.Version = prev.Name, prev.Version
	}
	*rt = next
	prev.Checked, prev.Since, next.Checked, next.Since = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	return prev != next
}

// Who names the runtime in sentences: "containerd" once it answered,
// else "the runtime at unix:///run/x.sock".
func (rt *Runtime) Who() string {
	switch {
	case rt.Name != "":
		return rt.Name
	case rt.Endpoint != "":
		return "the runtime at " + rt.Endpoint
	}
	return "the runtime"
}

// IPAM is address usage of the CNI plugin's IPAM store.
type IPAM struct {
	Dir string `json:"dir"`
	// Available is false when usage could not be read; Note says why.
	Available bool        `json:"available"`
	Note      string      `json:"note,omitempty"`
	Ranges    []IPAMRange `json:"ranges,omitempty"`
}

// IPAMRange is the usage of one pod range.
type IPAMRange struct {
	CIDR string `json:"cidr"`
	Used int    `json:"used"`
	// Capacity is the number of assignable addresses: the range less its
	// network, IPv4 broadcast and reserved gateway addresses (saturates at
	// 2^64-1).
	Capacity uint64 `json:"capacity"`
}

// Run is the last run of one reconciler, with counts since the agent started.
type Run struct {
	Name     string        `json:"name"`
	Last     time.Time     `json:"last"`
	Duration time.Duration `json:"durationNs"`
	Changes  int           `json:"changes"`
	Error    string        `json:"error,omitempty"`
	// LastError is the most recent error, kept after a later success, and
	// when it happened.
	LastError   string    `json:"lastError,omitempty"`
	LastErrorAt time.Time `json:"lastErrorAt,omitzero"`
	Runs        uint64    `json:"runs"`
	Errors      uint64    `json:"errors"`
}

// Host is what `kindnet status` found on the host when the agent did not
// answer.
type Host struct {
	// Routes are the kindnet-protocol routes of the network namespace.
	Routes []HostRoute `json:"routes"`
	// NftTables are the inet tables named kindnet*.
	NftTables []string `json:"nftTables"`
	// Cache is the cache of the last good view.
	Cache CacheInfo `json:"cache"`
	// Problems lists what could not be inspected.
	Problems []string `json:"problems,omitempty"`
}

// HostRoute is one kindnet route.
type HostRoute struct {
	Dst string `json:"dst"`
	Via string `json:"via"`
	Dev string `json:"dev,omitempty"`
}

// CacheInfo describes the on-disk cache of the cluster view.
type CacheInfo struct {
	Path    string    `json:"path"`
	Present bool      `json:"present"`
	Written time.Time `json:"written,omitzero"`
	Peers   int       `json:"peers"`
	Error   string    `json:"error,omitempty"`
}

// Store guards a Record; the agent writes, readers get copies.
type Store struct {
	mu      sync.Mutex
	rec     Record
	changed chan struct{} // closed and replaced on every Update
	beat    atomic.Int64  // unix nanoseconds of the last heartbeat
}

// NewStore starts a record.
func NewStore(version string, started time.Time) *Store {
	return &Store{
		rec:     Record{SchemaVersion: SchemaVersion, Version: version, Started: started},
		changed: make(chan struct{}),
	}
}

// Update changes the record under the lock.
func (s *Store) Update(f func(r *Record)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.rec)
	s.rec.Generation++
	close(s.changed)
	s.changed = make(chan struct{})
}

// Get returns a deep enough copy to read without the lock.
func (s *Store) Get() Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rec
	r.Peers = slices.Clone(r.Peers)
	r.Reconcilers = slices.Clone(r.Reconcilers)
	r.Warnings = slices.Clone(r.Warnings)
	r.IPAM.Ranges = slices.Clone(r.IPAM.Ranges)
	r.Firewall.Drops = slices.Clone(r.Firewall.Drops)
	if b := s.beat.Load(); b != 0 {
		r.Agent.LastHeartbeat = time.Unix(0, b)
	}
	return r
}

// Wait blocks until the record's generation is past since, or ctx ends. It
// lets `kindnet status --watch` redraw as soon as something changes.
func (s *Store) Wait(ctx context.Context, since uint64) {
	s.mu.Lock()
	gen, ch := s.rec.Generation, s.changed
	s.mu.Unlock()
	if gen > since {
		return
	}
	select {
	case <-ch:
	case <-ctx.Done():
	}
}

// Beat records that the agent's main loop is alive. It does not count as a
// change of the record (a watcher is not woken for it).
func (s *Store) Beat(now time.Time) { s.beat.Store(now.UnixNano()) }

// LastBeat is the time of the last Beat (zero before the first).
func (s *Store) LastBeat() time.Time {
	b := s.beat.Load()
	if b == 0 {
		return time.Time{}
	}
	return time.Unix(0, b)
}

// SetRun records a reconciler run, replacing its previous entry and keeping
// the counts and the last error.
func (r *Record) SetRun(run Run) {
	i := slices.IndexFunc(r.Reconcilers, func(x Run) bool { return x.Name == run.Name })
	if i < 0 {
		r.Reconcilers = append(r.Reconcilers, Run{Name: run.Name})
		i = len(r.Reconcilers) - 1
	}
	prev := r.Reconcilers[i]
	run.Runs = prev.Runs + 1
	run.Errors = prev.Errors
	run.LastError, run.LastErrorAt = prev.LastError, prev.LastErrorAt
	if run.Error != "" {
		run.Errors++
		run.LastError, run.LastErrorAt = run.Error, run.Last
	}
	r.Reconcilers[i] = run
}

// Stamp sets the time of this copy, the uptime and the verdict. Whoever
// hands a record out calls it once, just before.
func (r *Record) Stamp(now time.Time) {
	r.Now = now
	if !r.Started.IsZero() {
		r.UptimeSeconds = int64(now.Sub(r.Started) / time.Second)
	}
	r.Verdict = Judge(r)
}

// Counts tallies peers by state.
func (r *Record) Counts() map[string]int {
	c := map[string]int{}
	for _, p := range r.Peers {
		c[p.State]++
	}
	return c
}

// Summary is the one-line STATUS= text for systemd, e.g.
// "3 peers routed, 1 rejected, CNI config ready, containerd network ready,
// kubernetes". It carries no times, so it changes only when the state does.
func (r *Record) Summary() string {
	c := r.Counts()
	parts := []string{fmt.Sprintf("%d peers routed", c[PeerRouted])}
	for _, st := range []string{PeerRejected, PeerOffLink, PeerConflict, PeerPending} {
		if c[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[st], st))
		}
	}
	parts = append(parts, r.cniSummary()...)
	src := r.Source.Name
	if !r.Source.Healthy && r.Source.Error != "" {
		src += " unhealthy"
	}
	parts = append(parts, src)
	return strings.Join(parts, ", ")
}

// cniSummary is the CNI config's part of the STATUS= line, with what the
// runtime says about it when the runtime was asked: plainly a disagreement
// when the config is written and the runtime reports the network not ready.
func (r *Record) cniSummary() []string {
	rt := r.Runtime
	cni := "no CNI config"
	if r.CNI.Present {
		cni = "CNI config ready"
	}
	switch rt.State {
	case RuntimeReady:
		return []string{cni, rt.Who() + " network ready"}
	case RuntimeNotReady:
		cond := "NetworkReady=false"
		if d := rt.condition(); d != "" {
			cond += ": " + d
		}
		if r.CNI.Present {
			return []string{"CNI config written but " + rt.Who() + " reports " + cond}
		}
		return []string{cni, rt.Who() + " " + cond}
	case RuntimeUnanswered:
		return []string{cni, rt.Who() + " not answering"}
	case RuntimeNoSocket:
		return []string{cni, "no runtime socket at " + rt.Endpoint}
	}
	return []string{cni}
}
