package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/spf13/cobra"
)

// cniCmd drives a CNI plugin the way a container runtime does: load the
// conflist with libcni and run ADD, CHECK or DEL for one container.
func cniCmd() *cobra.Command {
	var conflist, binDir, cacheDir, netns, id, ifname, pod string
	var ports []string
	cmd := &cobra.Command{
		Use:       "cni add|check|del",
		Short:     "Run a CNI verb for one pod through libcni, as a runtime does",
		ValidArgs: []string{"add", "check", "del"},
		Args:      cobra.MatchAll(cobra.ExactArgs(1), cobra.OnlyValidArgs),
		RunE: func(_ *cobra.Command, args []string) error {
			list, err := libcni.ConfListFromFile(conflist)
			if err != nil {
				return err
			}
			cni := libcni.NewCNIConfigWithCacheDir([]string{binDir}, cacheDir, nil)
			rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: ifname,
				Args: [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "lab"}, {"K8S_POD_NAME", pod}, {"K8S_POD_INFRA_CONTAINER_ID", id}}}
			if len(ports) > 0 {
				mappings, err := parsePorts(ports)
				if err != nil {
					return err
				}
				rt.CapabilityArgs = map[string]any{"portMappings": mappings}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			switch args[0] {
			case "add":
				res, err := cni.AddNetworkList(ctx, list, rt)
				if err != nil {
					return err
				}
				return printResult(res)
			case "check":
				return cni.CheckNetworkList(ctx, list, rt)
			default:
				return cni.DelNetworkList(ctx, list, rt)
			}
		},
	}
	f := cmd.Flags()
	f.StringVar(&conflist, "conflist", "", "CNI network config list")
	f.StringVar(&binDir, "bin-dir", "/opt/cni/bin", "CNI plugin directory")
	f.StringVar(&cacheDir, "cache-dir", "/var/lib/cni", "libcni result cache")
	f.StringVar(&netns, "netns", "", "path of the pod's network namespace")
	f.StringVar(&id, "container-id", "", "container ID")
	f.StringVar(&ifname, "ifname", "eth0", "interface name inside the pod")
	f.StringVar(&pod, "pod-name", "", "pod name (K8S_POD_NAME)")
	f.StringArrayVar(&ports, "port", nil, "hostPort as HOSTPORT:CONTAINERPORT[/PROTOCOL][@HOSTIP] (repeatable)")
	return cmd
}

// parsePorts reads --port values into CNI portMappings.
func parsePorts(ports []string) ([]map[string]any, error) {
	var out []map[string]any
	for _, p := range ports {
		var host, container int
		proto := "tcp"
		rest, hostIP, withIP := strings.Cut(p, "@")
		spec, pr, ok := strings.Cut(rest, "/")
		if ok {
			proto = pr
		}
		if _, err := fmt.Sscanf(spec, "%d:%d", &host, &container); err != nil || (withIP && hostIP == "") {
			return nil, fmt.Errorf("--port %q: expected HOSTPORT:CONTAINERPORT[/PROTOCOL][@HOSTIP]", p)
		}
		m := map[string]any{"hostPort": host, "containerPort": container, "protocol": proto}
		if withIP {
			m["hostIP"] = hostIP
		}
		out = append(out, m)
	}
	return out, nil
}

func printResult(res types.Result) error {
	cur, err := types100.NewResultFromResult(res)
	if err != nil {
		return err
	}
	var out struct {
		IPs []string `json:"ips"`
	}
	for _, ip := range cur.IPs {
		out.IPs = append(out.IPs, ip.Address.String())
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

// whoamiCmd answers every TCP connection with the source address it came
// from, then closes it.
func whoamiCmd() *cobra.Command {
	var listen string
	cmd := &cobra.Command{
		Use:   "whoami",
		Short: "Serve TCP connections with the client's source address",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ln, err := net.Listen("tcp", listen)
			if err != nil {
				return err
			}
			for {
				c, err := ln.Accept()
				if err != nil {
					return err
				}
				ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
				fmt.Fprintln(c, ap.Addr().Unmap())
				c.Close()
			}
		},
	}
	cmd.Flags().StringVar(&listen, "listen", "[::]:8080", "address to listen on")
	return cmd
}

func fetchCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "fetch HOST:PORT",
		Short: "Connect to a whoami server and print what it says",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			c, err := net.DialTimeout("tcp", args[0], timeout)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(timeout))
			_, err = io.Copy(os.Stdout, c)
			return err
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Second, "give up after this long")
	return cmd
}
