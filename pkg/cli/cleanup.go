package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/pkg/cni"
	"github.com/kindnet-dev/kindnet/pkg/cniconf"
	"github.com/kindnet-dev/kindnet/pkg/hostport"
	"github.com/kindnet-dev/kindnet/pkg/masq"
	"github.com/kindnet-dev/kindnet/pkg/routes"
)

func newCleanupCmd(e *env) *cobra.Command {
	cf := &configFlags{}
	cmd := &cobra.Command{
		Use:   "cleanup",
		Short: "Remove everything kindnet installed on this node",
		Long: `Remove everything kindnet owns on this node, and nothing else:
  - routes tagged with kindnet's route protocol ("proto kindnet"),
  - its nftables table (masquerade.table, family inet),
  - the CNI plugin's bridge kindnet0 (bridge mode),
  - route_localnet on pods' host-side links (set for hostPorts on 127.0.0.1),
  - the CNI plugin's hostPort table (masquerade.table + "_hostport"),
  - its CNI config file (cni.confDir/cni.confName),
  - the CNI plugin's address allocations (runDir/ipam),
  - its run directory (runDir).

Pods on this node lose their connectivity to other nodes and the outside.
Stop kindnet.service first, or the agent puts everything back. Sysctls
(forwarding) are left as they are: other software may rely on them. The cache
in stateDir is kept; package purge removes it.`,
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
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "bridge: %s %s\n", cni.DefaultBridge, removedWord(removed))

			changed, err := cni.DisableRouteLocalnet(nl, cni.DefaultBridge)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "route_localnet: turned off on %d pod links\n", changed)

			removed, err = hostport.Cleanup(cfg.HostPortTable(), 0)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "nftables: table inet %s %s\n", cfg.HostPortTable(), removedWord(removed))

			removed, err = cniconf.Remove(cfg.CNIConfPath())
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "cni: %s %s\n", cfg.CNIConfPath(), removedWord(removed))

			removed, err = removeRunDir(cfg.IPAMDir())
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "IPAM: %s %s\n", cfg.IPAMDir(), removedWord(removed))

			removed, err = removeRunDir(cfg.RunDir)
			errs = append(errs, err)
			fmt.Fprintf(e.stdout, "run dir: %s %s\n", cfg.RunDir, removedWord(removed))
			return errors.Join(errs...)
		},
	}
	cf.bind(cmd.Flags())
	return cmd
}

// removeBridge deletes the CNI plugin's bridge; a link of that name that
// is not a bridge is not kindnet's and is left alone.
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

// removeRunDir deletes the run directory, refusing paths that are clearly
// not a directory of kindnet's own (a misconfigured runDir: / must not
// wipe the machine).
func removeRunDir(dir string) (bool, error) {
	clean := filepath.Clean(dir)
	depth := strings.Count(strings.Trim(clean, "/"), "/") + 1
	switch {
	case !filepath.IsAbs(clean) || clean == "/" || depth < 2:
		return false, fmt.Errorf("refusing to remove run dir %q: expected a dedicated directory such as /run/kindnet", dir)
	}
	if _, err := os.Stat(clean); os.IsNotExist(err) {
		return false, nil
	}
	if err := os.RemoveAll(clean); err != nil {
		return false, fmt.Errorf("remove run dir %s: %w", clean, err)
	}
	return true, nil
}
