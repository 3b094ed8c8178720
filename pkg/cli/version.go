package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/internal/buildinfo"
)

func newVersionCmd(e *env) *cobra.Command {
	var short bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this kindnet binary",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if short {
				fmt.Fprintln(e.stdout, buildinfo.Version)
				return nil
			}
			fmt.Fprintln(e.stdout, buildinfo.String())
			return nil
		},
	}
	cmd.Flags().BoolVar(&short, "short", false, "print only the version number")
	return cmd
}
