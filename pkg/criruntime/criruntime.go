// Package criruntime asks the node's container runtime, over CRI, what it
// reports about the pod network: the NetworkReady condition of
// RuntimeStatus (the one kubelet turns into the Node's Ready condition),
// and the runtime's name and version. The agent shows the answer next to
// its own view, so that a runtime that has not loaded kindnet's CNI config
// is seen in `kindnet status` instead of only in kubelet's.
//
// It only asks, over the runtime's Unix socket: it never changes anything
// in the runtime or on the host. Only the agent and the CLI import it; the
// CNI plugin's packages (pkg/cni, pkg/ipam, pkg/hostport) never do, so
// gRPC stays out of their dependency graph.
package criruntime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/kindnet-dev/kindnet/pkg/status"
)

// DefaultTimeout bounds one check (connect, RuntimeStatus and Version). A
// runtime on the same host answers in milliseconds; one that takes longer
// is reported as not answering rather than making its readers wait.
const DefaultTimeout = 2 * time.Second

// Checker asks one runtime.
type Checker struct {
	// Endpoints are unix:// URLs. With Auto they are candidates, and the
	// first whose socket exists is asked (looked up at every check: the
	// runtime may start after the agent); without, there is exactly one.
	// None means the check is off.
	Endpoints []string
	Auto      bool
	// Timeout bounds one check; zero means DefaultTimeout.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Check asks the runtime once and says what came of it. It never fails:
// a runtime that cannot be asked is a state of the answer.
func (c Checker) Check(ctx context.Context) status.Runtime {
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	rt := status.Runtime{Auto: c.Auto, Checked: now()}
	if len(c.Endpoints) == 0 {
		rt.State = status.RuntimeDisabled
		return rt
	}
	endpoint, err := c.pick()
	if err != nil {
		rt.State, rt.Error = status.RuntimeNoSocket, err.Error()
		if c.Auto {
			rt.State = status.RuntimeNotFound
		} else {
			rt.Endpoint = c.Endpoints[0]
		}
		return rt
	}
	rt.Endpoint = endpoint
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := ask(ctx, endpoint, &rt); err != nil {
		rt.State, rt.Error = status.RuntimeUnanswered, describe(err, timeout)
		rt.NetworkReady, rt.Reason, rt.Message = false, "", ""
	}
	return rt
}

// pick returns the endpoint to ask: the configured one if its socket
// exists, or the first well-known one that does.
func (c Checker) pick() (string, error) {
	var missing []string
	for _, e := range c.Endpoints {
		p := strings.TrimPrefix(e, "unix://")
		fi, err := os.Stat(p)
		switch {
		case err == nil && fi.Mode().Type() == fs.ModeSocket:
			return e, nil
		case err == nil:
			missing = append(missing, p+" is not a socket")
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, p+" does not exist")
		default:
			missing = append(missing, err.Error())
		}
	}
	if c.Auto {
		return "", fmt.Errorf("none of the well-known sockets is there: %s", strings.Join(missing, ", "))
	}
	return "", errors.New(missing[0])
}

// ask connects to endpoint and fills rt from RuntimeStatus and Version.
// A fresh connection per check: gRPC's reconnect backoff would otherwise
// keep reporting a runtime down for up to two minutes after it came back.
func ask(ctx context.Context, endpoint string, rt *status.Runtime) error {
	conn, err := grpc.NewClient(endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("connect to %s: %w", endpoint, err)
	}
	defer conn.Close()
	client := runtimeapi.NewRuntimeServiceClient(conn)
	st, err := client.Status(ctx, &runtimeapi.StatusRequest{})
	if err != nil {
		return fmt.Errorf("RuntimeStatus: %w", err)
	}
	networkCondition(st.GetStatus(), rt)
	// The name only makes messages clearer; a runtime that does not say it
	// is still one that answered.
	if v, err := client.Version(ctx, &runtimeapi.VersionRequest{}); err == nil {
		rt.Name, rt.Version = v.GetRuntimeName(), v.GetRuntimeVersion()
	}
	return nil
}

// networkCondition reads the NetworkReady condition into rt. A runtime
// that reports none is read as not ready, as kubelet does.
func networkCondition(st *runtimeapi.RuntimeStatus, rt *status.Runtime) {
	for _, c := range st.GetConditions() {
		if c.GetType() != runtimeapi.NetworkReady {
			continue
		}
		rt.NetworkReady, rt.Reason, rt.Message = c.GetStatus(), c.GetReason(), c.GetMessage()
		rt.State = status.RuntimeNotReady
		if rt.NetworkReady {
			rt.State = status.RuntimeReady
		}
		return
	}
	rt.State, rt.NetworkReady = status.RuntimeNotReady, false
	rt.Message = "the runtime reports no NetworkReady condition"
}

// describe turns a gRPC error into one readable phrase: "no answer within
// 2s", "connect: connection refused", or the code and message.
func describe(err error, timeout time.Duration) string {
	st, ok := grpcstatus.FromError(errors.Unwrap(err))
	if !ok {
		return err.Error()
	}
	switch st.Code() {
	case codes.DeadlineExceeded:
		return fmt.Sprintf("no answer within %s", timeout)
	case codes.Unavailable:
		// `connection error: desc = "transport: Error while dialing: dial
		// unix /run/x.sock: connect: connection refused"`: the last part
		// says it all.
		msg := strings.TrimSuffix(st.Message(), `"`)
		if i := strings.LastIndex(msg, "dial unix "); i >= 0 {
			msg = msg[i:]
		}
		return msg
	}
	return fmt.Sprintf("%s: %s", st.Code(), st.Message())
}
