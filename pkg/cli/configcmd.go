package cli

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newConfigCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Check or show kindnet's configuration",
	}
	cmd.AddCommand(newConfigValidateCmd(e), newConfigShowCmd(e))
	return cmd
}

func newConfigValidateCmd(e *env) *cobra.Command {
	cf := &configFlags{}
	cmd := &cobra.Command{
		Use:   "validate",
		Short: "Check the configuration without touching the host",
		Long: `Load the configuration exactly as "kindnet agent" would (file, then KINDNET_*
variables, then flags) and check every value. Prints "ok" and exits 0 when it
is valid; otherwise prints each problem with the field, the bad value, where it
came from and what is expected, and exits 2. A file kindnet trusts (this
config, the nodes file, the kubeconfig) that a user other than root can change
is a warning on stderr: valid, but whoever can write it decides what kindnet
installs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(e, cmd.Flags())
			if err != nil {
				return err
			}
			for _, w := range cfg.FileWarnings() {
				fmt.Fprintln(e.stderr, "warning: insecure: "+w)
			}
			fmt.Fprintln(e.stdout, "ok")
			return nil
		},
	}
	cf.bind(cmd.Flags())
	return cmd
}

func newConfigShowCmd(e *env) *cobra.Command {
	cf := &configFlags{}
	cmd := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and where each value comes from",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(e, cmd.Flags())
			if err != nil {
				return err
			}
			fmt.Fprint(e.stdout, cfg.Render())
			return nil
		},
	}
	cf.bind(cmd.Flags())
	return cmd
}
