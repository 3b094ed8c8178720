package cli

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/cni"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/owned"
	"github.com/kindnet-dev/kindnet/pkg/routes"
)

func newCleanupCmd(e *env) *cobra.Command {
	cf := &configFlags{}
	var purge bool
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove everything kindnet installed on this node",
		Long: `Remove everything kindnet owns on this node, and nothing else:
  - routes of the main table tagged with kindnet's route protocol
    ("proto kindnet"; routes in other tables are not kindnet's),
  - its nftables table (masquerade.table, family inet),
  - the CNI plugin's bridge kindnet0 (bridge mode), only if the plugin
    created it (alias "kindnet:bridge"),
  - route_localnet on pods' host-side links (set for hostPorts on 127.0.0.1),
  - the CNI plugin's hostPort table (masquerade.table + "_hostport"),
  - its CNI config file (cni.confDir/cni.confName),
  - in runDir: the status socket and the CNI plugin's IPAM store
    (runDir/ipam/<network>/: allocations, lock), then each directory if
    it is empty,
  - with --purge, also the cache in stateDir, then stateDir if it is empty.

Files kindnet did not create are never removed, and a directory holding
any is kept. Pods on this node lose their connectivity to other nodes and
the outside. Stop kindnet.service first, or the agent puts everything back.
Sysctls (forwarding) are left as they are: other software may rely on them.
Without --purge the cache in stateDir is kept; the package's purge (and
rpm's erase) run cleanup --purge.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := cf.load(e, cmd.Flags())
			if err != nil {
				return err
			}
			var errs []error
			// Routes, links and addresses only: a handle of every family would
			// also open XFRM and NETFILTER sockets it never uses (and which
			// qemu-user refuses, so foreign builds could not be tested).
			nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return fmt.Errorf("open netlink: %w", err)
			}
			defer nl.Close()
			n, err := routes.Cleanup(nl)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "routes: removed %d kindnet routes\n", n)

			removed, err := masq.Cleanup(cfg.Masquerade.Table, 0)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "nftables: table inet %s %s\n", cfg.Masquerade.Table, removedWord(removed))

			// The hostPort table holds the guard that keeps 127.0.0.0/8 local
			// on links with route_localnet=1 (hostPorts on a loopback
			// hostIP): the bridge goes and the pods' links lose the setting
			// before the table does.
			removed, err = removeBridge(nl, cni.DefaultBridge)
			if errors.Is(err, errNotOurs) {
				fmt.Fprintf(e.stdout, "bridge: %s left alone: not created by kindnet (no alias %q); if a kindnet release before the alias made it: ip link del %s\n",
					cni.DefaultBridge, cni.BridgeAlias, cni.DefaultBridge)
			} else {
				errs = append(errs, err)
				fmt.Fprintf(e.stdout, "bridge: %s %s\n", cni.DefaultBridge, removedWord(removed))
			}

			changed, err := cni.DisableRouteLocalnet(nl, cni.DefaultBridge)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "route_localnet: turned off on %d pod links\n", changed)

			removed, err = hostport.Cleanup(cfg.HostPortTable(), 0)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "nftables: table inet %s %s\n", cfg.HostPortTable(), removedWord(removed))

			removed, err = cniconf.Remove(cfg.CNIConfPath())
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "cni: %s %s\n", cfg.CNIConfPath(), removedWord(removed))

			dirs := []struct {
				what string
				dir  owned.Dir
			}{{"CNI config temporary files", owned.ConfDir(&cfg.Config)}, {"run dir", owned.RunDir(&cfg.Config)}}
			if purge {
				dirs = append(dirs, struct {
					what string
					dir  owned.Dir
				}{"state dir", owned.StateDir(&cfg.Config)})
			}
			for _, d := range dirs {
				res, err := owned.Remove(d.dir)
				errs = append(errs, err)
				fmt.Fprintf(e.stdout, "%s: %s %s\n", d.what, d.dir.Path, res.Summary())
			}
			return errors.Join(errs...)
		},
	}
	cf.bind(cmd.Flags())
	cmd.Flags().BoolVar(&purge, "purge", false, "also remove the cache in stateDir (what the package's purge runs)")
	return cmd
}

// errNotOurs says a bridge of kindnet's name was not created by kindnet.
var errNotOurs = errors.New("bridge not created by kindnet")

// removeBridge deletes the CNI plugin's bridge: a link of that name the
// plugin did not create (a veth, or a bridge without the plugin's alias)
// is not kindnet's and is left alone.
func removeBridge(nl *netlink.Handle, name string) (bool, error) {
	l, err := nl.LinkByName(name)
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("look up %s: %w", name, err)
	}
	if l.Type() != "bridge" {
		return false, fmt.Errorf("%s is a %s, not kindnet's bridge: left alone", name, l.Type())
	}
	if !cni.OwnsBridge(l) {
		// Not an error: someone else's bridge, or one made before the
		// plugin marked its bridges; say how to remove the latter.
		return false, errNotOurs
	}
	if err := nl.LinkDel(l); err != nil {
		return false, fmt.Errorf("delete bridge %s: %w", name, err)
	}
	return true, nil
}

func removedWord(b bool) string {
	if b {
		return "removed"
	}
	return "not present"
}
