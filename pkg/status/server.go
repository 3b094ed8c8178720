package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// maxWait bounds how long one /status request may wait for a change.
const maxWait = time.Minute

// Server answers GET /status on the agent's Unix socket with the stamped
// record as JSON. With ?since=GEN&wait=30s it waits (at most wait) until
// the record's generation passes GEN, so a watcher redraws on change.
type Server struct {
	Store *Store
	// Refresh, when set, completes a copy with facts read at request time
	// (IPAM usage changes with every pod, between reconciles).
	Refresh func(r *Record)
	Log     *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Handler is the HTTP handler of the socket.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", s.status)
	return mux
}

func (s *Server) status(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	if v := q.Get("since"); v != "" {
		since, err := strconv.ParseUint(v, 10, 64)
		wait, werr := time.ParseDuration(q.Get("wait"))
		if err != nil || werr != nil || wait < 0 {
			http.Error(w, "since must be a generation number and wait a duration such as 30s", http.StatusBadRequest)
			return
		}
		ctx, cancel := context.WithTimeout(req.Context(), min(wait, maxWait))
		s.Store.Wait(ctx, since)
		cancel()
	}
	rec := s.Store.Get()
	if s.Refresh != nil {
		s.Refresh(&rec)
	}
	rec.Agent.Running = true
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	rec.Stamp(now())
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(&rec)
}

// Serve answers on ln until ctx ends, then closes it (removing the socket).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	err := srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// ErrAgentRunning is returned by Listen when another agent answers on the
// socket.
var ErrAgentRunning = errors.New("another kindnet agent answers")

// Listener is the agent's status socket.
type Listener struct {
	*net.UnixListener
	path string
	ino  uint64
}

// tempSocket is where Listen binds before renaming the socket into place.
func tempSocket(path string, pid int) string { return fmt.Sprintf("%s.%d.tmp", path, pid) }

// IsTempSocket reports whether name (a base name in the socket's
// directory) is a socket Listen bound and a killed agent left before
// renaming it to path; `kindnet cleanup` removes them.
func IsTempSocket(path, name string) bool {
	var pid int
	n, err := fmt.Sscanf(name, filepath.Base(path)+".%d.tmp", &pid)
	return err == nil && n == 1 && name == filepath.Base(tempSocket(path, pid))
}

// Listen creates the status socket at path with mode 0600 (only root may
// read the record: it names every node and address of the cluster). It is
// bound under a temporary name, restricted, then renamed into place, so it
// is never reachable with looser permissions. A stale socket left by a
// crashed agent is replaced; a socket another live agent answers on is not.
func Listen(path string) (*Listener, error) {
	// The run dir holds the socket and the IPAM store: root's business only.
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create directory of status socket %s: %w", path, err)
	}
	if err := clearStale(path); err != nil {
		return nil, err
	}
	tmp := tempSocket(path, os.Getpid())
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on status socket %s: %w", tmp, err)
	}
	ln.SetUnlinkOnClose(false) // Close removes the final name, if still ours
	fail := func(err error) (*Listener, error) {
		ln.Close()
		_ = os.Remove(tmp)
		return nil, err
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return fail(fmt.Errorf("restrict status socket %s: %w", tmp, err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("put status socket in place at %s: %w", path, err))
	}
	l := &Listener{UnixListener: ln, path: path}
	if st, err := os.Stat(path); err == nil {
		l.ino = inode(st)
	}
	return l, nil
}

// Close stops listening and removes the socket unless another agent has
// replaced it meanwhile.
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	if st, serr := os.Stat(l.path); serr == nil && inode(st) == l.ino {
		_ = os.Remove(l.path)
	}
	return err
}

func inode(st fs.FileInfo) uint64 {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return s.Ino
	}
	return 0
}

// clearStale removes a socket nobody answers on; anything else at the path
// is an error (another agent, or a file that is not ours to delete).
func clearStale(path string) error {
	st, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check status socket %s: %w", path, err)
	}
	if st.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("status socket path %s exists and is not a socket: remove it or set runDir", path)
	}
	if c, err := net.DialTimeout("unix", path, 500*time.Millisecond); err == nil {
		c.Close()
		return fmt.Errorf("%w on %s: stop it first (two agents would fight over routes)", ErrAgentRunning, path)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale status socket %s: %w", path, err)
	}
	return nil
}

// ErrNoAgent is returned by Fetch when no agent answers. A socket the
// caller may not open (not root) is a different error: fs.ErrPermission.
var ErrNoAgent = errors.New("agent not running")

// Fetch asks the agent for its record. With since > 0 it waits up to wait
// for a record newer than generation since. The whole request is bounded
// by ctx; a missing socket or a refused connection is ErrNoAgent.
func Fetch(ctx context.Context, path string, since uint64, wait time.Duration) (*Record, error) {
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		DisableKeepAlives: true,
	}}
	url := "http://kindnet/status"
	if since > 0 {
		url += fmt.Sprintf("?since=%d&wait=%s", since, wait)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		var se *os.SyscallError
		switch {
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("ask agent on %s: %w", path, err)
		case errors.Is(err, fs.ErrNotExist):
			return nil, fmt.Errorf("%w: no socket at %s", ErrNoAgent, path)
		case errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%w: nobody listens on %s", ErrNoAgent, path)
		case errors.Is(err, context.DeadlineExceeded):
			return nil, fmt.Errorf("%w: no answer on %s in time", ErrNoAgent, path)
		case errors.As(err, &se):
			return nil, fmt.Errorf("%w: %s: %v", ErrNoAgent, path, se)
		}
		return nil, fmt.Errorf("ask agent on %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("agent on %s answered %s", path, resp.Status)
	}
	rec, err := DecodeRecord(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the agent's record from %s: %w", path, err)
	}
	return rec, nil
}

// maxRecordSize bounds what a client reads from the socket: a record of
// 10,000 peers is a few MiB; anything far larger is not a record.
const maxRecordSize = 64 << 20

// DecodeRecord reads one record as the agent serves it.
func DecodeRecord(r io.Reader) (*Record, error) {
	var rec Record
	dec := json.NewDecoder(io.LimitReader(r, maxRecordSize))
	if err := dec.Decode(&rec); err != nil {
		return nil, err
	}
	return &rec, nil
}
