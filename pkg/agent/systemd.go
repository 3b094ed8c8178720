package agent

import "github.com/coreos/go-systemd/v22/daemon"

// SystemdNotifier speaks sd_notify to systemd. Outside systemd
// (NOTIFY_SOCKET unset) every call is a no-op.
type SystemdNotifier struct{}

func (SystemdNotifier) Ready()             { _, _ = daemon.SdNotify(false, daemon.SdNotifyReady) }
func (SystemdNotifier) Status(line string) { _, _ = daemon.SdNotify(false, "STATUS="+line) }
func (SystemdNotifier) Watchdog()          { _, _ = daemon.SdNotify(false, daemon.SdNotifyWatchdog) }
func (SystemdNotifier) Stopping()          { _, _ = daemon.SdNotify(false, daemon.SdNotifyStopping) }
