package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/internal/critest"
)

// fakeCRICmd serves a fake container runtime (CRI RuntimeStatus and
// Version) on a Unix socket until SIGTERM or SIGINT, so a test can check
// what an agent under its real systemd unit makes of the runtime's answer.
func fakeCRICmd() *cobra.Command {
	var socket, reason, message string
	var ready bool
	cmd := &cobra.Command{
		Use:   "fake-cri",
		Short: "Serve a fake CRI runtime reporting the NetworkReady condition given",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			f := &critest.Runtime{}
			f.SetNetwork(ready, reason, message)
			stop, err := critest.Listen(socket, f)
			if err != nil {
				return fmt.Errorf("serve a fake CRI runtime on %s: %w", socket, err)
			}
			defer stop()
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
			<-sig
			return nil
		},
	}
	cmd.Flags().StringVar(&socket, "socket", "", "path of the Unix socket to serve on (required)")
	cmd.Flags().BoolVar(&ready, "network-ready", false, "status of the NetworkReady condition")
	cmd.Flags().StringVar(&reason, "reason", "NetworkPluginNotReady", "reason of the NetworkReady condition")
	cmd.Flags().StringVar(&message, "message", "Network plugin returns error: cni plugin not initialized", "message of the NetworkReady condition")
	_ = cmd.MarkFlagRequired("socket")
	return cmd
}
