package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// restartNS is the namespace of the node-restart check's workload.
const restartNS = "kindnet-node-restart"

// CheckNodeRestart runs the node-restart scenario on a running cluster of
// at least 2 nodes: pods on the last node (two servers, one behind a
// dual-stack Service) and a peer on the first; the last node restarted by
// RestartNode; then it checks that the node is Ready again, that its
// pods came back (new containers, started by kubelet) with working
// networking — pod to pod across nodes both ways over IPv4 and IPv6, and
// pod to the Service's two ClusterIPs — that the addresses of the node's
// pods are unique and that kindnet's IPAM store holds exactly one record
// per running pod sandbox, with the pods' addresses. It returns a
// Markdown section saying what was done, how long each step took, what
// was checked and the result, and an error when a check failed (the
// section says which).
func CheckNodeRestart(ctx context.Context, c *Cluster, o Options) (string, error) {
	r := &restartCheck{c: c, o: o, start: time.Now()}
	if o.Log == nil {
		r.o.Log = func(string, ...any) {}
	}
	err := r.run(ctx)
	return r.markdown(err), err
}

type restartCheck struct {
	c      *Cluster
	o      Options
	cs     *kubernetes.Clientset
	start  time.Time
	node   *Node // restarted
	peer   *Node
	times  RestartTimes
	steps  [][2]string // step, duration
	checks [][2]string // check, result
	failed bool
	gcNote string
	// addrSummary says what the address check counted.
	addrSummary string
}

func (r *restartCheck) step(name string, since time.Time) {
	r.steps = append(r.steps, [2]string{name, time.Since(since).Round(100 * time.Millisecond).String()})
}

func (r *restartCheck) check(name string, err error) {
	res := "ok"
	if err != nil {
		res = "**failed**: " + strings.ReplaceAll(err.Error(), "\n", " ")
		r.failed = true
	}
	r.o.Log("node restart: %s: %s", name, res)
	r.checks = append(r.checks, [2]string{name, res})
}

func (r *restartCheck) run(ctx context.Context) error {
	if len(r.c.Nodes) < 2 {
		return fmt.Errorf("the node-restart check needs 2 nodes, the cluster has %d", len(r.c.Nodes))
	}
	r.peer, r.node = r.c.Nodes[0], r.c.Nodes[len(r.c.Nodes)-1]
	var err error
	if r.cs, err = r.c.Client(); err != nil {
		return err
	}
	t := time.Now()
	if _, err := r.c.Kubectl(ctx, r.o.Bins, []byte(restartWorkload(r.peer.Name, r.node.Name)), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("create the workload: %w", err)
	}
	defer func() {
		// Best effort: the namespace goes with the cluster anyway.
		_, _ = r.c.Kubectl(context.WithoutCancel(ctx), r.o.Bins, nil, "delete", "namespace", restartNS, "--wait=false")
	}()
	if _, err := r.c.Kubectl(ctx, r.o.Bins, nil, "-n", restartNS, "wait", "--for=condition=Ready", "pod/peer", "pod/server-a", "pod/server-b", "pod/hostnet", "--timeout=300s"); err != nil {
		return fmt.Errorf("the workload did not become Ready before the restart: %w", err)
	}
	before, err := r.containerIDs(ctx)
	if err != nil {
		return err
	}
	r.step("workload Ready before the restart", t)

	restartAt := time.Now()
	r.times, err = r.c.RestartNode(ctx, r.node.Name, r.o)
	if err != nil {
		return fmt.Errorf("restart %s: %w", r.node.Name, err)
	}
	r.step("kill every process of "+r.node.Name, restartAt)
	r.steps[len(r.steps)-1][1] = r.times.Kill.Round(100 * time.Millisecond).String()
	r.steps = append(r.steps,
		[2]string{"drop the node's mounts, empty /run, flush nftables and kindnet routes, fresh cgroups", r.times.Clear.Round(100 * time.Millisecond).String()},
		[2]string{"kindnet agent started until READY=1", r.times.Agent.Round(100 * time.Millisecond).String()},
		[2]string{"containerd, kubelet, kube-proxy started", r.times.Others.Round(100 * time.Millisecond).String()})

	t = time.Now()
	r.check(r.node.Name+" Ready again (a status posted after the restart)", r.waitNodeReady(ctx, restartAt))
	r.step(r.node.Name+" Ready", t)
	t = time.Now()
	r.check("its pods restarted by kubelet (new containers) and Ready", r.waitPodsBack(ctx, before))
	r.step("pods back and Ready", t)
	if r.failed {
		return errors.New("the node or its pods did not come back")
	}

	t = time.Now()
	r.connectivity(ctx)
	r.step("connectivity checks", t)
	r.check("addresses of the pods on "+r.node.Name+" unique, and kindnet's IPAM records = its running sandboxes", r.addressesConsistent(ctx))
	if last := &r.checks[len(r.checks)-1]; last[1] == "ok" && r.addrSummary != "" {
		last[1] = "ok: " + r.addrSummary
	}
	r.gcNote = r.cniGCNote()
	if r.failed {
		return errors.New("node restart: a check failed")
	}
	return nil
}

// restartWorkload: two servers on the restarted node (server-a behind a
// dual-stack Service) and a host-network pod, a peer on the other node.
func restartWorkload(peer, node string) string {
	pod := func(name, nodeName, label string) string {
		return fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: %s}
spec:
  nodeName: %s
  terminationGracePeriodSeconds: 1
  containers:
  - name: netexec
    image: %s
    args: [netexec, --http-port=8080]
`, name, restartNS, label, nodeName, AgnhostImage)
	}
	return fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
`, restartNS) + pod("peer", peer, "peer") + pod("server-a", node, "server-a") + pod("server-b", node, "server-b") +
		// A host-network pod: a sandbox without CNI attachment, which the
		// address check must tell from a sandbox missing its record.
		fmt.Sprintf(`---
apiVersion: v1
kind: Pod
metadata:
  name: hostnet
  namespace: %s
spec:
  nodeName: %s
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: pause
    image: %s
    args: [pause]
`, restartNS, node, AgnhostImage) +
		fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata:
  name: server-a
  namespace: %s
spec:
  ipFamilyPolicy: RequireDualStack
  selector: {app: server-a}
  ports:
  - {port: 80, targetPort: 8080, protocol: TCP}
`, restartNS)
}

// containerIDs maps the pods of the restarted node to their container IDs.
func (r *restartCheck) containerIDs(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, name := range []string{"server-a", "server-b", "hostnet"} {
		p, err := r.cs.CoreV1().Pods(restartNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		if len(p.Status.ContainerStatuses) == 0 {
			return nil, fmt.Errorf("pod %s has no container status", name)
		}
		out[name] = p.Status.ContainerStatuses[0].ContainerID
	}
	return out, nil
}

// waitNodeReady waits for Ready=True in a status the restarted kubelet
// posted (heartbeat after the restart began): the condition set before the
// restart may still say True for a while.
func (r *restartCheck) waitNodeReady(ctx context.Context, since time.Time) error {
	return waitUntil(ctx, 5*time.Minute, r.node.Name+" Ready after its restart", func() (bool, error) {
		n, err := r.cs.CoreV1().Nodes().Get(ctx, r.node.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				fresh := !cond.LastHeartbeatTime.Time.Before(since.Truncate(time.Second))
				if cond.Status == corev1.ConditionTrue && fresh {
					return true, nil
				}
				return false, fmt.Errorf("condition Ready=%s (%s: %s), heartbeat %s", cond.Status, cond.Reason, cond.Message, cond.LastHeartbeatTime)
			}
		}
		return false, errors.New("no Ready condition")
	})
}

// waitPodsBack waits for the node's pods to run new containers (kubelet
// made new sandboxes and containers after the restart) and be Ready.
func (r *restartCheck) waitPodsBack(ctx context.Context, before map[string]string) error {
	return waitUntil(ctx, 5*time.Minute, "the pods of "+r.node.Name+" back", func() (bool, error) {
		now, err := r.containerIDs(ctx)
		if err != nil {
			return false, err
		}
		for name, id := range now {
			if id == before[name] || id == "" {
				return false, fmt.Errorf("pod %s still shows container %q", name, id)
			}
			p, err := r.cs.CoreV1().Pods(restartNS).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			if !podReady(p) {
				return false, fmt.Errorf("pod %s not Ready", name)
			}
		}
		return true, nil
	})
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// connectivity: peer (other node) to server-a over both families,
// server-a to peer over both families, peer to the Service's ClusterIPs.
func (r *restartCheck) connectivity(ctx context.Context) {
	get := func(name string) map[string]netip.Addr {
		p, err := r.cs.CoreV1().Pods(restartNS).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return nil
		}
		return byFamily(podIPStringsOf(p))
	}
	server, peer := get("server-a"), get("peer")
	svc, err := r.cs.CoreV1().Services(restartNS).Get(ctx, "server-a", metav1.GetOptions{})
	var svcIPs map[string]netip.Addr
	if err == nil {
		svcIPs = byFamily(svc.Spec.ClusterIPs)
	}
	connect := func(what, from string, ips map[string]netip.Addr, port uint16) {
		for _, fam := range []string{"IPv4", "IPv6"} {
			ip, ok := ips[fam]
			if !ok {
				r.check(what+", "+fam, fmt.Errorf("no %s address", fam))
				continue
			}
			dst := netip.AddrPortFrom(ip, port).String()
			err := retryEvery(ctx, 90*time.Second, 2*time.Second, func() error {
				_, err := r.c.Kubectl(ctx, r.o.Bins, nil, "-n", restartNS, "exec", from, "--", "/agnhost", "connect", "--timeout=3s", dst)
				return err
			})
			r.check(fmt.Sprintf("%s, %s (%s)", what, fam, dst), err)
		}
	}
	connect("pod on "+r.peer.Name+" to pod on the restarted "+r.node.Name, "peer", server, 8080)
	connect("pod on the restarted "+r.node.Name+" to pod on "+r.peer.Name, "server-a", peer, 8080)
	connect("pod on "+r.peer.Name+" to the Service of the pod on "+r.node.Name, "peer", svcIPs, 80)
}

func podIPStringsOf(p *corev1.Pod) []string {
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	return out
}

func byFamily(ips []string) map[string]netip.Addr {
	out := map[string]netip.Addr{}
	for _, s := range ips {
		if a, err := netip.ParseAddr(s); err == nil {
			if a.Is4() {
				out["IPv4"] = a
			} else {
				out["IPv6"] = a
			}
		}
	}
	return out
}

// retryEvery calls f every interval until it succeeds, d has passed or
// ctx ends; it returns f's last error.
func retryEvery(ctx context.Context, d, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(interval):
		}
	}
}

// ipamRecord is what the check reads of kindnet's IPAM state file
// (pkg/ipam: <runDir>/ipam/<network>/allocations.json).
type ipamRecord struct {
	ContainerID string       `json:"containerID"`
	IfName      string       `json:"ifname"`
	IPs         []netip.Addr `json:"ips"`
}

// ipamRecords reads the restarted node's IPAM store, from the machine's
// side of its /run.
func (r *restartCheck) ipamRecords() ([]ipamRecord, error) {
	files, _ := filepath.Glob(filepath.Join(r.node.own("run"), "kindnet", "ipam", "*", "allocations.json"))
	if len(files) != 1 {
		return nil, fmt.Errorf("want one IPAM state file under %s, found %v", filepath.Join(r.node.own("run"), "kindnet", "ipam"), files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		return nil, err
	}
	var st struct {
		Allocations []ipamRecord `json:"allocations"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("%s: %w", files[0], err)
	}
	return st.Allocations, nil
}

// runningSandboxes lists the IDs of the pod sandboxes running on the
// node with a pod network, from its containerd: containers labelled as
// sandboxes whose task is RUNNING, but for those of the host-network pods
// given (by UID).
func (r *restartCheck) runningSandboxes(ctx context.Context, hostNetworkUIDs []string) (map[string]bool, error) {
	ctr := filepath.Join(r.o.Bins.Containerd, "ctr")
	ids, err := r.node.run(ctx, ctr, "--address", nodeContainerdSock, "--namespace", "k8s.io",
		"containers", "ls", "-q", `labels."io.cri-containerd.kind"==sandbox`)
	if err != nil {
		return nil, fmt.Errorf("ctr containers ls: %w: %s", err, ids)
	}
	tasks, err := r.node.run(ctx, ctr, "--address", nodeContainerdSock, "--namespace", "k8s.io", "tasks", "ls")
	if err != nil {
		return nil, fmt.Errorf("ctr tasks ls: %w: %s", err, tasks)
	}
	running := map[string]bool{}
	for _, line := range strings.Split(tasks, "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[2] == "RUNNING" {
			running[f[0]] = true
		}
	}
	// Host-network pods' sandboxes have no CNI attachment, hence no
	// IPAM record: leave them out.
	hostNet := map[string]bool{}
	for _, uid := range hostNetworkUIDs {
		ids, err := r.node.run(ctx, ctr, "--address", nodeContainerdSock, "--namespace", "k8s.io",
			"containers", "ls", "-q", `labels."io.cri-containerd.kind"==sandbox,labels."io.kubernetes.pod.uid"==`+uid)
		if err != nil {
			return nil, fmt.Errorf("ctr containers ls: %w: %s", err, ids)
		}
		for _, id := range strings.Fields(ids) {
			hostNet[id] = true
		}
	}
	out := map[string]bool{}
	for _, id := range strings.Fields(ids) {
		if running[id] && !hostNet[id] {
			out[id] = true
		}
	}
	return out, nil
}

// addressesConsistent: no address is held twice — the IPs of the
// running, non-host-network pods on the node are unique; kindnet's IPAM
// store has exactly one record per running sandbox and none for anything
// else (no stale record, none missing); and its records hold exactly the
// pods' addresses. Retried for a while: pods of earlier tests may still
// be going away.
func (r *restartCheck) addressesConsistent(ctx context.Context) error {
	return waitUntil(ctx, 2*time.Minute, "the addresses on "+r.node.Name+" to be consistent", func() (bool, error) {
		recs, err := r.ipamRecords()
		if err != nil {
			return false, err
		}
		pods, err := r.cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + r.node.Name})
		if err != nil {
			return false, err
		}
		var hostNet []string
		for _, p := range pods.Items {
			if p.Spec.HostNetwork {
				hostNet = append(hostNet, string(p.UID))
			}
		}
		sandboxes, err := r.runningSandboxes(ctx, hostNet)
		if err != nil {
			return false, err
		}
		problems, nPodIPs := addressProblems(recs, sandboxes, pods.Items)
		if len(problems) > 0 {
			sort.Strings(problems)
			return false, errors.New(strings.Join(problems, "; "))
		}
		r.addrSummary = fmt.Sprintf("%d running sandboxes with a pod network, %d IPAM records, %d pod addresses, all distinct", len(sandboxes), len(recs), nPodIPs)
		return true, nil
	})
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// cniGCNote says whether the runtime called CNI GC on the node, from
// containerd's log (a GC call shows there only when it fails or at debug
// level; kindnet's plugin logs nothing). containerd 2.4's CRI plugin has no
// caller of CNI GC (its go-cni v1.1.14 exposes none), so the note says
// plainly when none was seen; the store having no stale record is checked
// by addressesConsistent whatever the runtime does.
func (r *restartCheck) cniGCNote() string {
	b, err := os.ReadFile(r.node.LogPath("containerd"))
	if err != nil {
		return "containerd's log unreadable: " + err.Error()
	}
	for _, line := range strings.Split(string(b), "\n") {
		l := strings.ToLower(line)
		if strings.Contains(l, "cni") && (strings.Contains(l, " gc") || strings.Contains(l, "garbage")) {
			return "containerd's log shows a CNI GC: `" + strings.TrimSpace(line) + "`"
		}
	}
	return "none seen in containerd's log, and none expected: containerd 2.4's CRI plugin has no caller of CNI GC " +
		"(neither its source nor go-cni v1.1.14, which it uses, calls libcni's GCNetworkList; the 1.1.0 conflist would allow it). " +
		"No stale record was left all the same (checked above): kindnet's IPAM store is on /run, which the reboot emptied, " +
		"and every record in it now belongs to a running sandbox"
}

// markdown renders the section for the conformance report.
func (r *restartCheck) markdown(err error) string {
	var b strings.Builder
	b.WriteString("## Node restart\n\n")
	name := "the last node"
	if r.node != nil {
		name = r.node.Name
	}
	fmt.Fprintf(&b, "%s restarted as a reboot does (test/cluster `RestartNode`): every process of the node SIGKILLed "+
		"(kindnet agent, containerd, kubelet, kube-proxy, shims, pod sandboxes and containers: %d processes), "+
		"every mount made on it since setup dropped and its `/run` emptied (the pod network namespaces with it; "+
		"%d host-side pod veths were still there after the namespaces went and had to be deleted), its nftables tables "+
		"and kindnet's routes flushed, fresh cgroups, "+
		"then the agent started until READY=1, then containerd, kubelet, kube-proxy. "+
		"Workload: two agnhost pods on %s (one behind a dual-stack Service) and a host-network one, one on the other node.\n\n",
		name, r.times.Killed, r.times.StaleVeths, name)
	if len(r.steps) > 0 {
		b.WriteString("| step | time |\n| --- | --- |\n")
		for _, s := range r.steps {
			fmt.Fprintf(&b, "| %s | %s |\n", s[0], s[1])
		}
		b.WriteString("\n")
	}
	if len(r.checks) > 0 {
		b.WriteString("| check | result |\n| --- | --- |\n")
		for _, c := range r.checks {
			fmt.Fprintf(&b, "| %s | %s |\n", strings.ReplaceAll(c[0], "|", "\\|"), strings.ReplaceAll(c[1], "|", "\\|"))
		}
		b.WriteString("\n")
	}
	if r.gcNote != "" {
		b.WriteString("CNI GC: " + r.gcNote + ".\n\n")
	}
	if err != nil {
		fmt.Fprintf(&b, "**Result: failed** after %s: %s\n", time.Since(r.start).Round(time.Second), strings.ReplaceAll(err.Error(), "\n", " "))
	} else {
		fmt.Fprintf(&b, "**Result: passed** in %s.\n", time.Since(r.start).Round(time.Second))
	}
	return b.String()
}

// addressProblems compares a node's running pods (those with a pod
// network), its running sandboxes and its IPAM records, and says what
// does not match: an address held by two pods or recorded twice, a record
// of no running sandbox (stale), a sandbox without a record, a pod
// address not recorded or a recorded address no pod has. It also returns
// the number of pod addresses.
func addressProblems(recs []ipamRecord, sandboxes map[string]bool, pods []corev1.Pod) ([]string, int) {
	podIPs := map[netip.Addr]string{}
	var problems []string
	for _, p := range pods {
		if p.Spec.HostNetwork || p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
			continue
		}
		for _, s := range podIPStringsOf(&p) {
			a, _ := netip.ParseAddr(s)
			if other, dup := podIPs[a]; dup {
				problems = append(problems, fmt.Sprintf("%s held by pods %s and %s/%s", a, other, p.Namespace, p.Name))
			}
			podIPs[a] = p.Namespace + "/" + p.Name
		}
	}
	recIPs := map[netip.Addr]string{}
	recIDs := map[string]bool{}
	for _, rec := range recs {
		recIDs[rec.ContainerID] = true
		if !sandboxes[rec.ContainerID] {
			problems = append(problems, fmt.Sprintf("stale IPAM record %s/%s %v (no running sandbox)", short(rec.ContainerID), rec.IfName, rec.IPs))
		}
		for _, a := range rec.IPs {
			if other, dup := recIPs[a]; dup {
				problems = append(problems, fmt.Sprintf("%s recorded for %s and %s", a, other, short(rec.ContainerID)))
			}
			recIPs[a] = short(rec.ContainerID)
		}
	}
	for id := range sandboxes {
		if !recIDs[id] {
			problems = append(problems, "running sandbox "+short(id)+" has no IPAM record")
		}
	}
	for a, who := range podIPs {
		if _, ok := recIPs[a]; !ok {
			problems = append(problems, fmt.Sprintf("pod %s's %s not in the IPAM store", who, a))
		}
	}
	for a, id := range recIPs {
		if _, ok := podIPs[a]; !ok {
			problems = append(problems, fmt.Sprintf("IPAM record %s holds %s, which no running pod has", id, a))
		}
	}
	return problems, len(podIPs)
}
