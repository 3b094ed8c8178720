// Command kindnet is the whole of kindnet in one static binary: the node
// agent and operator CLI when run with arguments, and the CNI plugin when a
// container runtime executes it.
package main

import (
	"os"

	"github.com/kindnet-dev/kindnet/pkg/cli"
)

func main() {
	os.Exit(cli.Main())
}
