// Command kindnet-images builds the cluster's container images (package
// test/cluster/images) into a directory, for scripts: it prints one line
// per image, its ref and its archive separated by a tab, ready for
// `ctr -n k8s.io images import --local`. Progress goes to stderr.
//
//	go run ./test/cluster/images/kindnet-images --out DIR [--tools DIR] [--kubeadm]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/kindnet-dev/kindnet/test/cluster/images"
)

func main() {
	var o images.Options
	flag.StringVar(&o.Out, "out", "", "directory for the archives (required)")
	flag.StringVar(&o.Tools, "tools", "", "tools cache of scripts/tools.sh (default $KINDNET_TOOLS or ~/.cache/kindnet)")
	flag.StringVar(&o.Root, "root", "", "kindnet checkout (default: the module holding the working directory)")
	flag.BoolVar(&o.Kubeadm, "kubeadm", false, "also the control-plane images kubeadm config images list names")
	flag.Parse()
	if o.Out == "" || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: kindnet-images --out DIR [--tools DIR] [--root DIR] [--kubeadm]")
		os.Exit(64)
	}
	o.Log = func(f string, a ...any) { fmt.Fprintf(os.Stderr, f+"\n", a...) }
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	archives, err := images.Build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for _, a := range archives {
		fmt.Printf("%s\t%s\n", a.Ref, a.Path)
	}
}
