package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/status"
)

// TestHostileNodesThroughTheAPIAreRejectedAndChangeNothing creates, through
// the real API server, every kind of Node that could steer traffic where it
// must not go. Each one the API server accepts must be rejected by every
// agent with a reason, get no route anywhere, and leave the real nodes'
// routes and the pods' connectivity alone.
func TestHostileNodesThroughTheAPIAreRejectedAndChangeNothing(t *testing.T) {
	kl := newKubeLab(t, kubeLabOptions{rbac: true, pods: 1})
	ctx := context.Background()
	kl.waitRoutes(t, 30*time.Second, "routed to every lab node", nil)
	type node struct {
		name, why  string
		ips, cidrs []string
	}
	hostile := []node{
		{"evil-twin", "node2's own InternalIP", []string{"192.168.100.12"}, []string{"10.244.70.0/24"}},
		{"evil-self", "node1's own InternalIP", []string{"192.168.100.11"}, []string{"10.244.71.0/24"}},
		{"evil-inpod", "an InternalIP inside a pod range", []string{"10.244.2.5"}, []string{"10.244.72.0/24"}},
		{"evil-gateway", "a podCIDR covering the default gateway and the API server", []string{"192.168.100.73"}, []string{"192.168.100.0/24"}},
		{"evil-linklocal", "a link-local podCIDR", []string{"192.168.100.74"}, []string{"169.254.0.0/16"}},
		{"evil-multicast", "a multicast podCIDR", []string{"192.168.100.75"}, []string{"224.0.0.0/24"}},
		{"evil-mapped", "an IPv4-mapped IPv6 podCIDR", []string{"fd00:100::76"}, []string{"::ffff:10.244.76.0/120"}},
		{"evil-ll6", "a link-local IPv6 podCIDR", []string{"fd00:100::77"}, []string{"fe80::/64"}},
	}
	for bits := 0; bits <= 7; bits++ {
		hostile = append(hostile, node{"evil-wide" + strconv.Itoa(bits), "a /" + strconv.Itoa(bits) + " podCIDR",
			[]string{fmt.Sprintf("192.168.100.%d", 80+bits)}, []string{fmt.Sprintf("0.0.0.0/%d", bits)}})
	}
	var created []node
	for _, h := range hostile {
		if err := createNode(ctx, kl.admin, h.name, h.ips, h.cidrs); err != nil {
			// The API server's own validation got there first: it cannot
			// reach kindnet through the API, which is fine.
			t.Logf("API server refused %s (%s): %v", h.name, h.why, err)
			continue
		}
		created = append(created, h)
	}
	if len(created) < len(hostile)/2 {
		t.Fatalf("only %d of %d hostile Nodes could be created: the test proves too little", len(created), len(hostile))
	}
	// A well-formed Node created after them proves every agent processed them.
	if err := createNode(ctx, kl.admin, "good", []string{"192.168.100.99", "fd00:100::99"}, []string{"10.244.99.0/24", "fd00:10:244:99::/64"}); err != nil {
		t.Fatal(err)
	}
	kl.waitRoutes(t, 30*time.Second, "only the good Node routed, the real nodes unchanged",
		map[string]string{"10.244.99.0/24": "192.168.100.99", "fd00:10:244:99::/64": "fd00:100::99"})
	for _, n := range kl.Nodes {
		_, rec := statusJSON(t, kl.Lab, n)
		for _, h := range created {
			i := slices.IndexFunc(rec.Peers, func(p status.Peer) bool { return p.Name == h.name })
			if i < 0 || rec.Peers[i].State != status.PeerRejected || rec.Peers[i].Reason == "" {
				t.Errorf("%s: %s (%s) is not reported as rejected with a reason: %+v", n.Name, h.name, h.why, rec.Peers)
				continue
			}
			if logCount(n, "peer="+h.name) == 0 {
				t.Errorf("%s: no log line names %s", n.Name, h.name)
			}
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.AgentPID)); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				if strings.HasPrefix(l, "VmRSS") {
					t.Logf("%s agent with %d peers: %s", n.Name, len(rec.Peers), strings.Join(strings.Fields(l), " "))
				}
			}
		}
	}
	kl.checkPods(t)
}
