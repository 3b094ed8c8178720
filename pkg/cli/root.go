// Package cli holds kindnet's command line (cobra): the agent, cleanup,
// config validation, version and shell completions. It parses flags, loads
// the config, and turns errors into one clear line plus the exit code a
// script can rely on.
//
// It holds no logic of its own about the network: every command calls into
// the package that owns what it changes.
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kindnet-dev/kindnet/pkg/config"
	"github.com/kindnet-dev/kindnet/pkg/logging"
)

// Exit codes shared by every command.
const (
	ExitOK        = 0
	ExitFailure   = 1
	ExitBadConfig = 2  // the configuration is invalid; nothing was changed
	ExitUsage     = 64 // EX_USAGE: unknown command or flag, wrong arguments
)

// ExitError carries an exit code through cobra.
type ExitError struct {
	Code int
	Err  error
}

// An ExitError without Err exits with its code and prints nothing (the
// command has said everything already, e.g. `kindnet status`).
func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit code %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitError) Unwrap() error { return e.Err }

// env is what commands read from the outside world, so tests can run them.
type env struct {
	stdout, stderr io.Writer
	environ        []string
}

// NewRoot builds the command tree.
func NewRoot(stdout, stderr io.Writer, environ []string) *cobra.Command {
	e := &env{stdout: stdout, stderr: stderr, environ: environ}
	root := &cobra.Command{
		Use:   "kindnet",
		Short: "A minimal, fast Kubernetes network plugin for systemd hosts",
		Long: `kindnet gives every pod on this node an address and a route to every other
pod in the cluster, without an overlay: packets to another node's pods are
routed straight to that node's InternalIP. Traffic leaving the cluster is
masqueraded to the node's address.

On a node, kindnet.service runs "kindnet agent", which sets this up before
kubelet starts and keeps it in step with the cluster. The container runtime
runs the same binary as its CNI plugin.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		// The message is printed as is, under the error, like cobra's own.
		//lint:ignore ST1005 a second line for people, not an error to wrap
		return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nSee '%s --help'.", err, c.CommandPath())}
	})
	root.AddCommand(newAgentCmd(e), newCleanupCmd(e), newConfigCmd(e), newVersionCmd(e), newCompletionCmd(e))
	root.AddCommand(newStatusCmd(e))
	root.AddCommand(newRBACCmd(e))
	markArgErrorsAsUsage(root)
	return root
}

// markArgErrorsAsUsage makes a wrong number or kind of arguments exit with
// ExitUsage on every command, like a bad flag does.
func markArgErrorsAsUsage(c *cobra.Command) {
	if check := c.Args; check != nil {
		c.Args = func(cmd *cobra.Command, args []string) error {
			if err := check(cmd, args); err != nil {
				//lint:ignore ST1005 a second line for people, not an error to wrap
				return &ExitError{Code: ExitUsage, Err: fmt.Errorf("%w\nSee '%s --help'.", err, cmd.CommandPath())}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		markArgErrorsAsUsage(sub)
	}
}

// Execute runs the CLI and returns the process exit code.
func Execute(args []string, stdout, stderr io.Writer, environ []string) int {
	root := NewRoot(stdout, stderr, environ)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	code := ExitFailure
	var ee *ExitError
	var ce *config.Error
	switch {
	case errors.As(err, &ee):
		if ee.Err == nil {
			return ee.Code
		}
		code = ee.Code
	case errors.As(err, &ce):
		code = ExitBadConfig
	case strings.HasPrefix(err.Error(), "unknown command"): // cobra gives this no type
		code = ExitUsage
	}
	fmt.Fprintln(stderr, "kindnet: "+indentContinuation(err.Error()))
	if code == ExitBadConfig {
		fmt.Fprintln(stderr, "hint: check the value above in the config file, the KINDNET_* variables or the flags; `kindnet config show` prints where each value comes from.")
	}
	return code
}

func indentContinuation(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// configFlags are the flags every config-reading command shares.
type configFlags struct {
	file string
}

func (cf *configFlags) bind(fs *pflag.FlagSet) {
	fs.StringVar(&cf.file, "config", "", "config file (default "+config.DefaultConfigFile+", or $"+config.EnvConfigFile+")")
	config.BindFlags(fs)
}

// load layers the config for a command.
func (cf *configFlags) load(e *env, fs *pflag.FlagSet) (*config.Loaded, error) {
	src := config.Sources{File: config.DefaultConfigFile, Environ: e.environ, Flags: fs}
	if v := lookupEnv(e.environ, config.EnvConfigFile); v != "" {
		src.File, src.FileRequired = v, true
	}
	if cf.file != "" {
		src.File, src.FileRequired = cf.file, true
	}
	return config.Load(src)
}

func lookupEnv(environ []string, key string) string {
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// newLogger makes the process logger: structured journal entries under
// journald, key=value text on stderr elsewhere (see pkg/logging); klog
// (client-go) writes through it too.
func newLogger(e *env, level string) *slog.Logger {
	l := logging.New(e.stderr, level, e.environ)
	logging.CaptureKlog(l)
	return l
}

// Main is the entry point for the CLI mode of the binary.
func Main() int { return Execute(os.Args[1:], os.Stdout, os.Stderr, os.Environ()) }
