package bench

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/cache"
	"github.com/kindnet-dev/kindnet/pkg/model"
	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// synthHost is one node of a synthetic cluster: a namespace of a bare
// lab with one link on the synthetic node network, its own directory and
// agent config, and an agent started on demand.
type synthHost struct {
	l   *lab.Lab
	n   *lab.Node
	dir string
	nsh netns.NsHandle
	nl  *netlink.Handle
}

// newSynthHost builds the namespace; nodesFile and resync go into the
// agent config (resync "" keeps the default).
func newSynthHost(l *lab.Lab, suffix, cniBinDir, nodesFile, resync string) (h *synthHost, err error) {
	ns, err := l.AddNS(suffix)
	if err != nil {
		return nil, err
	}
	h = &synthHost{l: l, dir: filepath.Join(l.Dir, suffix), nsh: -1}
	h.n = &lab.Node{Name: synthSelfName, NS: ns, Dir: h.dir}
	l.Nodes = append(l.Nodes, h.n)
	defer func() {
		if err != nil {
			h.close()
			h = nil
		}
	}()
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		return h, err
	}
	self4, self6 := synthSelfAddrs()
	// A veth pair gives the namespace a link with carrier (this kernel
	// may have no dummy driver); both ends stay inside the namespace. No
	// IPv6 link-local addresses: their duplicate address detection ends a
	// second or two later with address events, and every address event
	// makes the agent reconcile, which would land inside the measurements.
	for _, args := range [][]string{
		{"-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0p"},
		{"-n", ns, "link", "set", "eth0", "addrgenmode", "none"},
		{"-n", ns, "link", "set", "eth0p", "addrgenmode", "none"},
		{"-n", ns, "link", "set", "eth0p", "up"},
		{"-n", ns, "link", "set", "eth0", "up"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(self4, synthNet4.Bits()).String(), "dev", "eth0"},
		{"-n", ns, "addr", "add", netip.PrefixFrom(self6, synthNet6.Bits()).String(), "dev", "eth0", "nodad"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			return h, fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if err := os.WriteFile(h.n.ConfigPath(), []byte(synthAgentConfig(h.dir, nodesFile, cniBinDir, resync)), 0o600); err != nil {
		return h, err
	}
	if h.nsh, err = netns.GetFromName(ns); err != nil {
		return h, fmt.Errorf("open netns %s: %w", ns, err)
	}
	if h.nl, err = netlink.NewHandleAt(h.nsh); err != nil {
		return h, fmt.Errorf("netlink in %s: %w", ns, err)
	}
	return h, l.Save()
}

// cachePath and conflistPath are where the agent reads its cache and
// writes its CNI config (as synthAgentConfig sets them).
func (h *synthHost) cachePath() string    { return filepath.Join(h.dir, "state", "cluster-view.json") }
func (h *synthHost) conflistPath() string { return filepath.Join(h.dir, "cni", "10-kindnet.conflist") }

// writeCache writes the cache exactly as the agent does, with the agent's
// own code.
func (h *synthHost) writeCache(v model.View) error {
	_, err := (&cache.File{Path: h.cachePath(), Node: synthSelfName}).Save(v)
	return err
}

// start starts the agent with extra environment variables.
func (h *synthHost) start(env ...string) error {
	h.n.AgentEnv = env
	if err := h.l.StartAgent(h.n); err != nil {
		return err
	}
	return h.l.Save()
}

// pid is the running agent's PID, 0 when none.
func (h *synthHost) pid() int { return h.n.AgentPID }

// alive reports whether the agent still runs.
func (h *synthHost) alive() bool {
	pid := h.n.AgentPID
	if pid == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// countRoutes counts the kindnet routes in the namespace, both families.
func (h *synthHost) countRoutes() (int, error) {
	rs, err := h.nl.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Protocol: routes.Protocol, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return 0, fmt.Errorf("list routes in %s: %w", h.n.NS, err)
	}
	n := 0
	for _, r := range rs {
		if r.Protocol == routes.Protocol {
			n++
		}
	}
	return n, nil
}

// close stops the agent (SIGTERM, by PID) and removes the namespace and
// the directory.
func (h *synthHost) close() error {
	err := h.l.StopAgent(h.n, syscall.SIGTERM)
	if h.nl != nil {
		h.nl.Close()
	}
	if h.nsh >= 0 {
		h.nsh.Close()
	}
	if out, derr := exec.Command("ip", "netns", "del", h.n.NS).CombinedOutput(); derr != nil && err == nil {
		err = fmt.Errorf("ip netns del %s: %v: %s", h.n.NS, derr, out)
	}
	h.l.Nodes = slices.DeleteFunc(h.l.Nodes, func(n *lab.Node) bool { return n == h.n })
	_ = os.RemoveAll(h.dir)
	_ = h.l.Save()
	return err
}

// routeEvent is one kindnet route notification seen in the namespace.
type routeEvent struct {
	At  time.Time
	Del bool
	Dst netip.Prefix
}

// routeWatch records every kindnet route added, replaced or deleted in a
// namespace, with the time it was read.
type routeWatch struct {
	mu     sync.Mutex
	events []routeEvent
	err    error // the first subscription error: events may be missing
	stop   chan struct{}
	done   chan struct{}
}

func (h *synthHost) watchRoutes() (*routeWatch, error) {
	w := &routeWatch{stop: make(chan struct{}), done: make(chan struct{})}
	ch := make(chan netlink.RouteUpdate, 8192)
	opts := netlink.RouteSubscribeOptions{Namespace: &h.nsh, ReceiveBufferSize: 8 << 20,
		ErrorCallback: func(err error) {
			w.mu.Lock()
			if w.err == nil {
				w.err = err
			}
			w.mu.Unlock()
		}}
	if err := netlink.RouteSubscribeWithOptions(ch, w.stop, opts); err != nil {
		return nil, fmt.Errorf("subscribe to routes in %s: %w", h.n.NS, err)
	}
	go func() {
		defer close(w.done)
		for u := range ch {
			if u.Protocol != routes.Protocol || u.Dst == nil {
				continue
			}
			a, _ := netip.AddrFromSlice(u.Dst.IP)
			ones, _ := u.Dst.Mask.Size()
			ev := routeEvent{At: time.Now(), Del: u.Type == unix.RTM_DELROUTE, Dst: netip.PrefixFrom(a.Unmap(), ones)}
			w.mu.Lock()
			w.events = append(w.events, ev)
			w.mu.Unlock()
		}
	}()
	return w, nil
}

// since returns the events read at or after t.
func (w *routeWatch) since(t time.Time) []routeEvent {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []routeEvent
	for _, e := range w.events {
		if !e.At.Before(t) {
			out = append(out, e)
		}
	}
	return out
}

// waitFor waits until every destination in want has an event of the
// given kind read after t; it returns when the last of them was read.
func (w *routeWatch) waitFor(ctx context.Context, t time.Time, want []netip.Prefix, del bool, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		seen := map[netip.Prefix]time.Time{}
		for _, e := range w.since(t) {
			if e.Del == del {
				if _, ok := seen[e.Dst]; !ok {
					seen[e.Dst] = e.At
				}
			}
		}
		var last time.Time
		missing := 0
		for _, d := range want {
			at, ok := seen[d]
			if !ok {
				missing++
			} else if at.After(last) {
				last = at
			}
		}
		if missing == 0 {
			return last, nil
		}
		if time.Now().After(deadline) {
			w.mu.Lock()
			serr := w.err
			w.mu.Unlock()
			if serr != nil {
				return time.Time{}, fmt.Errorf("%d of %d expected route events missing after %s (route subscription: %v)", missing, len(want), timeout, serr)
			}
			return time.Time{}, fmt.Errorf("%d of %d expected route events missing after %s", missing, len(want), timeout)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

func (w *routeWatch) close() {
	close(w.stop)
	select {
	case <-w.done:
	case <-time.After(2 * time.Second):
	}
}

// openWatch timestamps every open of one file name in a directory
// (inotify IN_OPEN): it shows when the agent's poll read the nodes file.
type openWatch struct {
	f    *os.File
	name string
	mu   sync.Mutex
	at   []time.Time
	done chan struct{}
}

func watchOpens(dir, name string) (*openWatch, error) {
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("inotify: %w", err)
	}
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_OPEN); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("inotify watch %s: %w", dir, err)
	}
	w := &openWatch{f: os.NewFile(uintptr(fd), "inotify"), name: name, done: make(chan struct{})}
	go w.read()
	return w, nil
}

func (w *openWatch) read() {
	defer close(w.done)
	buf := make([]byte, 64*1024)
	for {
		n, err := w.f.Read(buf)
		if err != nil {
			return
		}
		at := time.Now()
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off])) // the header as the kernel laid it out
			nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(ev.Len)]
			if strings.TrimRight(string(nameBytes), "\x00") == w.name && ev.Mask&unix.IN_OPEN != 0 {
				w.mu.Lock()
				w.at = append(w.at, at)
				w.mu.Unlock()
			}
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// firstAfter returns the first open at or after t.
func (w *openWatch) firstAfter(t time.Time) (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.at {
		if !a.Before(t) {
			return a, true
		}
	}
	return time.Time{}, false
}

func (w *openWatch) close() {
	w.f.Close()
	<-w.done
}

// countLogLines counts the lines of the agent log after offset for which
// match holds.
func countLogLines(path string, offset int64, match func(line string) bool) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := f.Seek(offset, 0); err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if match(sc.Text()) {
			n++
		}
	}
	return n, sc.Err()
}

// isRouteChange matches the agent's debug line of one route added,
// replaced or deleted (routes.Result.Changes, logged one per line at debug
// level: the single-change runs start the agent with KINDNET_LOG_LEVEL=debug).
func isRouteChange(line string) bool {
	if !strings.Contains(line, " reconciler=routes") {
		return false
	}
	for _, verb := range []string{`msg="add `, `msg="replace `, `msg="delete `} {
		if strings.Contains(line, verb) {
			return true
		}
	}
	return false
}

// isReconcile matches the agent's line closing one reconcile (info when
// it changed something, debug otherwise).
func isReconcile(line string) bool { return strings.Contains(line, " msg=reconciled ") }

// reconcileWhys lists why each reconcile after offset ran, in order.
func reconcileWhys(path string, offset int64) []string {
	var out []string
	_, _ = countLogLines(path, offset, func(line string) bool {
		if !isReconcile(line) {
			return false
		}
		why := "?"
		if _, after, ok := strings.Cut(line, " why="); ok {
			if uq, err := strconv.QuotedPrefix(after); err == nil {
				why, _ = strconv.Unquote(uq)
			} else {
				why, _, _ = strings.Cut(after, " ")
			}
		}
		out = append(out, why)
		return true
	})
	return out
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}
