package logging

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/journal"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

func streamOf(t *testing.T, f *os.File) string {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

func tempFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestIsJournalStream(t *testing.T) {
	f := tempFile(t, "stderr")
	other := tempFile(t, "other")
	tests := []struct {
		name    string
		environ []string
		want    bool
	}{
		{"unset", []string{"HOME=/root"}, false},
		{"matches stderr", []string{"JOURNAL_STREAM=" + streamOf(t, f)}, true},
		{"another file (inherited by a child whose stderr was redirected)", []string{"JOURNAL_STREAM=" + streamOf(t, other)}, false},
		{"malformed", []string{"JOURNAL_STREAM=garbage"}, false},
		{"empty", []string{"JOURNAL_STREAM="}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsJournalStream(tt.environ, f); got != tt.want {
				t.Errorf("IsJournalStream(%v) = %v, want %v", tt.environ, got, tt.want)
			}
		})
	}
}

func TestNewPicksHandler(t *testing.T) {
	f := tempFile(t, "stderr")
	match := []string{"JOURNAL_STREAM=" + streamOf(t, f)}
	tests := []struct {
		name        string
		w           any
		environ     []string
		journald    bool
		wantJournal bool
	}{
		{"terminal or file: text", f, nil, true, false},
		{"journal stream and socket: journal", f, match, true, true},
		{"journal stream but no socket: text", f, match, false, false},
		{"not a file: text", &bytes.Buffer{}, match, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			saved := journalAvailable
			journalAvailable = func() bool { return tt.journald }
			defer func() { journalAvailable = saved }()
			var l *slog.Logger
			switch w := tt.w.(type) {
			case *os.File:
				l = New(w, "info", tt.environ)
			case *bytes.Buffer:
				l = New(w, "info", tt.environ)
			}
			_, isJournal := l.Handler().(*journalHandler)
			if isJournal != tt.wantJournal {
				t.Errorf("journal handler = %v, want %v (handler %T)", isJournal, tt.wantJournal, l.Handler())
			}
		})
	}
}

func TestTextOutputHonoursLevel(t *testing.T) {
	var buf bytes.Buffer
	l := New(&buf, "warn", nil)
	l.Info("hidden", "peer", "node2")
	l.Warn("peer rejected", "peer", "node2", "cidr", "0.0.0.0/0")
	out := buf.String()
	if strings.Contains(out, "hidden") {
		t.Errorf("info line written at level warn:\n%s", out)
	}
	if !strings.Contains(out, `msg="peer rejected" peer=node2 cidr=0.0.0.0/0`) {
		t.Errorf("want a key=value text line, got:\n%s", out)
	}
}

// sent records what the journal handler would send.
type sent struct {
	mu      sync.Mutex
	entries []sentEntry
	err     error
}

type sentEntry struct {
	msg    string
	pri    journal.Priority
	fields map[string]string
}

func (s *sent) send(msg string, pri journal.Priority, fields map[string]string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entries = append(s.entries, sentEntry{msg, pri, maps.Clone(fields)})
	return s.err
}

func journalLogger(s *sent, level slog.Level, fallback *bytes.Buffer) *slog.Logger {
	h := newJournalHandler(level, fallback)
	h.send = s.send
	return slog.New(h)
}

func TestJournalEntries(t *testing.T) {
	tests := []struct {
		name       string
		log        func(l *slog.Logger)
		wantMsg    string
		wantPri    journal.Priority
		wantFields map[string]string
	}{
		{
			name:       "peer and cidr become fields",
			log:        func(l *slog.Logger) { l.Info("route added", "peer", "node2", "cidr", "10.244.2.0/24") },
			wantMsg:    "route added peer=node2 cidr=10.244.2.0/24",
			wantPri:    journal.PriInfo,
			wantFields: map[string]string{"PEER": "node2", "CIDR": "10.244.2.0/24"},
		},
		{
			name: "logger attributes and lists",
			log: func(l *slog.Logger) {
				l.With("reconciler", "cni").Warn("waiting", "podCIDRs", []string{"10.244.1.0/24", "fd00:10:244:1::/64"})
			},
			wantMsg:    "waiting reconciler=cni podCIDRs=10.244.1.0/24,fd00:10:244:1::/64",
			wantPri:    journal.PriWarning,
			wantFields: map[string]string{"RECONCILER": "cni", "PODCIDRS": "10.244.1.0/24,fd00:10:244:1::/64"},
		},
		{
			name: "errors by text, quoted in the message",
			log: func(l *slog.Logger) {
				l.Error("reconcile failed", "node", "node1", "err", errors.New("add route: file exists"))
			},
			wantMsg:    `reconcile failed node=node1 err="add route: file exists"`,
			wantPri:    journal.PriErr,
			wantFields: map[string]string{"NODE": "node1", "ERR": "add route: file exists"},
		},
		{
			name: "groups flatten to underscores",
			log: func(l *slog.Logger) {
				l.WithGroup("source").Info("synced", "name", "nodes file", slog.Group("age", "last", time.Second))
			},
			wantMsg:    `synced source.name="nodes file" source.age.last=1s`,
			wantPri:    journal.PriInfo,
			wantFields: map[string]string{"SOURCE_NAME": "nodes file", "SOURCE_AGE_LAST": "1s"},
		},
		{
			name:       "keys that would clash with journal fields are renamed",
			log:        func(l *slog.Logger) { l.Info("odd", "message", "x", "priority", "y", "_hidden", "z", "9lives", "w") },
			wantMsg:    "odd message=x priority=y _hidden=z 9lives=w",
			wantPri:    journal.PriInfo,
			wantFields: map[string]string{"ATTR_MESSAGE": "x", "ATTR_PRIORITY": "y", "X_HIDDEN": "z", "X9LIVES": "w"},
		},
		{
			name:       "debug maps to debug priority",
			log:        func(l *slog.Logger) { l.Debug("cache saved", "path", "/var/lib/kindnet/cluster-view.json") },
			wantMsg:    "cache saved path=/var/lib/kindnet/cluster-view.json",
			wantPri:    journal.PriDebug,
			wantFields: map[string]string{"PATH": "/var/lib/kindnet/cluster-view.json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &sent{}
			tt.log(journalLogger(s, slog.LevelDebug, &bytes.Buffer{}))
			if len(s.entries) != 1 {
				t.Fatalf("sent %d entries, want 1", len(s.entries))
			}
			e := s.entries[0]
			if e.msg != tt.wantMsg {
				t.Errorf("MESSAGE = %q, want %q", e.msg, tt.wantMsg)
			}
			if e.pri != tt.wantPri {
				t.Errorf("PRIORITY = %d, want %d", e.pri, tt.wantPri)
			}
			for k, v := range tt.wantFields {
				if e.fields[k] != v {
					t.Errorf("field %s = %q, want %q (all: %v)", k, e.fields[k], v, e.fields)
				}
			}
			if e.fields["SYSLOG_IDENTIFIER"] != Ident {
				t.Errorf("SYSLOG_IDENTIFIER = %q, want %q", e.fields["SYSLOG_IDENTIFIER"], Ident)
			}
			if !strings.HasSuffix(e.fields["CODE_FILE"], "logging_test.go") || e.fields["CODE_LINE"] == "" {
				t.Errorf("CODE_FILE/CODE_LINE = %q/%q, want this test file", e.fields["CODE_FILE"], e.fields["CODE_LINE"])
			}
			for k := range e.fields {
				if !validJournalField(k) {
					t.Errorf("field name %q would be dropped by journald", k)
				}
			}
		})
	}
}

// validJournalField is journald's own rule (journal_field_valid).
func validJournalField(k string) bool {
	if k == "" || len(k) > 64 || k[0] < 'A' || k[0] > 'Z' {
		return false
	}
	for _, r := range k {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

func TestJournalLevelFilter(t *testing.T) {
	s := &sent{}
	l := journalLogger(s, slog.LevelInfo, &bytes.Buffer{})
	l.Debug("noise")
	l.Info("kept")
	if len(s.entries) != 1 || !strings.HasPrefix(s.entries[0].msg, "kept") {
		t.Errorf("sent %+v, want only the info entry", s.entries)
	}
}

func TestJournalFallsBackToStderrWhenSendFails(t *testing.T) {
	s := &sent{err: errors.New("journal socket: connection refused")}
	var stderr bytes.Buffer
	journalLogger(s, slog.LevelInfo, &stderr).Info("route added", "peer", "node2")
	if got, want := stderr.String(), "INFO route added peer=node2\n"; got != want {
		t.Errorf("fallback wrote %q, want %q", got, want)
	}
}

// capture is a slog handler that keeps records.
type capture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *capture) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (c *capture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r)
	return nil
}
func (c *capture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *capture) WithGroup(string) slog.Handler      { return c }

func TestKlogGoesThroughTheSameLogger(t *testing.T) {
	c := &capture{}
	CaptureKlog(slog.New(c))
	defer klog.ClearLogger()

	klog.InfoS("watch started", "node", "node1")
	klog.V(4).InfoS("client-go chatter")
	klog.ErrorS(errors.New("403 forbidden"), "list nodes")
	klog.Flush()

	c.mu.Lock()
	defer c.mu.Unlock()
	var got []string
	for _, r := range c.recs {
		line := r.Level.String() + " " + r.Message
		r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
		got = append(got, line)
	}
	want := []string{"INFO watch started node=node1", "ERROR list nodes err=403 forbidden"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("klog records through slog:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
