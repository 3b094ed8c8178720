package agent

import (
	"slices"

	"github.com/kindnet-dev/kindnet/pkg/status"
)

// checkFiles looks, on every reconcile, whether a user other than root can
// change a file the agent trusts (config, nodes file, kubeconfig): whoever
// can write the nodes file can route this node's traffic. Each such file
// is a warning in the log (once per change, not on every run) and in
// status, which it degrades. Nothing is refused: the agent runs as
// configured, loudly.
func (a *Agent) checkFiles() {
	now := a.cfg.FileWarnings()
	if slices.Equal(now, a.fileWarnings) {
		return
	}
	for _, w := range now {
		if !slices.Contains(a.fileWarnings, w) {
			a.log.Warn("INSECURE: a file kindnet trusts can be changed by a user other than root", "problem", w)
		}
	}
	if len(now) == 0 {
		a.log.Info("the files kindnet trusts can be changed by root only again")
	}
	a.fileWarnings = now
	a.store.Update(func(r *status.Record) { r.Warnings = slices.Clone(now) })
}
