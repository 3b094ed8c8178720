// Command kindnet-lab runs the network-namespace lab: a kindnet cluster of
// node namespaces on one machine (up, down, status, demo), and the small
// tools the lab needs inside its namespaces: a CNI driver built on libcni
// (cni add|check|del, as a container runtime calls plugins), a TCP
// "whoami" server and client to see which source address arrives, and a
// fake CRI runtime (fake-cri) reporting a NetworkReady condition.
//
// It is a test tool: it is not packaged and never touches the machine's own
// network namespace.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/test/lab"
)

func main() {
	root := &cobra.Command{
		Use:           "kindnet-lab",
		Short:         "A kindnet cluster in network namespaces, for demos and tests",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(upCmd(), downCmd(), statusCmd(), demoCmd(), cniCmd(), whoamiCmd(), fetchCmd(), fakeCRICmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kindnet-lab:", err)
		os.Exit(1)
	}
}

// labFlags are the options of commands that build a lab.
func labFlags(cmd *cobra.Command) *lab.Options {
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	o := &lab.Options{LabTool: self}
	cmd.Flags().IntVar(&o.Nodes, "nodes", 3, "number of nodes")
	cmd.Flags().IntVar(&o.PodsPerNode, "pods", 2, "pods per node")
	cmd.Flags().StringVar(&o.Kindnet, "kindnet", filepath.Join(bin, "kindnet"), "kindnet binary")
	cmd.Flags().StringVar(&o.CNIPlugin, "plugin", "ptp", "pod wiring: ptp or bridge")
	cmd.Flags().StringVar(&o.CNIBinDir, "cni-bin-dir", "", "directory holding the CNI plugin the conflist names (an executable \"kindnet\"); default: cni/ next to --kindnet when make build wrote the lean plugin there, else --kindnet's directory")
	o.Log = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	return o
}

func requireRoot() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the lab creates network namespaces: run it as root (sudo)")
	}
	return nil
}

func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func upCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "up", Short: "Build a lab and leave it running; prints its ID", Args: cobra.NoArgs}
	o := labFlags(cmd)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := requireRoot(); err != nil {
			return err
		}
		ctx, cancel := signalContext()
		defer cancel()
		l, err := lab.Up(ctx, *o)
		if err != nil {
			return err
		}
		fmt.Println(l.ID)
		return nil
	}
	return cmd
}

func downCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "down [ID...]",
		Short: "Tear down labs (all of them when no ID is given)",
		RunE: func(_ *cobra.Command, ids []string) error {
			if err := requireRoot(); err != nil {
				return err
			}
			if len(ids) == 0 {
				ids = labIDs()
			}
			for _, id := range ids {
				l, err := lab.ForID(id)
				if err != nil {
					return err
				}
				if err := l.Down(); err != nil {
					return err
				}
				fmt.Println("removed lab", l.ID)
			}
			return nil
		},
	}
}

// labIDs lists the labs that have a state directory.
func labIDs() []string {
	var ids []string
	entries, _ := os.ReadDir(lab.StateRoot)
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}

func savedLabs(ids []string) ([]*lab.Lab, error) {
	if len(ids) == 0 {
		ids = labIDs()
	}
	var out []*lab.Lab
	for _, id := range ids {
		l, err := lab.Load(filepath.Join(lab.StateRoot, id))
		if err != nil {
			return nil, fmt.Errorf("lab %s: %w", id, err)
		}
		out = append(out, l)
	}
	return out, nil
}

func statusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status [ID...]",
		Short: "Show running labs: nodes, agents, pods and kindnet routes",
		RunE: func(cmd *cobra.Command, ids []string) error {
			labs, err := savedLabs(ids)
			if err != nil {
				return err
			}
			if len(labs) == 0 {
				fmt.Println("no lab is running")
			}
			for _, l := range labs {
				lab.PrintStatus(cmd.Context(), os.Stdout, l)
			}
			return nil
		},
	}
}

func demoCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "demo", Short: "Build a lab, show that it works, tear it down", Args: cobra.NoArgs}
	o := labFlags(cmd)
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := requireRoot(); err != nil {
			return err
		}
		ctx, cancel := signalContext()
		defer cancel()
		return lab.Demo(ctx, os.Stdout, *o)
	}
	return cmd
}
