package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/criruntime"
	"github.com/kindnet-dev/kindnet/pkg/inspect"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// Exit codes of `kindnet status` beyond the verdict's 0, 1 and 2.
const (
	ExitNoPermission = 77 // EX_NOPERM: the status socket is root's only
	ExitStatusConfig = 78 // EX_CONFIG: the config to find the agent is invalid
)

// watchWait is how long one --watch request waits for a change before the
// view is redrawn anyway (relative times move on).
const watchWait = 30 * time.Second

type statusCmd struct {
	e       *env
	cfg     *config.Loaded
	output  string
	watch   bool
	quiet   bool
	timeout time.Duration
}

func newStatusCmd(e *env) *cobra.Command {
	cf := &configFlags{}
	s := &statusCmd{e: e}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Tell whether this node's pod network is healthy, and why not",
		Long: `Ask the local agent (over its socket, runDir/kindnet.sock) for its live
record and print a verdict and the facts behind it:

  healthy                     everything is in place
  degraded: <reasons>         pods work, but something needs attention: a
                              peer rejected, off-link or in conflict, the
                              source (API server, nodes file) unreachable or
                              refusing, a stale CNI config, a failing
                              reconciler
  down: <reasons>             the agent is not running, or there is no CNI
                              config (new pods cannot start)

then lines for the node, the source, the CNI config, the masquerade table,
IPAM usage and routes, and a table of peers with their state and, for those
not routed, the reason.

When the agent does not answer within --timeout (no socket, nobody
listening, no reply), status inspects the host itself: kindnet's routes
(proto kindnet), its nftables tables, the CNI config and the cache of the
last cluster view; it prints what it finds and says the agent is down.

Reading the socket needs root (it is mode 0600).

Output: the default is for people (colours only on a terminal, never when
NO_COLOR is set); -o wide adds every address, counters and the reconcilers;
-o json prints the record in the stable schema documented in docs/status.md
(field schemaVersion). --watch redraws whenever the record changes, until
interrupted. -q prints nothing: only the exit code tells.

Exit codes:
  0   healthy
  1   degraded
  2   down
  64  usage error (unknown flag, bad --output, -q with -o or --watch)
  77  permission denied on the status socket (run as root)
  78  the configuration (to find the socket and paths) is invalid

In scripts: kindnet status -q && echo "pod network ready"`,
		Example: `  kindnet status
  kindnet status -o wide
  kindnet status -o json | jq '.peers[] | select(.state != "routed")'
  kindnet status --watch
  kindnet status -q || journalctl -u kindnet -n 50`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := s.checkFlags(); err != nil {
				return err
			}
			cfg, err := cf.load(e, cmd.Flags())
			if err != nil {
				return &ExitError{Code: ExitStatusConfig, Err: err}
			}
			s.cfg = cfg
			if s.watch {
				ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
				defer stop()
				return s.runWatch(ctx)
			}
			rec, err := s.get(cmd.Context(), 0, 0)
			if err != nil {
				return err
			}
			if err := s.print(rec, nil); err != nil {
				return err
			}
			return verdictExit(rec)
		},
	}
	cf.bind(cmd.Flags())
	fs := cmd.Flags()
	fs.StringVarP(&s.output, "output", "o", "", "output format: json or wide (default: compact human view)")
	fs.BoolVarP(&s.watch, "watch", "w", false, "redraw whenever the record changes, until interrupted")
	fs.BoolVarP(&s.quiet, "quiet", "q", false, "print nothing; the exit code tells (0 healthy, 1 degraded, 2 down)")
	fs.DurationVar(&s.timeout, "timeout", time.Second, "how long to wait for the agent's answer before inspecting the host")
	return cmd
}

func (s *statusCmd) checkFlags() error {
	switch s.output {
	case "", "json", "wide":
	default:
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--output %q: expected json or wide", s.output)}
	}
	if s.quiet && (s.watch || s.output != "") {
		return &ExitError{Code: ExitUsage, Err: errors.New("-q prints nothing: it cannot be combined with --output or --watch")}
	}
	if s.timeout <= 0 {
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("--timeout %s: expected a positive duration such as 1s", s.timeout)}
	}
	return nil
}

// get asks the agent for its record (waiting up to wait for one newer than
// generation since); when it does not answer, it inspects the host.
func (s *statusCmd) get(ctx context.Context, since uint64, wait time.Duration) (*status.Record, error) {
	fctx, cancel := context.WithTimeout(ctx, s.timeout+wait)
	defer cancel()
	rec, err := status.Fetch(fctx, s.cfg.SocketPath(), since, wait)
	switch {
	case err == nil:
		rec.Agent.Running = true
		rec.Stamp(time.Now())
		return rec, nil
	case errors.Is(err, fs.ErrPermission):
		return nil, &ExitError{Code: ExitNoPermission, Err: fmt.Errorf("%w: the status socket is readable by root only; run kindnet status as root", err)}
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	why := strings.TrimPrefix(err.Error(), status.ErrNoAgent.Error()+": ")
	h := inspect.Host(s.cfg, why)
	// The runtime is asked here too: whether it still reports the network
	// ready tells how bad the agent being down is.
	endpoints, auto := s.cfg.CRIEndpoints()
	h.Runtime.Observe(criruntime.Checker{Endpoints: endpoints, Auto: auto, Timeout: s.timeout}.Check(ctx))
	h.Stamp(time.Now())
	return &h, nil
}

// print writes the record in the chosen format. With prev (watch mode) it
// writes nothing when the output would not change since the last frame.
func (s *statusCmd) print(rec *status.Record, prev *string) error {
	if s.quiet {
		return nil
	}
	var b bytes.Buffer
	var key string
	if s.output == "json" {
		out, err := json.MarshalIndent(rec, "", "  ")
		if err != nil {
			return err
		}
		b.Write(append(out, '\n'))
		key = stableJSON(*rec)
	} else {
		opts := status.RenderOptions{Color: s.colour(), Wide: s.output == "wide"}
		if err := status.Render(&b, rec, opts); err != nil {
			return err
		}
		key = b.String()
	}
	if prev != nil {
		if key == *prev {
			return nil
		}
		if *prev != "" || isTerminal(s.e.stdout) {
			s.separate()
		}
		*prev = key
	}
	_, err := s.e.stdout.Write(b.Bytes())
	return err
}

// separate starts a new frame of --watch: the screen is cleared on a
// terminal; elsewhere frames are separated by a blank line.
func (s *statusCmd) separate() {
	if isTerminal(s.e.stdout) {
		io.WriteString(s.e.stdout, "\x1b[H\x1b[2J")
		return
	}
	io.WriteString(s.e.stdout, "\n")
}

// stableJSON is the record without the fields that change on every read,
// so --watch -o json prints only real changes.
func stableJSON(r status.Record) string {
	r.Now, r.UptimeSeconds, r.Agent.LastHeartbeat = time.Time{}, 0, time.Time{}
	r.Runtime.Checked = time.Time{} // asked again at every read
	b, _ := json.Marshal(r)
	return string(b)
}

func (s *statusCmd) runWatch(ctx context.Context) error {
	var prev string
	var gen uint64
	var rec *status.Record
	for {
		r, err := s.get(ctx, gen, watchWait)
		if ctx.Err() != nil {
			break // interrupted while waiting: the last frame stands
		}
		if err != nil {
			return err
		}
		rec = r
		if err := s.print(rec, &prev); err != nil {
			return err
		}
		if rec.Agent.Running {
			gen = rec.Generation
			continue
		}
		// No agent: look again every two seconds.
		gen = 0
		select {
		case <-ctx.Done():
		case <-time.After(2 * time.Second):
		}
		if ctx.Err() != nil {
			break
		}
	}
	if rec == nil {
		return nil
	}
	return verdictExit(rec)
}

// verdictExit turns the verdict into the exit code, silently.
func verdictExit(rec *status.Record) error {
	if code := rec.Verdict.ExitCode(); code != ExitOK {
		return &ExitError{Code: code}
	}
	return nil
}

// colour is on only for a terminal, and never with NO_COLOR set
// (https://no-color.org) or TERM=dumb.
func (s *statusCmd) colour() bool {
	if lookupEnv(s.e.environ, "NO_COLOR") != "" || lookupEnv(s.e.environ, "TERM") == "dumb" {
		return false
	}
	return isTerminal(s.e.stdout)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
