// Command pause is the only process of the pod sandboxes in the CRI tests:
// it waits until it is told to stop. Built static, it is the whole of the
// pause image the tests import (no registry is reachable from them).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 of the sandbox, signals without a handler are ignored:
	// handle the ones the runtime stops it with.
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
