package nodesfile

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/modeltest"
	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// FuzzNodesFile feeds arbitrary bytes through parsing, conversion and
// validation: nothing may panic, and whatever is accepted must be safe to
// install.
func FuzzNodesFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/*.yaml")
	for _, s := range seeds {
		b, _ := os.ReadFile(s)
		f.Add(b)
	}
	f.Add([]byte("apiVersion: v1\nkind: Node\nmetadata: {name: x}\nspec: {podCIDRs: [0.0.0.0/0]}\nstatus: {addresses: [{type: InternalIP, address: 10.0.0.1}]}\n"))
	f.Add([]byte("apiVersion: v1\nkind: List\nitems: [{metadata: {name: a}, spec: {podCIDRs: ['::ffff:10.0.0.0/104']}}]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		nodes, err := Parse(data)
		if err != nil {
			return
		}
		for _, allowExt := range []bool{false, true} {
			v := kubenode.ToView("n1", nodes, kubenode.AddressPolicy{AllowExternalIP: allowExt})
			pol := modeltest.Policy()
			s := model.Validate(v, pol)
			modeltest.CheckSnapshot(t, s, pol)
			pol.ClusterCIDRs = nil
			modeltest.CheckSnapshot(t, model.Validate(v, pol), pol)
		}
	})
}
