package agent

import (
	"context"
	"errors"
	"sync"

	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/inspect"
	"github.com/kindnet-dev/kindnet/pkg/metrics"
	"github.com/kindnet-dev/kindnet/pkg/status"
)

// serve starts the status socket and, when metricsAddress is set, the
// metrics and probes listener. A status socket another live agent answers
// on is fatal (two agents would fight over the same routes); any other
// failure to listen is only logged (and a metrics one shown in the record),
// as the pod network matters more than its status and metrics.
func (a *Agent) serve(ctx context.Context) (stop func(), err error) {
	ipamDir := inspect.IPAMDir(a.cfg)
	refresh := func(r *status.Record) {
		r.IPAM = inspect.IPAMUsage(ipamDir, cniconf.NetworkName, r.Node.PodCIDRs, a.cfg.CNI.Plugin)
		a.runtime.refresh(r) // an answer at most a second old
	}
	ln, err := status.Listen(a.cfg.SocketPath())
	switch {
	case errors.Is(err, status.ErrAgentRunning):
		return nil, err
	case err != nil:
		// The pod network matters more than its status: go on without.
		a.log.Error("kindnet status will not reach this agent", "err", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	if ln != nil {
		srv := &status.Server{Store: a.store, Refresh: refresh, Log: a.log}
		wg.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				a.log.Error("status socket stopped", "socket", a.cfg.SocketPath(), "err", err)
			}
		})
	}
	if addr := a.cfg.MetricsAddress; addr != "" {
		mln, exposed, err := metrics.Listen(addr)
		if err != nil {
			a.log.Error("metrics and probes are not served", "err", err)
			a.store.Update(func(r *status.Record) { r.Agent.MetricsError = err.Error() })
		} else {
			if exposed {
				a.log.Warn("METRICS EXPOSED BEYOND THIS HOST: metricsAddress is not a loopback address, "+
					"so anyone who can reach it sees every node and range of the cluster; "+
					"set metricsAddress: 127.0.0.1:19080 unless a firewall protects it", "metricsAddress", addr)
			}
			a.metrics.Refresh = refresh
			wg.Go(func() {
				if err := a.metrics.Serve(ctx, mln); err != nil {
					a.log.Error("metrics listener stopped", "metricsAddress", addr, "err", err)
				}
			})
		}
	}
	a.log.Info("serving status", "socket", a.cfg.SocketPath(), "metricsAddress", a.cfg.MetricsAddress)
	return func() { cancel(); wg.Wait() }, nil
}
