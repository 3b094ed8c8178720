// Command kindnet-bench runs kindnet's benchmarks in the network-namespace
// lab and writes the report: a JSON record, a Markdown report with PNG
// charts, and a summary table on standard output. `make bench` and
// `make bench-quick` run it; `kindnet-bench render` redraws the report
// from a JSON record.
//
// It needs root (it creates network namespaces) and never touches the
// machine's own network namespace.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/test/bench"
)

func main() {
	if err := root().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "kindnet-bench:", err)
		os.Exit(1)
	}
}

func root() *cobra.Command {
	self, _ := os.Executable()
	bin := filepath.Dir(self)
	var quick bool
	var out, notes, only, src string
	env := bench.Env{}
	cmd := &cobra.Command{
		Use:   "kindnet-bench",
		Short: "Measure kindnet in the network-namespace lab and write the report",
		Long: `Measure kindnet in the network-namespace lab: datapath throughput and
latency (node to node, pod to pod through kindnet, pod to pod on one node,
pod to pod over a VXLAN overlay), boot to READY from the cache and one peer
changed at 5,000 peers, memory and CPU; then it runs the CNI plugin's and the
Kubernetes source's own Go benchmarks (go test -bench, from --src) and takes
their figures. Writes <out>/<date>-<host>.json, <out>/latest.md and PNG
charts, and prints a summary table.

Interrupting it (Ctrl-C) removes every lab namespace it made and writes
nothing. If it is killed outright, "kindnet-lab down" removes its labs.`,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(*cobra.Command, []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("the benchmark builds network namespaces: run it as root (sudo make bench)")
			}
			// Never let lab agents talk to a service manager this program
			// may itself run under.
			_ = os.Unsetenv("NOTIFY_SOCKET")
			env.Log = func(f string, a ...any) {
				fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(f, a...))
			}
			if err := bench.CheckTools(env); err != nil {
				return err
			}
			o := bench.Full()
			if quick {
				o = bench.Quick()
			}
			o.Command = "kindnet-bench " + strings.Join(os.Args[1:], " ")
			o.Src = src
			if err := restrict(&o, only); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			r := bench.Run(ctx, env, o)
			if ctx.Err() != nil {
				return fmt.Errorf("interrupted: the labs are removed and no report was written")
			}
			return write(r, out, notes)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&quick, "quick", false, "the short run (under five minutes): fewer rounds, shorter runs")
	f.StringVar(&out, "out", "bench/results", "directory for the JSON record, latest.md and the charts")
	f.StringVar(&notes, "notes", "", "Markdown file of hand-written analysis to include in the report")
	f.StringVar(&only, "only", "", "measure only these sections, comma-separated: datapath, control, cni, kube")
	f.StringVar(&src, "src", ".", "kindnet's source tree: the CNI and Kubernetes benchmarks run from it with go test")
	f.StringVar(&env.Kindnet, "kindnet", filepath.Join(bin, "kindnet"), "kindnet binary under test")
	f.StringVar(&env.LabTool, "lab-tool", filepath.Join(bin, "kindnet-lab"), "kindnet-lab binary (the lab's CNI driver)")
	cmd.AddCommand(renderCmd())
	return cmd
}

// restrict drops the sections --only does not name.
func restrict(o *bench.Options, only string) error {
	if only == "" {
		return nil
	}
	keep := map[string]bool{}
	for _, s := range strings.Split(only, ",") {
		switch s = strings.TrimSpace(s); s {
		case "datapath", "control", "cni", "kube":
			keep[s] = true
		default:
			return fmt.Errorf("--only %q: expected datapath, control, cni or kube", s)
		}
	}
	if !keep["datapath"] {
		o.Datapath = nil
	}
	if !keep["control"] {
		o.Control = nil
	}
	if !keep["cni"] {
		o.CNI = nil
	}
	if !keep["kube"] {
		o.Kube = nil
	}
	return nil
}

func write(r *bench.Report, out, notes string) error {
	if notes != "" {
		b, err := os.ReadFile(notes)
		if err != nil {
			return fmt.Errorf("--notes: %w", err)
		}
		r.Notes = string(b)
	}
	path, err := r.Write(out)
	if err != nil {
		return err
	}
	fmt.Println()
	r.PrintSummary(os.Stdout)
	fmt.Printf("\nrecord: %s\nreport: %s\n", path, filepath.Join(out, "latest.md"))
	return nil
}

func renderCmd() *cobra.Command {
	var out, notes string
	cmd := &cobra.Command{
		Use:   "render RECORD.json",
		Short: "Redraw latest.md and the charts from a JSON record (goals re-evaluated)",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			r, err := bench.ReadReport(args[0])
			if err != nil {
				return err
			}
			r.EvaluateGoals()
			if notes != "" {
				b, err := os.ReadFile(notes)
				if err != nil {
					return fmt.Errorf("--notes: %w", err)
				}
				r.Notes = string(b)
			}
			if out == "" {
				out = filepath.Dir(args[0])
			}
			if err := r.WriteCharts(out); err != nil {
				return err
			}
			var b strings.Builder
			r.WriteMarkdown(&b)
			if err := os.WriteFile(filepath.Join(out, "latest.md"), []byte(b.String()), 0o644); err != nil {
				return err
			}
			r.PrintSummary(os.Stdout)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "directory for latest.md and the charts (default: the record's)")
	cmd.Flags().StringVar(&notes, "notes", "", "Markdown file of hand-written analysis to include")
	return cmd
}
