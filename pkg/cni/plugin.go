// Package cni is kindnet's CNI plugin: what the kindnet binary does when a
// container runtime executes it (CNI_COMMAND set, no arguments). It speaks
// CNI 0.3.0 to 1.1.0 — ADD, DEL, CHECK, VERSION, STATUS and GC — through
// containernetworking/cni's skel, and wires each pod to the node either
// with a routed veth pair (ptp, the default) or through the kindnet0 bridge
// (bridge), with addresses from pkg/ipam and hostPorts from pkg/hostport.
//
// On the host it owns, per attachment, one veth whose name starts with
// "kn" and whose alias is "kindnet:<network>/<container ID>/<ifname>",
// the routes and neighbour entries on that veth, and in bridge mode the
// bridge named by the config. In the pod's namespace it owns the interface
// CNI_IFNAME with its addresses, routes and neighbour entries. It never
// touches any other link, route, address or namespace.
package cni

import (
	"errors"
	"fmt"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/kindnet-dev/kindnet/internal/buildinfo"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
)

// ErrCheckFailed is the plugin's own error code (the spec leaves 100+ to
// plugins) for a CHECK that found the attachment not as ADD left it.
const ErrCheckFailed uint = 100

// Main runs the plugin for one CNI_COMMAND and returns the exit code. On
// failure the CNI error is printed on stdout as JSON, as the spec asks.
func Main() int {
	funcs := skel.CNIFuncs{Add: cmdAdd, Del: cmdDel, Check: cmdCheck, Status: cmdStatus, GC: cmdGC}
	about := "kindnet CNI plugin " + buildinfo.Version
	if e := preValidateEnv(os.Getenv); e != nil {
		if err := e.Print(); err != nil {
			fmt.Fprintln(os.Stderr, "kindnet: cannot print the CNI error:", err)
		}
		return 1
	}
	if e := skel.PluginMainFuncsWithError(funcs, version.PluginSupports(Supported...), about); e != nil {
		if err := e.Print(); err != nil {
			fmt.Fprintln(os.Stderr, "kindnet: cannot print the CNI error:", err)
		}
		return 1
	}
	return 0
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, cerr := Parse(args.StdinData)
	if cerr != nil {
		return cerr
	}
	if e := validateArgs("ADD", conf.Network, args.ContainerID, args.IfName); e != nil {
		return e
	}
	if cerr := conf.ParseRuntimeConfig(); cerr != nil {
		return cerr
	}
	res, err := newAttachment(conf, args).add()
	if err != nil {
		return err
	}
	return types.PrintResult(res, conf.CNIVersion)
}

// cmdDel never reads the runtime config: whatever ADD made of it (or
// refused), DEL removes what exists.
func cmdDel(args *skel.CmdArgs) error {
	conf, cerr := Parse(args.StdinData)
	if cerr != nil {
		return cerr
	}
	if e := validateArgs("DEL", conf.Network, args.ContainerID, args.IfName); e != nil {
		return e
	}
	return newAttachment(conf, args).del()
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, cerr := Parse(args.StdinData)
	if cerr != nil {
		return cerr
	}
	if e := validateArgs("CHECK", conf.Network, args.ContainerID, args.IfName); e != nil {
		return e
	}
	// CHECK compares the hostPort rules with the mappings, so it needs
	// them as ADD read them; mappings ADD would refuse are refused here.
	if cerr := conf.ParseRuntimeConfig(); cerr != nil {
		return cerr
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult: the result of the ADD", "")
	}
	if err := newAttachment(conf, args).check(); err != nil {
		var te *types.Error
		if errors.As(err, &te) {
			return te
		}
		return types.NewError(ErrCheckFailed, "attachment is not as ADD left it", err.Error())
	}
	return nil
}

// cmdStatus answers whether an ADD could be served now: the config is
// usable and IPAM can hand out an address of every family. Anything else
// is error 50 (plugin not available) with the reason.
func cmdStatus(args *skel.CmdArgs) error {
	conf, cerr := Parse(args.StdinData)
	if cerr != nil {
		return types.NewError(types.ErrPluginNotAvailable, cerr.Msg, cerr.Details)
	}
	if err := ipam.New(conf.IPAMDir, conf.Network).Status(pools(conf)); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "kindnet cannot allocate pod addresses: "+err.Error(), "")
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, cerr := Parse(args.StdinData)
	if cerr != nil {
		return cerr
	}
	if !conf.HasValidAttachment {
		return types.NewError(types.ErrInvalidNetworkConfig, "GC needs cni.dev/valid-attachments",
			"without the list every attachment would look stale; kindnet releases nothing")
	}
	return gc(conf)
}

// errorCode maps an error to the CNI code a runtime can act on.
func errorCode(err error) error {
	var te *types.Error
	switch {
	case err == nil, errors.As(err, &te):
		return err
	case errors.Is(err, ipam.ErrExhausted):
		return types.NewError(types.ErrTryAgainLater, err.Error(), "addresses come free as pods on this node are deleted")
	case errors.Is(err, ipam.ErrUnusable):
		return types.NewError(types.ErrIOFailure, err.Error(), "")
	}
	return err
}
