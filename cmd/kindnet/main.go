// Command kindnet is the whole of kindnet in one static binary: the node
// agent and operator CLI when run with arguments, and the CNI plugin when a
// container runtime executes it (CNI_COMMAND set, no arguments).
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
