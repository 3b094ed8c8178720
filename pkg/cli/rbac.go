package cli

import (
	"github.com/spf13/cobra"

	"github.com/kindnet-dev/kindnet/pkg/kube"
)

func newRBACCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "rbac",
		Short: "Print the ClusterRole and binding kindnet needs, for kubectl apply",
		Long: `Print, as YAML, the one ClusterRole (get, list and watch on nodes) and the
ClusterRoleBinding to the group system:nodes that kindnet needs to follow the
cluster with each node's kubelet credentials. Since Kubernetes 1.32 the Node
authorizer lets a kubelet read only its own Node, so without this the agent
reports "403 Forbidden" and keeps its last good routes.

Apply it once, from a host with cluster-admin rights:

  ` + kube.RBACCommand + `

Nothing else is needed: a kubelet may already patch its own Node's status,
which is all kindnet writes (the NetworkUnavailable condition).`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			b, err := kube.RBACManifest()
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(b)
			return err
		},
	}
}
