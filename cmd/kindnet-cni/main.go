// Command kindnet-cni is kindnet's CNI plugin on its own: the binary the
// packages install as /opt/cni/bin/kindnet and `make build` writes to
// bin/cni/kindnet. A container runtime starts it for every pod ADD, DEL,
// CHECK and VERSION, so it links only what the plugin needs (pkg/cni,
// pkg/ipam, pkg/hostport, netlink, nftables): none of the agent's Kubernetes
// client, metrics, CLI or YAML, whose package initialisation every call
// would otherwise pay. internal/deprules fails when one of them enters its
// dependency graph.
package main

import (
	"os"

	"github.com/kindnet-dev/kindnet/pkg/cni"
)

func main() { os.Exit(cni.Main()) }
