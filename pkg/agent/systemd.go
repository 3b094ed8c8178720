package agent

import (
	"log/slog"
	"strings"

	"github.com/coreos/go-systemd/v22/daemon"
)

// SystemdNotifier speaks sd_notify to systemd (kindnet.service is
// Type=notify with WatchdogSec=). Outside systemd (NOTIFY_SOCKET unset)
// every call is a no-op.
type SystemdNotifier struct {
	// Log, when set, hears about messages systemd could not be sent: a
	// lost READY=1 leaves the unit "activating" until its start timeout.
	Log *slog.Logger
}

// stoppingStatus is the last STATUS= line: it tells the operator reading
// `systemctl status` during a stop or restart that the network stays up.
const stoppingStatus = "stopping; routes, rules and CNI config stay in place"

// Ready: the bootstrap state is applied; kubelet (ordered after us) may start.
func (n SystemdNotifier) Ready() { n.send(daemon.SdNotifyReady) }

// Status replaces the one-line status systemctl shows.
func (n SystemdNotifier) Status(line string) {
	// A newline would end the STATUS= assignment and start another one.
	n.send("STATUS=" + strings.ReplaceAll(line, "\n", " "))
}

// Watchdog is the keep-alive ping; only the agent's main loop sends it.
func (n SystemdNotifier) Watchdog() { n.send(daemon.SdNotifyWatchdog) }

// Stopping announces a clean stop, with a status line saying what stays.
func (n SystemdNotifier) Stopping() {
	n.send(daemon.SdNotifyStopping + "\nSTATUS=" + stoppingStatus)
}

func (n SystemdNotifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil && n.Log != nil {
		msg, _, _ := strings.Cut(state, "\n")
		n.Log.Warn("cannot notify systemd", "message", msg, "err", err)
	}
}
