// Command coredns is CoreDNS with only the plugins a cluster's DNS service
// uses (the Corefile kubeadm writes), built for the cluster that
// scripts/cluster.sh runs. Linking every upstream plugin (cloud DNS
// providers, etcd, geoip, …) triples the build time for nothing the
// tests use. The plugins register themselves in their init functions;
// coremain orders them by upstream's directive list.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
