// Command kindnet-cluster runs a real Kubernetes cluster with kindnet on
// this machine (package test/cluster): up, down, status, kubectl; and the
// notify-sink that stands in for systemd's notify socket on each node.
//
// It is a test tool: not packaged. It never changes the machine's own
// network, mounts or sysctls.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/test/cluster"
)

func main() {
	root := &cobra.Command{
		Use:           "kindnet-cluster",
		Short:         "A real Kubernetes cluster with kindnet in namespaces on this machine",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(upCmd(), downCmd(), statusCmd(), kubectlCmd(), conformanceCmd(), notifySinkCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kindnet-cluster:", err)
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			os.Exit(ee.ExitCode())
		}
		os.Exit(1)
	}
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return errors.New("the cluster creates namespaces, cgroups and mounts: run it as root (sudo)")
	}
	return nil
}

// binaries finds the cached tools, and kindnet next to this program.
func binaries() (cluster.Binaries, error) {
	self, err := os.Executable()
	if err != nil {
		return cluster.Binaries{}, err
	}
	return cluster.FindBinaries(filepath.Join(filepath.Dir(self), "kindnet"), self)
}

func upCmd() *cobra.Command {
	var nodes int
	var keep bool
	cmd := &cobra.Command{Use: "up", Short: "Build a cluster and leave it running; prints its ID", Args: cobra.NoArgs}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "number of nodes")
	cmd.Flags().BoolVar(&keep, "keep-on-failure", false, "leave a cluster whose up failed in place, to look at it (down removes it)")
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := requireRoot(); err != nil {
			return err
		}
		bins, err := binaries()
		if err != nil {
			return err
		}
		repo, err := kubetest.RepoRoot()
		if err != nil {
			return err
		}
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
		c, err := cluster.Up(ctx, cluster.Options{Nodes: nodes, RepoRoot: repo, Bins: bins, Log: logf,
			BuildImages: func(dir string) ([]cluster.Image, error) { return cluster.BuildImages(ctx, repo, dir, logf) },
		}, keep)
		if err != nil {
			if c != nil && keep {
				return fmt.Errorf("%w\n(cluster %s kept: look at %s, remove it with: scripts/cluster.sh down %s)", err, c.ID, c.Dir, c.ID)
			}
			return err
		}
		cluster.PrintStatus(ctx, os.Stderr, c, bins)
		fmt.Println(c.ID)
		return nil
	}
	return cmd
}

func ids(args []string) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	return cluster.List(cluster.StateRoot())
}

func downCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down [ID...]",
		Short: "Remove clusters, every trace of them (all when no ID is given)",
		RunE: func(_ *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			list, err := ids(args)
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Println("no cluster under", cluster.StateRoot())
			}
			var errs []error
			for _, id := range list {
				c, err := cluster.Load(cluster.StateRoot(), id)
				if err == nil {
					err = c.Down()
				}
				if err != nil {
					errs = append(errs, fmt.Errorf("cluster %s: %w", id, err))
					continue
				}
				fmt.Println("removed cluster", id)
			}
			// The default state root is ours: gone once empty. One given
			// by KINDNET_CLUSTER_DIR is the user's and stays.
			if len(errs) == 0 && cluster.StateRoot() == cluster.DefaultStateRoot {
				_ = os.Remove(cluster.DefaultStateRoot) // fails, harmlessly, unless empty
			}
			return errors.Join(errs...)
		},
	}
}

func statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status [ID...]",
		Short: "Show clusters: processes, nodes, pods, kindnet status on each node, how to run kubectl",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			bins, err := binaries()
			if err != nil {
				return err
			}
			list, err := ids(args)
			if err != nil {
				return err
			}
			if len(list) == 0 {
				fmt.Println("no cluster under", cluster.StateRoot())
			}
			for _, id := range list {
				c, err := cluster.Load(cluster.StateRoot(), id)
				if err != nil {
					return err
				}
				cluster.PrintStatus(cmd.Context(), os.Stdout, c, bins)
			}
			return nil
		},
	}
}

func kubectlCmd() *cobra.Command {
	return &cobra.Command{
		Use:                "kubectl ID [kubectl args...]",
		Short:              "Run kubectl as the cluster admin (inside the control-plane namespace)",
		Args:               cobra.MinimumNArgs(1),
		DisableFlagParsing: true,
		RunE: func(_ *cobra.Command, args []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			bins, err := binaries()
			if err != nil {
				return err
			}
			c, err := cluster.Load(cluster.StateRoot(), args[0])
			if err != nil {
				return err
			}
			if c.CP.NS == "" {
				return fmt.Errorf("cluster %s has no control plane yet", c.ID)
			}
			argv := append([]string{"netns", "exec", c.CP.NS, bins.Kube("kubectl"), "--kubeconfig", c.AdminKubeconfig()}, args[1:]...)
			k := exec.Command("ip", argv...)
			k.Stdin, k.Stdout, k.Stderr = os.Stdin, os.Stdout, os.Stderr
			return k.Run()
		},
	}
}

func notifySinkCmd() *cobra.Command {
	var socket, out string
	cmd := &cobra.Command{Use: "notify-sink", Short: "Stand in for systemd's notify socket (used by up)", Args: cobra.NoArgs, Hidden: true}
	cmd.Flags().StringVar(&socket, "socket", "", "unixgram socket to listen on")
	cmd.Flags().StringVar(&out, "out", "", "file to append the messages to")
	cmd.RunE = func(*cobra.Command, []string) error {
		if socket == "" || out == "" {
			return errors.New("notify-sink needs --socket and --out")
		}
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		return cluster.NotifySink(ctx, socket, out)
	}
	return cmd
}
