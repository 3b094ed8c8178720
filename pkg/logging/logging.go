// Package logging builds kindnet's process logger (log/slog). Under
// journald — stderr is the journal stream systemd gave the service
// (JOURNAL_STREAM names its device and inode) — every entry goes to the
// journal through its native protocol, with each key/value as a journal
// field (peer → PEER, cidr → CIDR, …), so `journalctl -u kindnet PEER=node2`
// finds one peer's story. Anywhere else it writes key=value text on stderr.
// client-go logs through klog; CaptureKlog sends that through the same
// logger, so one process has one log format.
//
// It owns the process's log output and nothing else: it never touches the
// network or any file besides the log stream it is given.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Ident is the SYSLOG_IDENTIFIER of kindnet's journal entries, so
// `journalctl -t kindnet` works as well as `journalctl -u kindnet`.
const Ident = "kindnet"

// New returns the logger for a process whose stderr is w. level is one of
// debug, info, warn, error (anything else means info: the config validator
// has already rejected bad values). environ is the process environment,
// read for JOURNAL_STREAM.
func New(w io.Writer, level string, environ []string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	if f, ok := w.(*os.File); ok && IsJournalStream(environ, f) && journalAvailable() {
		return slog.New(newJournalHandler(l, w))
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l}))
}

// IsJournalStream reports whether f is the stream systemd connected to the
// journal for this service: JOURNAL_STREAM is "<device>:<inode>" of that
// stream (systemd.exec(5)). Comparing with f's own device and inode tells a
// service's stderr apart from a terminal or a redirect inherited by a child
// that happens to carry the variable.
func IsJournalStream(environ []string, f *os.File) bool {
	val := ""
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == "JOURNAL_STREAM" {
			val = v
		}
	}
	if val == "" {
		return false
	}
	var dev, ino uint64
	if _, err := fmt.Sscanf(val, "%d:%d", &dev, &ino); err != nil {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && st.Ino == ino
}

// CaptureKlog makes klog (client-go's logger) write through l. klog's
// verbosity V(n) becomes slog level -n, so client-go's chatty V(2+) lines
// show only at logLevel debug.
func CaptureKlog(l *slog.Logger) {
	klog.SetSlogLogger(l)
}
