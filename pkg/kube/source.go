// Package kube is the cluster source production nodes use: it follows the
// Node objects of the Kubernetes API with kubelet's own credentials (or a
// dedicated kubeconfig) and sends complete cluster views to the agent. It
// waits for a kubeconfig that does not exist yet, re-reads rotated
// credentials without a restart, explains a missing permission (403) with
// the exact fix, and keeps the last good view through any API outage.
//
// It never touches the kernel, and the only thing it ever writes to the API
// is this node's own NetworkUnavailable condition.
package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// SourceName is how the source names itself in logs and the status record.
const SourceName = "kubernetes"

// defaultPoll is how often the kubeconfig and the files it names are
// checked: for a kubeconfig that does not exist yet, and for a rotated
// client certificate. Reading three small files this often costs nothing.
const defaultPoll = 2 * time.Second

// Options configure the source.
type Options struct {
	// Kubeconfig is the kubeconfig file (kubelet's by default).
	Kubeconfig string
	// NodeName is this node's name; its Node is Self, every other one a peer.
	NodeName string
	// Policy says which Node addresses may be routed via.
	Policy kubenode.AddressPolicy
	// UserAgent identifies kindnet to the API server.
	UserAgent string
	Log       *slog.Logger
	// Poll is how often credential files are checked; default 2s.
	Poll time.Duration
	// Client, when set, is used instead of one built from Kubeconfig
	// (unit tests pass client-go's fake Nodes client).
	Client NodeAPI
}

// Source follows the Kubernetes API. It implements model.Source.
type Source struct {
	opts Options
	log  *slog.Logger
	// readyWanted is set once the agent reports this node's routes in place;
	// the session then marks the Node NetworkUnavailable=False.
	readyWanted atomic.Bool
	readyKick   chan struct{}
	// apiAddrs are the API server's addresses from the kubeconfig in use.
	apiAddrs atomic.Pointer[[]netip.Addr]
}

// New returns a source for the options. It does not connect yet.
func New(o Options) *Source {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Poll <= 0 {
		o.Poll = defaultPoll
	}
	if o.UserAgent == "" {
		o.UserAgent = "kindnet"
	}
	return &Source{opts: o, log: o.Log, readyKick: make(chan struct{}, 1)}
}

// Name implements model.Source.
func (s *Source) Name() string { return SourceName }

// NetworkReady tells the source that this node's routes are in place, so it
// may set the Node's NetworkUnavailable condition to False. It never blocks
// and is cheap to call after every successful reconcile.
func (s *Source) NetworkReady() {
	s.readyWanted.Store(true)
	select {
	case s.readyKick <- struct{}{}:
	default:
	}
}

// ProtectedAddrs returns the API server's addresses (from the kubeconfig in
// use): validation rejects any podCIDR covering one, so a hostile Node can
// never route the agent's own connection to the API server away.
func (s *Source) ProtectedAddrs() []netip.Addr {
	if p := s.apiAddrs.Load(); p != nil {
		return *p
	}
	return nil
}

// Run implements model.Source: it connects with the current credentials,
// follows the Nodes, and starts over with new credentials whenever the
// kubeconfig or a file it names changes. It returns only when ctx ends.
func (s *Source) Run(ctx context.Context, out chan<- model.Update) error {
	rep := &reporter{out: out}
	if s.opts.Client != nil {
		newSession(s, s.opts.Client, rep).run(ctx)
		return nil
	}
	tick := time.NewTicker(s.opts.Poll)
	defer tick.Stop()
	for ctx.Err() == nil {
		creds, err := loadCredentials(s.opts.Kubeconfig, s.opts.UserAgent)
		if err != nil {
			rep.fail(ctx, err)
			if !sleep(ctx, tick.C) {
				return nil
			}
			continue
		}
		s.follow(ctx, creds, rep, tick.C)
	}
	return nil
}

// follow runs one session with creds until ctx ends or the credentials on
// disk change into ones that load. A change that does not load (a file
// caught half-written) keeps the working session.
func (s *Source) follow(ctx context.Context, creds *credentials, rep *reporter, tick <-chan time.Time) {
	client, err := newRESTNodes(creds.rest)
	if err != nil {
		rep.fail(ctx, fmt.Errorf("kubeconfig %s: build client: %w", s.opts.Kubeconfig, err))
		sleep(ctx, tick)
		return
	}
	addrs := serverAddrs(ctx, creds.rest.Host)
	s.apiAddrs.Store(&addrs)
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); newSession(s, client, rep).run(sctx) }()
	defer func() {
		cancel()
		<-done
		creds.dialer.CloseAll() // no connection outlives the credentials it was made with
	}()
	s.log.Info("following the Kubernetes API", "node", s.opts.NodeName, "server", creds.rest.Host,
		"kubeconfig", s.opts.Kubeconfig, "identity", creds.identity)
	for {
		if !sleep(ctx, tick) {
			return
		}
		if !creds.changed() {
			continue
		}
		next, err := loadCredentials(s.opts.Kubeconfig, s.opts.UserAgent)
		if err != nil {
			s.log.Warn("kubeconfig changed but does not load; keeping the current connection", "kubeconfig", s.opts.Kubeconfig, "err", err)
			creds.accept() // report this version once
			continue
		}
		s.log.Info("credentials changed on disk; reconnecting with them", "kubeconfig", s.opts.Kubeconfig, "identity", next.identity)
		return
	}
}

// serverAddrs resolves the API server's host: an address as is, a name
// through the resolver (briefly; a failure only means nothing to protect).
func serverAddrs(ctx context.Context, server string) []netip.Addr {
	u, err := url.Parse(server)
	if err != nil || u.Hostname() == "" {
		return nil
	}
	if a, err := netip.ParseAddr(u.Hostname()); err == nil {
		return []netip.Addr{a.Unmap()}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(rctx, "ip", u.Hostname())
	if err != nil {
		return nil
	}
	for i := range addrs {
		addrs[i] = addrs[i].Unmap()
	}
	return addrs
}

// sleep waits for one tick; it reports false when ctx ended.
func sleep(ctx context.Context, tick <-chan time.Time) bool {
	select {
	case <-ctx.Done():
		return false
	case <-tick:
		return true
	}
}

// reporter sends updates to the agent: each distinct problem once, a view
// only when it changed, and the current view again after a problem so the
// agent sees the source healthy again.
type reporter struct {
	out      chan<- model.Update
	lastErr  string // key of the problem last reported; "" when healthy
	last     *model.View
	lastPart *model.View
}

// fail reports a problem unless the same kind was reported last: a retry
// that fails the same way (403 on list, then on watch; connection refused
// on another URL) is not news.
func (r *reporter) fail(ctx context.Context, err error) {
	key := err.Error()
	var se *model.SourceError
	if errors.As(err, &se) && se.Reason != model.SourceInvalid {
		key = se.Reason + "\x00" + se.Permission
	}
	if key == r.lastErr {
		return
	}
	r.lastErr = key
	r.send(ctx, model.Update{Err: err})
}

// view sends a complete view (clearing a reported problem).
func (r *reporter) view(ctx context.Context, v model.View) {
	if r.lastErr == "" && r.last != nil && r.last.Equal(v) {
		return
	}
	r.lastErr, r.last, r.lastPart = "", &v, nil
	r.send(ctx, model.Update{View: &v})
}

// partial sends this node alone, while the other Nodes cannot be listed.
func (r *reporter) partial(ctx context.Context, self model.Node) {
	v := model.View{Self: self}
	if r.lastPart != nil && r.lastPart.Equal(v) {
		return
	}
	if r.lastPart == nil && r.last != nil && (model.View{Self: r.last.Self}).Equal(v) {
		return // the last complete view already carries this Self
	}
	r.lastPart = &v
	r.send(ctx, model.Update{View: &v, PeersUnknown: true})
}

func (r *reporter) send(ctx context.Context, u model.Update) {
	select {
	case r.out <- u:
	case <-ctx.Done():
	}
}
