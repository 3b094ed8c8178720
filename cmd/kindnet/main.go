// Command kindnet is the node agent and operator CLI. The CNI plugin the
// packages install is its own lean binary (cmd/kindnet-cni, docs/cni.md);
// this one still answers as the plugin when a container runtime executes it
// (CNI_COMMAND set, no arguments) so that a bin dir holding this binary, or
// a link to it left by a package older than the split, keeps working, at
// the price of the agent's start-up on every call.
package main

import (
	"os"

	"github.com/kindnet-dev/kindnet/pkg/cli"
	"github.com/kindnet-dev/kindnet/pkg/cni"
)

func main() {
	if os.Getenv("CNI_COMMAND") != "" && len(os.Args) == 1 {
		os.Exit(cni.Main())
	}
	os.Exit(cli.Main())
}
