package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/coreos/go-systemd/v22/journal"
)

// journalAvailable is a variable so tests can pretend journald is there.
var journalAvailable = journal.Enabled

// sendFunc delivers one entry; journal.Send in production.
type sendFunc func(msg string, pri journal.Priority, fields map[string]string) error

// journalHandler writes slog records as native journal entries.
type journalHandler struct {
	level slog.Leveler
	send  sendFunc
	// fallback receives the entry as a text line when the journal socket
	// refuses it (journald restarting), so nothing is lost: it is the
	// service's stderr, which journald reads too.
	fallback io.Writer
	mu       *sync.Mutex // guards fallback

	prefix string      // group prefix for keys ("" or "group.")
	attrs  []slog.Attr // from WithAttrs, keys already prefixed
}

func newJournalHandler(level slog.Leveler, fallback io.Writer) *journalHandler {
	return &journalHandler{level: level, send: journal.Send, fallback: fallback, mu: &sync.Mutex{}}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level.Level()
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), prefixed(h.prefix, as)...)
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.prefix = h.prefix + name + "."
	return &c
}

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, prefixed(h.prefix, []slog.Attr{a})...)
		return true
	})
	msg, fields := entry(r, attrs)
	if err := h.send(msg, priority(r.Level), fields); err != nil {
		h.mu.Lock()
		defer h.mu.Unlock()
		_, werr := fmt.Fprintf(h.fallback, "%s %s\n", r.Level, msg)
		return werr
	}
	return nil
}

// prefixed flattens groups into dotted keys: group "a" with key "b" is "a.b".
func prefixed(prefix string, as []slog.Attr) []slog.Attr {
	var out []slog.Attr
	for _, a := range as {
		v := a.Value.Resolve()
		if v.Kind() == slog.KindGroup {
			p := prefix
			if a.Key != "" { // an empty group key inlines its members
				p += a.Key + "."
			}
			out = append(out, prefixed(p, v.Group())...)
			continue
		}
		if a.Key == "" && v.Any() == nil {
			continue // slog's rule: ignore empty attributes
		}
		out = append(out, slog.Attr{Key: prefix + a.Key, Value: v})
	}
	return out
}

// entry renders a record as the journal's MESSAGE and fields. MESSAGE keeps
// the key=value pairs too, because `journalctl` shows only MESSAGE by
// default; the fields are what matches (PEER=node2) select on.
func entry(r slog.Record, attrs []slog.Attr) (string, map[string]string) {
	var msg strings.Builder
	msg.WriteString(r.Message)
	fields := map[string]string{"SYSLOG_IDENTIFIER": Ident}
	for _, a := range attrs {
		val := valueText(a.Value)
		fmt.Fprintf(&msg, " %s=%s", a.Key, quoteIfNeeded(val))
		fields[fieldName(a.Key)] = val
	}
	if r.PC != 0 {
		f, _ := runtime.CallersFrames([]uintptr{r.PC}).Next()
		if f.File != "" {
			fields["CODE_FILE"] = f.File
			fields["CODE_LINE"] = strconv.Itoa(f.Line)
			fields["CODE_FUNC"] = f.Function
		}
	}
	return msg.String(), fields
}

// reserved are journal fields the handler sets itself; an attribute with
// one of these names is kept under ATTR_<name> instead of overwriting it.
var reserved = map[string]bool{
	"MESSAGE": true, "PRIORITY": true, "SYSLOG_IDENTIFIER": true,
	"CODE_FILE": true, "CODE_LINE": true, "CODE_FUNC": true, "MESSAGE_ID": true,
}

// fieldName turns a slog key into a journal field name: upper case letters,
// digits and '_', starting with a letter, at most 64 bytes (journald drops
// entries with invalid names). "podCIDRs" → PODCIDRS, "a.b" → A_B.
func fieldName(key string) string {
	var b strings.Builder
	for _, r := range strings.ToUpper(key) {
		switch {
		case r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	name := b.String()
	if name == "" || name[0] < 'A' || name[0] > 'Z' {
		name = "X" + name
	}
	if reserved[name] {
		name = "ATTR_" + name
	}
	if len(name) > 64 {
		name = name[:64]
	}
	return name
}

// valueText renders a value the way an operator would type it in a match:
// strings as they are, lists comma-separated, errors by their text.
func valueText(v slog.Value) string {
	switch v.Kind() {
	case slog.KindString:
		return v.String()
	case slog.KindTime:
		return v.Time().Format(time.RFC3339Nano)
	case slog.KindDuration:
		return v.Duration().String()
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return x.Error()
		case fmt.Stringer:
			return x.String()
		case []string:
			return strings.Join(x, ",")
		}
	}
	return v.String()
}

// quoteIfNeeded quotes values that would not read back as one token,
// like slog's text handler does.
func quoteIfNeeded(s string) string {
	if s == "" || !utf8.ValidString(s) || strings.ContainsAny(s, " =\"\t\n\r") {
		return strconv.Quote(s)
	}
	return s
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	default:
		return journal.PriDebug
	}
}
