package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/test/cluster"
	"github.com/kindnet-dev/kindnet/test/conformance"
)

// What make conformance runs: every [sig-network] conformance test and the
// dual-stack tests (issue 13).
const defaultFocus = `\[sig-network\].*(\[Conformance\]|\[Feature:IPv6DualStack\])`

// skipReason says why tests matching a pattern are not run on this
// machine; each pattern is added to --ginkgo.skip only when its check says
// it applies.
type skipReason struct {
	pattern, why string
	applies      func() bool
}

var skipReasons = []skipReason{
	{`\[Feature:SCTPConnectivity\]`,
		"the kernel's sctp module is not loaded on this machine, and loading a module would change the machine itself; kindnet's SCTP hostPorts are tested in pkg/cni",
		func() bool { _, err := os.Stat("/proc/net/sctp"); return err != nil }},
	{`\[Serial\]|\[Disruptive\]`,
		"tests that take a whole cluster for themselves or break nodes on purpose: none of the selected tests is one today",
		func() bool { return true }},
}

func conformanceCmd() *cobra.Command {
	var nodes, procs int
	var out, focus string
	var keep, nodeRestart bool
	cmd := &cobra.Command{
		Use:   "conformance",
		Short: "Bring up a cluster, run the upstream e2e network tests against it, write the report, remove the cluster",
		Args:  cobra.NoArgs,
	}
	cmd.Flags().IntVar(&nodes, "nodes", 3, "number of worker nodes (the control plane is a node of its own, tainted as kubeadm does)")
	cmd.Flags().IntVar(&procs, "procs", 4, "specs run in parallel (ginkgo processes); [Serial] specs are skipped")
	cmd.Flags().StringVar(&out, "out", "conformance/results", "directory for the report (latest.md and a dated copy)")
	cmd.Flags().StringVar(&focus, "focus", defaultFocus, "--ginkgo.focus of e2e.test")
	cmd.Flags().BoolVar(&nodeRestart, "node-restart", true, "after e2e.test, restart the last node as a reboot does and check it comes back (the report's Node restart section)")
	cmd.Flags().BoolVar(&keep, "keep", false, "leave the cluster running afterwards (remove it with scripts/cluster.sh down)")
	cmd.RunE = func(*cobra.Command, []string) error {
		if err := requireRoot(); err != nil {
			return err
		}
		ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer cancel()
		return runConformance(ctx, nodes, procs, out, focus, keep, nodeRestart)
	}
	return cmd
}

func runConformance(ctx context.Context, nodes, procs int, out, focus string, keep, nodeRestart bool) (err error) {
	start := time.Now()
	if nodeRestart && nodes < 2 {
		return fmt.Errorf("the node-restart check needs 2 nodes or more, not %d: pass --node-restart=false to run without it", nodes)
	}
	focusRE, err := regexp.Compile(focus)
	if err != nil {
		return fmt.Errorf("--focus: %w", err)
	}
	var skips []string
	var reasons [][2]string
	for _, s := range skipReasons {
		if s.applies() {
			skips = append(skips, s.pattern)
			reasons = append(reasons, [2]string{s.pattern, s.why})
		}
	}
	skip := strings.Join(skips, "|")
	e2e, err := kubetest.ToolPath("e2e_test")
	if err != nil || !executable(e2e) {
		return fmt.Errorf("no e2e.test at %q (%v): run scripts/tools.sh ensure e2e_test", e2e, err)
	}
	ginkgo, err := kubetest.ToolPath("ginkgo")
	if err != nil || !executable(ginkgo) {
		return fmt.Errorf("no ginkgo at %q (%v): run scripts/tools.sh ensure ginkgo", ginkgo, err)
	}
	bins, err := binaries()
	if err != nil {
		return err
	}
	repo, err := kubetest.RepoRoot()
	if err != nil {
		return err
	}
	logf := func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	c, err := cluster.Up(ctx, cluster.Options{Nodes: nodes, RepoRoot: repo, Bins: bins, Log: logf,
		BuildImages: func(dir string) ([]cluster.Image, error) { return cluster.BuildImages(ctx, repo, dir, logf) },
	}, false)
	if err != nil {
		return fmt.Errorf("cluster up: %w", err)
	}
	if keep {
		logf("cluster %s stays up (scripts/cluster.sh down %s)", c.ID, c.ID)
	} else {
		defer func() {
			if derr := c.Down(); derr != nil {
				err = errors.Join(err, fmt.Errorf("cluster down: %w", derr))
			}
		}()
	}

	work := filepath.Join(c.Dir, "e2e")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	jsonReport := filepath.Join(work, "report.json")
	// The ginkgo CLI runs the specs in parallel processes, as upstream's
	// hack/ginkgo-e2e.sh does; e2e.test's own flags follow "--".
	args := []string{"netns", "exec", c.CP.NS, ginkgo,
		fmt.Sprintf("--procs=%d", procs), "--focus=" + focus, "--no-color", "--timeout=3h",
		"--json-report=" + jsonReport}
	if skip != "" {
		args = append(args, "--skip="+skip)
	}
	args = append(args, e2e, "--",
		"--kubeconfig="+c.AdminKubeconfig(), "--provider=local", fmt.Sprintf("--num-nodes=%d", nodes),
		"--report-dir="+work)
	logPath := filepath.Join(work, "e2e.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	logf("running e2e.test (log: %s)", logPath)
	run := exec.CommandContext(ctx, "ip", args...)
	run.Dir = work
	run.Stdout = io.MultiWriter(logFile, os.Stderr)
	run.Stderr = run.Stdout
	runErr := run.Run() // a failed test exits 1: the report says which

	r, err := conformance.ReadRun(jsonReport, focusRE, regexpOrNil(skip))
	if err != nil {
		return errors.Join(fmt.Errorf("e2e.test: %v", runErr), err)
	}

	// Issue 13: a node restarted as a reboot does, on the same cluster,
	// after the e2e tests; its section goes into the report.
	var extra string
	var restartErr error
	if nodeRestart {
		logf("restarting %s as a reboot does (node-restart check)", c.Nodes[len(c.Nodes)-1].Name)
		extra, restartErr = cluster.CheckNodeRestart(ctx, c, cluster.Options{RepoRoot: repo, Bins: bins, Log: logf})
	}
	h := conformance.Header{
		Title:       "kindnet: upstream Kubernetes network conformance",
		Date:        start,
		Versions:    versions(ctx, bins, e2e),
		Cluster:     fmt.Sprintf("%d worker nodes and a control-plane node (tainted, as kubeadm makes it), made by scripts/cluster.sh (docs/cluster.md); e2e.test run by ginkgo in %d parallel processes; dual-stack, IPv4 primary, pods 10.244.0.0/16 + fd00:10:244::/56, Services 10.96.0.0/16 + fd00:10:96::/112, kube-proxy in nftables mode, containerd 2, CoreDNS", nodes, procs),
		Focus:       focus,
		Skip:        skip,
		SkipReasons: reasons,
		Wall:        time.Since(start),
		Extra:       extra,
	}
	if err := writeReports(out, h, r); err != nil {
		return err
	}
	cnt := r.Counts()
	fmt.Printf("conformance: %d passed, %d failed, %d skipped in %s; report in %s\n",
		cnt.Passed, cnt.Failed, cnt.Skipped, time.Since(start).Round(time.Second), filepath.Join(out, "latest.md"))
	var errs []error
	if cnt.Failed > 0 {
		errs = append(errs, fmt.Errorf("%d tests failed (see the report)", cnt.Failed))
	}
	if restartErr != nil {
		errs = append(errs, fmt.Errorf("node restart: %w (see the report)", restartErr))
	}
	return errors.Join(errs...)
}

func regexpOrNil(s string) *regexp.Regexp {
	if s == "" {
		return nil
	}
	return regexp.MustCompile(s)
}

// writeReports writes latest.md and a copy named by the run's date.
func writeReports(dir string, h conformance.Header, r *conformance.Run) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, name := range []string{"latest.md", h.Date.UTC().Format("2006-01-02-1504") + ".md"} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		werr := conformance.WriteMarkdown(f, h, r)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("write %s: %w", name, werr)
		}
	}
	return nil
}

// versions asks each program for its version, so the report says what
// really ran.
func versions(ctx context.Context, bins cluster.Binaries, e2e string) [][2]string {
	ask := func(bin string, args ...string) string {
		b, err := exec.CommandContext(ctx, bin, args...).Output()
		if err != nil {
			return "unknown (" + err.Error() + ")"
		}
		return strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	kernel := ask("uname", "-r")
	return [][2]string{
		{"kindnet", ask(bins.Kindnet, "version")},
		{"kubelet", ask(bins.Kube("kubelet"), "--version")},
		{"e2e.test", ask(e2e, "--version")},
		{"containerd", ask(filepath.Join(bins.Containerd, "containerd"), "--version")},
		{"CoreDNS", ask(bins.CoreDNS, "-version")},
		{"Linux kernel", kernel},
	}
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
