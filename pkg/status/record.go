// Package status holds the record of what the agent last did: the node, the
// source and its health, every peer's state, the masquerade table, the CNI
// config and the last run of every reconciler. `kindnet status`, /metrics,
// /healthz and systemd's STATUS= line all read this one record.
//
// It is plain data plus a lock: it never touches the host.
package status

import (
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// SchemaVersion is bumped whenever a field of Record changes meaning or is
// removed; adding a field does not bump it.
const SchemaVersion = 1

// Peer states.
const (
	PeerRouted   = "routed"
	PeerOffLink  = "off-link"
	PeerConflict = "conflict"
	PeerRejected = "rejected"
	PeerPending  = "pending"
)

// Record is the agent's live state. Its JSON form is the stable schema of
// `kindnet status -o json` (see docs/status.md).
type Record struct {
	SchemaVersion int       `json:"schemaVersion"`
	Version       string    `json:"version"`
	Started       time.Time `json:"started"`
	Node          Node      `json:"node"`
	Source        Source    `json:"source"`
	Peers         []Peer    `json:"peers"`
	Masquerade    Masq      `json:"masquerade"`
	CNI           CNI       `json:"cni"`
	Reconcilers   []Run     `json:"reconcilers"`
	// Ready is true once the bootstrap state is applied and the source has
	// delivered its first view.
	Ready bool `json:"ready"`
}

// Node is this node.
type Node struct {
	Name     string   `json:"name"`
	PodCIDRs []string `json:"podCIDRs"`
	Problem  string   `json:"problem,omitempty"`
}

// Source is where the cluster view comes from and how that is going.
type Source struct {
	Name string `json:"name"` // "nodes file", "kubernetes", "cache"
	// Healthy is false while the source cannot see the cluster.
	Healthy   bool      `json:"healthy"`
	Error     string    `json:"error,omitempty"`
	Since     time.Time `json:"since,omitzero"` // when Error started
	LastEvent time.Time `json:"lastEvent,omitzero"`
	Synced    bool      `json:"synced"` // a first complete view arrived
}

// Peer is another node and what kindnet made of it.
type Peer struct {
	Name      string   `json:"name"`
	State     string   `json:"state"`
	Reason    string   `json:"reason,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
	PodCIDRs  []string `json:"podCIDRs,omitempty"`
}

// Masq is the masquerade table.
type Masq struct {
	Enabled      bool     `json:"enabled"`
	Table        string   `json:"table"`
	Present      bool     `json:"present"`
	PodRanges    []string `json:"podRanges,omitempty"`
	NoMasquerade []string `json:"noMasquerade,omitempty"`
}

// CNI is the config file for the runtime.
type CNI struct {
	Path    string    `json:"path"`
	Present bool      `json:"present"`
	Hash    string    `json:"hash,omitempty"`
	Written time.Time `json:"written,omitzero"`
	MTU     int       `json:"mtu,omitempty"`
	Waiting string    `json:"waiting,omitempty"`
}

// Run is the last run of one reconciler.
type Run struct {
	Name     string        `json:"name"`
	Last     time.Time     `json:"last"`
	Duration time.Duration `json:"durationNs"`
	Changes  int           `json:"changes"`
	Error    string        `json:"error,omitempty"`
}

// Store guards a Record; the agent writes, readers get copies.
type Store struct {
	mu  sync.Mutex
	rec Record
}

// NewStore starts a record.
func NewStore(version string, started time.Time) *Store {
	return &Store{rec: Record{SchemaVersion: SchemaVersion, Version: version, Started: started}}
}

// Update changes the record under the lock.
func (s *Store) Update(f func(r *Record)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.rec)
}

// Get returns a deep enough copy to read without the lock.
func (s *Store) Get() Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rec
	r.Peers = slices.Clone(r.Peers)
	r.Reconcilers = slices.Clone(r.Reconcilers)
	return r
}

// SetRun records a reconciler run, replacing its previous entry.
func (r *Record) SetRun(run Run) {
	for i := range r.Reconcilers {
		if r.Reconcilers[i].Name == run.Name {
			r.Reconcilers[i] = run
			return
		}
	}
	r.Reconcilers = append(r.Reconcilers, run)
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
// "3 peers routed, 1 rejected, CNI config ready, nodes file".
func (r *Record) Summary() string {
	c := r.Counts()
	parts := []string{fmt.Sprintf("%d peers routed", c[PeerRouted])}
	for _, st := range []string{PeerRejected, PeerOffLink, PeerConflict, PeerPending} {
		if c[st] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", c[st], st))
		}
	}
	if r.CNI.Present {
		parts = append(parts, "CNI config ready")
	} else {
		parts = append(parts, "no CNI config")
	}
	src := r.Source.Name
	if !r.Source.Healthy && r.Source.Error != "" {
		src += " unhealthy"
	}
	parts = append(parts, src)
	return strings.Join(parts, ", ")
}
