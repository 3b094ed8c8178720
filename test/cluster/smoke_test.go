package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// hostPort is the hostPort of the smoke test's server pod.
const hostPort = 30080

// TestClusterSmoke brings up a real 2-node cluster with kindnet and checks
// what a pod network must give: pod to pod across nodes over IPv4 and
// IPv6, pod to a Service ClusterIP (both families) and to its DNS name
// (CoreDNS), a hostPort on the node's addresses, node to pod; then tears
// the cluster down and checks that nothing is left.
func TestClusterSmoke(t *testing.T) {
	netnstest.RequireHostRoot(t, "a cluster of machines with systemd and containerd")
	repo, err := kubetest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	// The cached tools first: without them, say what to run.
	if _, err := FindBinaries(os.Args[0], os.Args[0]); err != nil {
		t.Fatalf("the cluster needs the cached tools: %v", err)
	}
	binDir, err := lab.BuildCommands(repo, map[string]string{"kindnet": "./cmd/kindnet", "kindnet-cluster": "./test/cluster/kindnet-cluster"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	bins, err := FindBinaries(filepath.Join(binDir, "kindnet"), filepath.Join(binDir, "kindnet-cluster"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	start := time.Now()
	c, err := Up(ctx, Options{Nodes: 2, StateRoot: t.TempDir(), RepoRoot: repo, Bins: bins, Log: t.Logf,
		BuildImages: func(dir string) ([]Image, error) { return BuildImages(ctx, repo, dir, t.Logf) }}, false)
	if c != nil {
		t.Cleanup(func() { tearDown(t, c) })
	}
	if err != nil {
		t.Fatalf("cluster up: %v", err)
	}
	t.Logf("cluster %s up in %s", c.ID, time.Since(start).Round(time.Second))
	t.Cleanup(func() {
		if t.Failed() {
			dumpLogs(t, c, bins)
		}
	})

	node1, node2 := c.Nodes[0], c.Nodes[1]
	k := func(stdin string, args ...string) string {
		t.Helper()
		var in []byte
		if stdin != "" {
			in = []byte(stdin)
		}
		out, err := c.Kubectl(ctx, bins, in, args...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	k(smokeWorkload(node1.Name, node2.Name), "apply", "-f", "-")
	k("", "wait", "--for=condition=Ready", "pod/client", "pod/server", "--timeout=180s")

	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	server, err := cs.CoreV1().Pods("default").Get(ctx, "server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	svc, err := cs.CoreV1().Services("default").Get(ctx, "server", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podIPs := familyAddrs(t, "server pod", podIPStrings(server))
	svcIPs := familyAddrs(t, "server Service", svc.Spec.ClusterIPs)

	// From the client pod on node1, with agnhost connect (a TCP connect;
	// through a Service it succeeds only if the backend answers).
	connect := func(what, dst string) {
		t.Helper()
		err := retryEvery(ctx, 60*time.Second, time.Second, func() error {
			_, err := c.Kubectl(ctx, bins, nil, "exec", "client", "--", "/agnhost", "connect", "--timeout=3s", dst)
			return err
		})
		if err != nil {
			t.Errorf("%s (%s): %v", what, dst, err)
		} else {
			t.Logf("ok: %s (%s)", what, dst)
		}
	}
	for fam, ip := range podIPs {
		connect("pod to pod across nodes, "+fam, netip.AddrPortFrom(ip, 8080).String())
	}
	for fam, ip := range svcIPs {
		connect("pod to Service ClusterIP, "+fam, netip.AddrPortFrom(ip, 80).String())
	}
	connect("pod to a Service by DNS name (CoreDNS)", "server.default.svc.cluster.local:80")
	connect("pod to a hostPort on the node's IPv4", netip.AddrPortFrom(node2.IPv4, hostPort).String())
	connect("pod to a hostPort on the node's IPv6", netip.AddrPortFrom(node2.IPv6, hostPort).String())

	// The API server reaches a pod on a worker (its pod proxy: what
	// kubectl port-forward-less debugging, webhooks and the e2e DNS and
	// proxy tests use): the control-plane node routes the pod ranges.
	var proxied string
	err = retryEvery(ctx, 30*time.Second, time.Second, func() error {
		b, err := cs.CoreV1().RESTClient().Get().Namespace("default").Resource("pods").
			SubResource("proxy").Name("server:8080").Suffix("hostname").DoRaw(ctx)
		proxied = string(b)
		return err
	})
	if err != nil || proxied != "server" {
		t.Errorf("API server to a pod on %s (pods/server:8080/proxy/hostname): got %q, %v; want \"server\"", node2.Name, proxied, err)
	} else {
		t.Logf("ok: API server to a pod on %s through its pod proxy", node2.Name)
	}

	// From node1's own network namespace: the node reaches the pod on
	// node2, and it is the right pod (netexec /hostname).
	for fam, ip := range podIPs {
		url := "http://" + netip.AddrPortFrom(ip, 8080).String() + "/hostname"
		var got string
		err := retryEvery(ctx, 30*time.Second, time.Second, func() error {
			var err error
			got, err = httpGetInNetNS(ctx, node1.NS, url)
			return err
		})
		if err != nil || got != "server" {
			t.Errorf("node to pod, %s (%s): got %q, %v; want \"server\"", fam, url, got, err)
		} else {
			t.Logf("ok: node to pod, %s (%s)", fam, url)
		}
	}
}

// smokeWorkload: the server (agnhost netexec, hostPort) on node2 behind a
// dual-stack Service, the client on node1.
func smokeWorkload(node1, node2 string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: server
  labels: {app: server}
spec:
  nodeName: %[2]s
  containers:
  - name: netexec
    image: %[3]s
    args: [netexec, --http-port=8080, --udp-port=8081]
    ports:
    - {containerPort: 8080, hostPort: %[4]d, protocol: TCP}
---
apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: %[1]s
  containers:
  - name: netexec
    image: %[3]s
    args: [netexec, --http-port=8080]
---
apiVersion: v1
kind: Service
metadata:
  name: server
spec:
  ipFamilyPolicy: RequireDualStack
  selector: {app: server}
  ports:
  - {port: 80, targetPort: 8080, protocol: TCP}
`, node1, node2, AgnhostImage, hostPort)
}

func podIPStrings(p *corev1.Pod) []string {
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out
}

// familyAddrs maps "IPv4" and "IPv6" to the addresses given, and fails
// unless there is one of each.
func familyAddrs(t *testing.T, what string, ips []string) map[string]netip.Addr {
	t.Helper()
	out := map[string]netip.Addr{}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil {
			t.Fatalf("%s: address %q: %v", what, s, err)
		}
		if a.Is4() {
			out["IPv4"] = a
		} else {
			out["IPv6"] = a
		}
	}
	if len(out) != 2 {
		t.Fatalf("%s: want an IPv4 and an IPv6 address, got %v", what, ips)
	}
	return out
}

// httpGetInNetNS GETs url over a connection opened inside the named
// network namespace.
func httpGetInNetNS(ctx context.Context, ns, url string) (string, error) {
	dial := kubetest.DialInNetNS("/run/netns/" + ns)
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) { return dial(ctx, network, addr) },
	}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// tearDown removes the cluster and checks that nothing of it is left:
// processes, network namespaces, cgroups, mounts, files.
func tearDown(t *testing.T, c *Cluster) {
	t.Helper()
	if err := c.Down(); err != nil {
		t.Errorf("cluster down: %v", err)
	}
	for _, p := range c.Procs {
		if kubetest.StartTime(p.PID) == p.Start {
			t.Errorf("%s %s (pid %d) still runs after down", p.Node, p.Name, p.PID)
		}
	}
	if left := c.netnsNames(); len(left) > 0 {
		t.Errorf("network namespaces left: %v", left)
	}
	mounts, _ := cgroupMounts()
	for _, n := range c.Nodes {
		for _, m := range mounts {
			if _, err := os.Stat(filepath.Join(m, n.CgroupRoot)); err == nil {
				t.Errorf("cgroup %s left in %s", n.CgroupRoot, m)
			}
		}
	}
	if mi, _ := os.ReadFile("/proc/self/mountinfo"); strings.Contains(string(mi), c.Dir) {
		t.Errorf("mounts left under %s", c.Dir)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		t.Errorf("%s left behind", c.Dir)
	}
}

// dumpLogs shows what the cluster says about itself when the test failed.
func dumpLogs(t *testing.T, c *Cluster, bins Binaries) {
	var b strings.Builder
	PrintStatus(context.Background(), &b, c, bins)
	t.Logf("---- status ----\n%s", b.String())
	for _, n := range c.Nodes {
		for _, name := range []string{"kindnet", "containerd", "kubelet", "kube-proxy"} {
			t.Logf("---- %s %s (tail) ----\n%s", n.Name, name, kubetest.TailFile(n.LogPath(name), 25))
		}
	}
}
