package kube

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

// RBACCommand applies the one ClusterRole and binding kindnet needs; every
// message about a missing permission ends with it.
const RBACCommand = "kindnet rbac | kubectl apply -f -"

// ErrForbidden marks a refusal (403): the credentials work but lack a
// permission. It is what `errors.Is` finds in a source error on 403.
var ErrForbidden = errors.New("missing permission")

// explain turns a failed list or watch call into the error the agent logs
// and records: what failed, what is missing, how to fix it. which is "all"
// (the Node list the peers come from) or "own" (this node's Node).
func explain(f *callError, node, which string) error {
	err := f.err
	switch {
	case apierrors.IsForbidden(err) && which == "all":
		return &model.SourceError{
			Reason: model.SourceForbidden, Permission: "list, watch nodes (cluster scope)", Hint: RBACCommand,
			Err: fmt.Errorf("%w: the API server refused to %s all Nodes (403 Forbidden): kindnet needs get, list and watch on nodes (core API group, cluster-wide) for group %s, which the Node authorizer no longer grants (since Kubernetes 1.32 a kubelet may read only its own Node); apply it once from a control-plane host with: %s — until then routes from the last good view stay in place (API server said: %s)",
				ErrForbidden, f.verb, NodesGroup, RBACCommand, apiMessage(err)),
		}
	case apierrors.IsForbidden(err):
		return &model.SourceError{
			Reason: model.SourceForbidden, Permission: "get, list, watch node " + node,
			Hint: "set nodeName to the name in the kubeconfig's identity (system:node:<name>), or " + RBACCommand,
			Err: fmt.Errorf("%w: the API server refused to %s this node's own Node %q (403 Forbidden): check that nodeName matches the kubeconfig's identity (a kubelet may read only system:node:<its name>) or grant get, list and watch on nodes with: %s (API server said: %s)",
				ErrForbidden, f.verb, node, RBACCommand, apiMessage(err)),
		}
	case apierrors.IsUnauthorized(err):
		// No SourceError: the status reasons are few and fixed; "error" fits.
		return fmt.Errorf("the API server rejected the credentials (401 Unauthorized) on %s Nodes: the client certificate may have expired or not be signed by the cluster's CA; kindnet reconnects as soon as the kubeconfig or its certificate files change (API server said: %s)",
			f.verb, apiMessage(err))
	default:
		return &model.SourceError{
			Reason: model.SourceUnreachable,
			Err:    fmt.Errorf("cannot %s Nodes (retrying with backoff; everything installed stays in place): %w", f.verb, err),
		}
	}
}

func apiMessage(err error) string {
	var s apierrors.APIStatus
	if errors.As(err, &s) && s.Status().Message != "" {
		return s.Status().Message
	}
	return err.Error()
}
