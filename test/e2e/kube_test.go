package e2e

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/kube"
	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// kubeLab is a lab whose agents follow a real kube-apiserver running on
// the lab's api host, each with its own kubelet identity
// (system:node:<name>).
type kubeLab struct {
	*lab.Lab
	api   *kubetest.Server
	admin *kubernetes.Clientset
	ko    kubeLabOptions
}

type kubeLabOptions struct {
	// rbac applies `kindnet rbac` before the agents start.
	rbac bool
	// certFiles makes kubeconfigs point at certificate files, as kubeadm's
	// kubelet.conf points at kubelet-client-current.pem; else embedded.
	certFiles bool
	// certValidity bounds the node certificates (0: 12h).
	certValidity time.Duration
	// agentArgs are extra agent flags.
	agentArgs []string
	// beforeAgents runs after the lab's own Nodes exist, before the agents
	// start (benchmarks create their Nodes there).
	beforeAgents func(*kubeLab) error
	nodes        int
	pods         int
}

// newKubeLab builds the lab, starts the API server on its api host,
// creates one Node per lab node (with its addresses and podCIDRs: there is
// no controller-manager to allocate them) and writes each node's
// kubeconfig, then starts the agents.
func newKubeLab(t testing.TB, ko kubeLabOptions) *kubeLab {
	t.Helper()
	netnstest.RequireHostRoot(t, "builds the network-namespace lab")
	apiBin, etcdBin, err := kubetest.Binaries()
	if err != nil {
		t.Fatalf("the Kubernetes API tests need the real control plane: %v", err)
	}
	kl := &kubeLab{ko: ko}
	o := labOptions(t)
	o.API = true
	o.AgentArgs = ko.agentArgs
	if ko.nodes > 0 {
		o.Nodes = ko.nodes
	}
	o.PodsPerNode = ko.pods
	o.BeforeAgents = func(l *lab.Lab) error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		// Errors, not t.Fatal: Up must get the chance to remove the lab.
		s, err := kubetest.Start(ctx, kubetest.Options{Dir: t.TempDir(), NetNS: l.API.NS, Addr: lab.APIIPv4, Log: t.Logf}, apiBin, etcdBin)
		if s != nil {
			t.Cleanup(s.Close)
		}
		if err != nil {
			return err
		}
		kl.api = s
		if kl.admin, err = s.Admin(); err != nil {
			return err
		}
		if ko.rbac {
			if err := applyRBAC(ctx, kl.admin); err != nil {
				return err
			}
		}
		for _, n := range l.Nodes {
			if err := createNode(ctx, kl.admin, n.Name, []string{n.IPv4.String(), n.IPv6.String()},
				[]string{n.PodCIDR4.String(), n.PodCIDR6.String()}); err != nil {
				return err
			}
			if err := kl.writeKubeconfig(n, ko.certValidity); err != nil {
				return err
			}
		}
		if ko.beforeAgents != nil {
			kl.Lab = l
			return ko.beforeAgents(kl)
		}
		return nil
	}
	kl.Lab = newLab(t, o)
	t.Cleanup(func() {
		if t.Failed() && kl.api != nil {
			t.Logf("API server %s", kl.api.URL)
		}
	})
	return kl
}

// writeKubeconfig issues a fresh certificate for the node's kubelet
// identity and writes its kubeconfig (and certificate files) atomically.
func (kl *kubeLab) writeKubeconfig(n *lab.Node, validity time.Duration) error {
	var notAfter time.Time
	if validity > 0 {
		notAfter = time.Now().Add(validity)
	}
	cert, key, err := kl.api.NodeCert(n.Name, notAfter)
	if err != nil {
		return err
	}
	k := kubetest.Kubeconfig{CertPEM: cert, KeyPEM: key}
	if kl.ko.certFiles {
		// One file holding both, like kubelet-client-current.pem.
		k.CertFile = filepath.Join(n.Dir, "pki", "kubelet-client-current.pem")
		k.KeyFile = k.CertFile
		if err := kubetest.WriteFileAtomic(k.CertFile, append(cert, key...)); err != nil {
			return err
		}
	}
	return kl.api.WriteKubeconfig(n.KubeconfigPath(), k)
}

// applyRBAC applies exactly what `kindnet rbac` prints.
func applyRBAC(ctx context.Context, c kubernetes.Interface) error {
	manifest, err := kube.RBACManifest()
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(manifest), "\n---\n")[1:] {
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			return fmt.Errorf("kindnet rbac output: %w", err)
		}
		switch meta.Kind {
		case "ClusterRole":
			var r rbacv1.ClusterRole
			if err := yaml.UnmarshalStrict([]byte(doc), &r); err != nil {
				return err
			}
			if _, err := c.RbacV1().ClusterRoles().Create(ctx, &r, metav1.CreateOptions{}); err != nil {
				return err
			}
		case "ClusterRoleBinding":
			var b rbacv1.ClusterRoleBinding
			if err := yaml.UnmarshalStrict([]byte(doc), &b); err != nil {
				return err
			}
			if _, err := c.RbacV1().ClusterRoleBindings().Create(ctx, &b, metav1.CreateOptions{}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("kindnet rbac printed an unexpected kind %q", meta.Kind)
		}
	}
	return nil
}

// createNode creates a Node as kubelet registers one (status included) with
// the podCIDRs a controller-manager would have allocated.
func createNode(ctx context.Context, c kubernetes.Interface, name string, internalIPs, podCIDRs []string) error {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDRs: podCIDRs}}
	if len(podCIDRs) > 0 {
		n.Spec.PodCIDR = podCIDRs[0]
	}
	for _, a := range internalIPs {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	if _, err := c.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Node %s: %w", name, err)
	}
	return nil
}

// setInternalIPs changes a Node's addresses through the status subresource,
// as kubelet does.
func setInternalIPs(ctx context.Context, c kubernetes.Interface, name string, ips ...string) error {
	n, err := c.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Status.Addresses = nil
	for _, a := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: a})
	}
	_, err = c.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

var routeLine = regexp.MustCompile(`^(\S+) via (\S+) `)

// routesOf returns the node's kindnet routes: destination → next hop.
func routesOf(ctx context.Context, n *lab.Node) (map[string]string, error) {
	out, err := lab.KindnetRoutes(ctx, n)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := routeLine.FindStringSubmatch(line); f != nil {
			m[f[1]] = f[2]
		}
	}
	return m, nil
}

// labRoutes is what node n must route to the other lab nodes, plus extra.
func (kl *kubeLab) labRoutes(n *lab.Node, extra map[string]string) map[string]string {
	want := maps.Clone(extra)
	if want == nil {
		want = map[string]string{}
	}
	for _, m := range kl.Nodes {
		if m != n {
			want[m.PodCIDR4.String()] = m.IPv4.String()
			want[m.PodCIDR6.String()] = m.IPv6.String()
		}
	}
	return want
}

// waitRoutes waits until every lab node routes exactly the other lab nodes
// plus extra, and says what differs when it does not.
func (kl *kubeLab) waitRoutes(t testing.TB, d time.Duration, what string, extra map[string]string) {
	t.Helper()
	ctx := context.Background()
	eventually(t, d, what, func() error {
		for _, n := range kl.Nodes {
			got, err := routesOf(ctx, n)
			if err != nil {
				return err
			}
			if want := kl.labRoutes(n, extra); !maps.Equal(got, want) {
				return fmt.Errorf("%s routes %v, want %v", n.Name, got, want)
			}
		}
		return nil
	})
}

// logCount counts the lines of the node's agent log that contain s.
func logCount(n *lab.Node, s string) int {
	b, _ := os.ReadFile(n.LogPath())
	return bytes.Count(b, []byte(s))
}

func (kl *kubeLab) checkPods(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if f := kl.PingMatrix(ctx).Failures(); len(f) > 0 {
		t.Fatalf("pods cannot reach each other:\n%s", strings.Join(f, "\n"))
	}
}

func TestKubeAgentsFollowNodesCreatedUpdatedDeletedAndReused(t *testing.T) {
	kl := newKubeLab(t, kubeLabOptions{rbac: true, pods: 1})
	ctx := context.Background()
	kl.waitRoutes(t, 30*time.Second, "routed to every lab node from the API", nil)
	kl.checkPods(t)

	steps := []struct {
		what  string
		do    func() error
		extra map[string]string
	}{{
		"a new Node is routed everywhere",
		func() error {
			return createNode(ctx, kl.admin, "extra1", []string{"192.168.100.50", "fd00:100::50"}, []string{"10.244.50.0/24", "fd00:10:244:50::/64"})
		},
		map[string]string{"10.244.50.0/24": "192.168.100.50", "fd00:10:244:50::/64": "fd00:100::50"},
	}, {
		"a Node's new InternalIP is the new next hop",
		func() error { return setInternalIPs(ctx, kl.admin, "extra1", "192.168.100.51", "fd00:100::51") },
		map[string]string{"10.244.50.0/24": "192.168.100.51", "fd00:10:244:50::/64": "fd00:100::51"},
	}, {
		"a deleted Node's routes are removed",
		func() error { return kl.admin.CoreV1().Nodes().Delete(ctx, "extra1", metav1.DeleteOptions{}) },
		nil,
	}, {
		"a podCIDR reused by a new Node follows the new Node",
		func() error {
			return createNode(ctx, kl.admin, "extra2", []string{"192.168.100.52", "fd00:100::52"}, []string{"10.244.50.0/24", "fd00:10:244:50::/64"})
		},
		map[string]string{"10.244.50.0/24": "192.168.100.52", "fd00:10:244:50::/64": "fd00:100::52"},
	}}
	for _, st := range steps {
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.what, err)
		}
		kl.waitRoutes(t, 30*time.Second, st.what, st.extra)
	}

	// Every agent marked its own Node NetworkUnavailable=False with only
	// its kubelet identity and the read-only ClusterRole.
	eventually(t, 30*time.Second, "NetworkUnavailable=False on every lab Node", func() error {
		for _, n := range kl.Nodes {
			node, err := kl.admin.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			ok := slices.ContainsFunc(node.Status.Conditions, func(c corev1.NodeCondition) bool {
				return c.Type == corev1.NodeNetworkUnavailable && c.Status == corev1.ConditionFalse && c.Reason == kube.ReadyReason
			})
			if !ok {
				return fmt.Errorf("node %s conditions %+v", n.Name, node.Status.Conditions)
			}
		}
		return nil
	})
}

func TestKubeHostilePodCIDRNodeIsRejectedAndNothingInstalled(t *testing.T) {
	kl := newKubeLab(t, kubeLabOptions{rbac: true})
	ctx := context.Background()
	kl.waitRoutes(t, 30*time.Second, "routed to every lab node", nil)
	hostile := []struct {
		name, ip, cidr, reason string
	}{
		{"evil-default", "192.168.100.60", "0.0.0.0/0", "default route"},
		{"evil-lan", "192.168.100.61", "192.168.100.0/25", "connected subnet"},
		{"evil-overlap", "192.168.100.62", "10.244.1.0/25", "overlaps"},
		{"evil-loopback", "127.0.0.2", "10.244.62.0/24", "loopback"},
	}
	for _, h := range hostile {
		if err := createNode(ctx, kl.admin, h.name, []string{h.ip}, []string{h.cidr}); err != nil {
			t.Fatal(err)
		}
	}
	// A well-formed Node created after them proves the agents processed them.
	if err := createNode(ctx, kl.admin, "good", []string{"192.168.100.63"}, []string{"10.244.63.0/24"}); err != nil {
		t.Fatal(err)
	}
	kl.waitRoutes(t, 30*time.Second, "only the good Node routed", map[string]string{"10.244.63.0/24": "192.168.100.63"})
	for _, n := range kl.Nodes {
		for _, h := range hostile {
			if logCount(n, `peer rejected: nothing installed for it" peer=`+h.name) == 0 {
				t.Errorf("agent of %s did not report the rejection of %s (%s)", n.Name, h.name, h.reason)
			}
		}
	}
	_, rec := statusJSON(t, kl.Lab, kl.Nodes[0])
	for _, h := range hostile {
		if !slices.ContainsFunc(rec.Peers, func(p status.Peer) bool {
			return p.Name == h.name && p.State == status.PeerRejected && p.Reason != ""
		}) {
			t.Errorf("kindnet status does not list %s as rejected with a reason: %+v", h.name, rec.Peers)
		}
	}
	if t.Failed() {
		b, _ := os.ReadFile(kl.Nodes[0].LogPath())
		t.Logf("agent log of node1:\n%s", tail(b, 40))
	}
}

func TestKubeForbiddenWithoutBindingKeepsStateThenConvergesWhenApplied(t *testing.T) {
	// No ClusterRoleBinding: each kubelet identity may read only its own Node.
	kl := newKubeLab(t, kubeLabOptions{rbac: false, pods: 1})
	ctx := context.Background()
	// The lab started pods: each agent wrote its CNI config from its own
	// Node (field-selected watch) although it cannot list the others.
	eventually(t, 30*time.Second, "the 403 explained in every agent's log", func() error {
		for _, n := range kl.Nodes {
			if logCount(n, kube.RBACCommand) == 0 || logCount(n, "403 Forbidden") == 0 {
				return fmt.Errorf("agent of %s has not logged the 403 with the command to fix it", n.Name)
			}
		}
		return nil
	})
	for _, n := range kl.Nodes {
		if got, _ := routesOf(ctx, n); len(got) != 0 {
			t.Errorf("%s installed routes without being able to list the Nodes: %v", n.Name, got)
		}
		_, rec := statusJSON(t, kl.Lab, n)
		if s := rec.Source; s.Name != kube.SourceName || s.Healthy || s.Reason != "forbidden" ||
			s.MissingPermission != "list, watch nodes (cluster scope)" || s.Hint != kube.RBACCommand || s.Since.IsZero() {
			t.Errorf("status of %s does not show the 403: %+v", n.Name, s)
		}
	}
	// Applying the binding is enough: no agent restarts.
	pids := agentPIDs(kl)
	if err := applyRBAC(ctx, kl.admin); err != nil {
		t.Fatal(err)
	}
	kl.waitRoutes(t, 60*time.Second, "converged after the binding was applied", nil)
	kl.checkPods(t)
	for _, n := range kl.Nodes {
		if _, rec := statusJSON(t, kl.Lab, n); !rec.Source.Healthy || !rec.Source.Synced || rec.Source.Reason != "" {
			t.Errorf("status of %s after the binding: %+v", n.Name, rec.Source)
		}
	}
	if got := agentPIDs(kl); !slices.Equal(got, pids) {
		t.Errorf("agents restarted: pids %v, were %v", got, pids)
	}

	// Binding removed again and an agent restarted: it comes up from its
	// cache, is refused, and keeps every route.
	if err := kl.admin.RbacV1().ClusterRoleBindings().Delete(ctx, kube.RBACName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	n1 := kl.Nodes[0]
	before := logCount(n1, kube.RBACCommand)
	if err := kl.RestartAgent(n1, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the restarted agent refused again", func() error {
		if logCount(n1, kube.RBACCommand) <= before {
			return fmt.Errorf("no new 403 message")
		}
		return nil
	})
	kl.waitRoutes(t, time.Second, "routes kept from the cache while forbidden", nil)
	kl.checkPods(t)
}

func agentPIDs(kl *kubeLab) []int {
	var out []int
	for _, n := range kl.Nodes {
		out = append(out, n.AgentPID)
	}
	return out
}

func TestKubeRotatedClientCertificateIsPickedUpWithoutRestart(t *testing.T) {
	// Node certificates that expire soon, referenced by file like kubeadm's
	// kubelet.conf does.
	const validity = 40 * time.Second
	kl := newKubeLab(t, kubeLabOptions{rbac: true, certFiles: true, certValidity: validity})
	started := time.Now()
	ctx := context.Background()
	kl.waitRoutes(t, 30*time.Second, "routed with the first certificates", nil)
	pids := agentPIDs(kl)

	// kubelet rotates: a new key and certificate in the same file.
	for _, n := range kl.Nodes {
		if err := kl.writeKubeconfig(n, 0); err != nil {
			t.Fatal(err)
		}
	}
	// Wait for the old certificates to expire, then make every client
	// reconnect: only an agent using the new certificate gets back in.
	if wait := time.Until(started.Add(validity + 2*time.Second)); wait > 0 {
		time.Sleep(wait)
	}
	if err := kl.api.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if err := kl.api.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	if err := createNode(ctx, kl.admin, "after-rotation", []string{"192.168.100.70"}, []string{"10.244.70.0/24"}); err != nil {
		t.Fatal(err)
	}
	kl.waitRoutes(t, 60*time.Second, "a Node created after the old certificates expired is routed", map[string]string{"10.244.70.0/24": "192.168.100.70"})
	for _, n := range kl.Nodes {
		if logCount(n, "credentials changed on disk; reconnecting") == 0 {
			t.Errorf("agent of %s did not log the credential change", n.Name)
		}
	}
	if got := agentPIDs(kl); !slices.Equal(got, pids) {
		t.Errorf("agents restarted: pids %v, were %v", got, pids)
	}
}

func TestKubeconfigAppearingAfterTheAgentStarted(t *testing.T) {
	kl := newKubeLab(t, kubeLabOptions{rbac: true})
	ctx := context.Background()
	kl.waitRoutes(t, 30*time.Second, "routed", nil)
	// node3 becomes a node that has not joined yet: no kubeconfig, no
	// cache, no CNI config and no routes, then its agent starts.
	n3 := kl.Nodes[2]
	if err := kl.StopAgent(n3, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{n3.KubeconfigPath(), n3.CNIConfPath(), filepath.Join(n3.Dir, "state", "cluster-view.json")} {
		if err := os.Remove(p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := lab.Exec(ctx, n3.NS, "ip", "route", "flush", "proto", "107"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(ctx, n3.NS, "ip", "-6", "route", "flush", "proto", "107"); err != nil {
		t.Fatal(err)
	}
	if err := kl.StartAgent(n3); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the agent waiting for its kubeconfig", func() error {
		if logCount(n3, "waiting for the kubeconfig") == 0 || logCount(n3, "bootstrap state applied") < 2 {
			return fmt.Errorf("not yet logged")
		}
		return nil
	})
	time.Sleep(3 * time.Second) // a few credential checks pass
	if n := logCount(n3, "waiting for the kubeconfig"); n != 1 {
		t.Errorf("the wait was logged %d times, want once", n)
	}
	if _, err := os.Stat(n3.CNIConfPath()); err == nil {
		t.Errorf("CNI config written before this node's podCIDR was known")
	}
	// "kubeadm join" writes the kubeconfig.
	if err := kl.writeKubeconfig(n3, 0); err != nil {
		t.Fatal(err)
	}
	if err := kl.WaitCNIConfig(ctx, n3); err != nil {
		t.Fatal(err)
	}
	kl.waitRoutes(t, 30*time.Second, "converged once the kubeconfig appeared", nil)
}

func TestKubeAPIOutageRemovesNothingAndPodsKeepPinging(t *testing.T) {
	kl := newKubeLab(t, kubeLabOptions{rbac: true, pods: 1})
	ctx := context.Background()
	kl.waitRoutes(t, 30*time.Second, "routed", nil)
	kl.checkPods(t)

	// Pings between pods on different nodes, over both families, for the
	// whole outage: 5 per second for 80 s each.
	pods := kl.AllPods()
	type flow struct {
		from *lab.Pod
		dst  netip.Addr
	}
	var flows []flow
	for i, p := range pods {
		q := pods[(i+1)%len(pods)]
		flows = append(flows, flow{p, q.IPv4}, flow{p, q.IPv6})
	}
	results := make(chan string, len(flows))
	for _, f := range flows {
		go func() {
			out, err := lab.Exec(ctx, f.from.NS, "ping", "-n", "-q", "-c", "400", "-i", "0.2", "-W", "1", f.dst.String())
			if err != nil {
				results <- fmt.Sprintf("%s -> %s: %v", f.from.NS, f.dst, err)
				return
			}
			if !strings.Contains(out, " 0% packet loss") {
				results <- fmt.Sprintf("%s -> %s: %s", f.from.NS, f.dst, strings.TrimSpace(out))
				return
			}
			results <- ""
		}()
	}

	before := map[string]map[string]string{}
	for _, n := range kl.Nodes {
		before[n.Name], _ = routesOf(ctx, n)
	}
	if err := kl.api.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	outage := time.Now()
	// While it is down: an agent restarted comes back with the same routes
	// from its cache, and no agent removes anything.
	time.Sleep(10 * time.Second)
	n2 := kl.Nodes[1]
	if err := kl.RestartAgent(n2, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for time.Since(outage) < 60*time.Second {
		for _, n := range kl.Nodes {
			if got, _ := routesOf(ctx, n); !maps.Equal(got, before[n.Name]) {
				t.Fatalf("%s routes changed during the outage: %v, were %v", n.Name, got, before[n.Name])
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, rec := statusJSON(t, kl.Lab, kl.Nodes[0]); rec.Source.Healthy || rec.Source.Reason != "unreachable" {
		t.Errorf("status during the outage: %+v", rec.Source)
	}
	if logCount(n2, `view=cache`) == 0 {
		t.Errorf("the agent restarted during the outage did not bootstrap from its cache")
	}
	if err := kl.api.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	// The agents resync: a Node created after the outage is routed.
	if err := createNode(ctx, kl.admin, "after-outage", []string{"192.168.100.80"}, []string{"10.244.80.0/24"}); err != nil {
		t.Fatal(err)
	}
	kl.waitRoutes(t, 60*time.Second, "resynced after the outage", map[string]string{"10.244.80.0/24": "192.168.100.80"})
	for range flows {
		if r := <-results; r != "" {
			t.Errorf("pings lost during the outage: %s", r)
		}
	}
}
