package cli

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/internal/buildinfo"
	"github.com/kindnet-dev/kindnet/pkg/agent"
)

func newAgentCmd(e *env) *cobra.Command {
	cf := &configFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (what kindnet.service starts)",
		Long: `Run the node agent in the foreground.

At start, before any network access, it turns on IP forwarding, installs
routes to the other nodes' pod ranges, the masquerade rules and the CNI config
from the nodes file or from the cache of the last run, and tells systemd it is
ready (kubelet is ordered after it). Then it follows the cluster and keeps all
of it in step: on every change, every resyncInterval, and within a second when
someone deletes one of its routes.

Stopping the agent (SIGTERM, SIGINT) leaves routes, rules and the CNI config in
place, so pods keep working across restarts and upgrades. "kindnet cleanup"
removes them.

Configuration comes from ` + "`/etc/kindnet/config.yaml`" + `, KINDNET_* variables and the flags
below, in increasing precedence. A bad value exits with code 2 before anything
on the host is touched.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(e, cmd.Flags())
			if err != nil {
				return err
			}
			log := newLogger(e, cfg.LogLevel)
			log.Info("starting", "version", buildinfo.String(), "node", cfg.NodeName)
			a, err := agent.New(cfg, agent.Options{Version: buildinfo.Version, Log: log, Notifier: agent.SystemdNotifier{Log: log}})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
			defer stop()
			return a.Run(ctx)
		},
	}
	cf.bind(cmd.Flags())
	return cmd
}
