// Package kubeadm runs scripts/kubeadm-init.sh and kubeadm-join.sh for
// real: the kindnet package, containerd 2, kubelet and kubeadm 1.37 on two
// throwaway systemd machines (package test/sandbox) on a bridge of their
// own, a control plane made by `kubeadm init` from the images `kubeadm
// config images list` names (built locally by test/cluster/images), a
// worker joined with what the init script hands over, and pods on both
// reaching each other over kindnet's routes.
//
// Everything runs in namespaces the test creates: the machines' network,
// mount, PID, UTS, IPC and cgroup namespaces, and one network namespace
// for the bridge. The host's network, files, sysctls and cgroups are never
// changed; the test checks nothing is left behind.
package kubeadm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/cluster/images"
	"github.com/kindnet-dev/kindnet/test/sandbox"
)

const podSubnet = "10.244.0.0/16"

// podManifest: an agnhost HTTP server on the worker and a client on the
// control-plane node (tolerating its taint), each pinned to its node.
func podManifest(cp, worker string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: server, namespace: default}
spec:
  nodeName: %[2]s
  containers:
  - name: agnhost
    image: %[3]s
    args: [netexec, --http-port=8080]
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: default}
spec:
  nodeName: %[1]s
  tolerations: [{operator: Exists}]
  containers:
  - name: agnhost
    image: %[3]s
    args: [pause]
`, cp, worker, images.AgnhostRef)
}

func TestKubeadmInitAndJoinForReal(t *testing.T) {
	netnstest.RequireHostRoot(t, "boots machines with systemd, containerd and kubeadm")
	for _, p := range []string{"/lib/systemd/systemd", "/usr/sbin/runc", "/usr/lib/cni/loopback"} {
		if _, err := os.Stat(p); err != nil {
			skipOrFail(t, fmt.Sprintf("%s is missing: `make deps` installs it (systemd, runc, containernetworking-plugins)", p))
		}
	}
	tl := tools{kube: toolDir(t, "kubernetes"), containerd: toolDir(t, "containerd2")}
	start := time.Now()
	var brNS string
	t.Cleanup(func() { checkNothingLeft(t, brNS) }) // runs last

	// The package and the images, in parallel.
	imgDir := t.TempDir()
	var (
		deb      string
		archives []images.Archive
		imgErr   error
		wg       sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		archives, imgErr = images.Build(ctx, images.Options{Out: imgDir, Root: repoRoot, Kubeadm: true})
	}()
	deb = buildDeb(t)
	wg.Wait()
	if imgErr != nil {
		if strings.Contains(imgErr.Error(), "is not built") || strings.Contains(imgErr.Error(), "make deps") {
			skipOrFail(t, imgErr.Error())
		}
		t.Fatal(imgErr)
	}
	var needed []images.Archive
	for _, a := range archives {
		switch a.Ref {
		case images.PauseRef, images.CoreDNSRef, images.AgnhostRef, images.KubeAPIServerRef, images.KubeControllerManagerRef,
			images.KubeSchedulerRef, images.KubeProxyRef, images.EtcdRef:
			needed = append(needed, a)
		}
	}
	t.Logf("package and %d images ready after %s", len(needed), time.Since(start).Round(time.Second))

	layout, cgroupV1 := sandbox.Unified, false
	if st, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(st), " - cgroup cgroup ") {
		// Controllers bound to cgroup v1: kubelet and runc need them there.
		layout, cgroupV1 = sandbox.Hybrid, true
	}

	// The bridge, in a namespace of its own; 192.168.77.254 is the machines'
	// default gateway, which forwards nothing. The nodes' addresses must lie
	// outside the service range (kubeadm's default 10.96.0.0/12): kube-proxy
	// drops every new connection to an address in it that is no Service
	// ("Drop traffic to unallocated ClusterIPs"), the API server's too.
	br := netnstest.New(t)
	brNS = br.Name
	for _, argv := range [][]string{
		{"ip", "-n", br.Name, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", br.Name, "addr", "add", "192.168.77.254/24", "dev", "br0"},
		{"ip", "-n", br.Name, "link", "set", "br0", "up"},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", argv, err, out)
		}
	}
	const cpName, workerName = "kubeadm-cp", "kubeadm-worker"
	hosts := "127.0.0.1 localhost\n192.168.77.1 " + cpName + "\n192.168.77.2 " + workerName + "\n"
	cp := newMachine(t, cpName, "192.168.77.1", br.Name, layout, tl, imgDir, needed, hosts)
	worker := newMachine(t, workerName, "192.168.77.2", br.Name, layout, tl, imgDir, needed, hosts)
	t.Logf("machines up after %s", time.Since(start).Round(time.Second))

	cp.CopyIn(deb, "/root/kindnet.deb", 0o644)
	worker.CopyIn(deb, "/root/kindnet.deb", 0o644)
	cp.WriteFile("/root/kubeadm-extra.yaml", kubeadmExtraConfig(cgroupV1), 0o644)
	initArgs := []string{"--pod-subnet", podSubnet, "--package", "/root/kindnet.deb", "--kubernetes-version", images.KubernetesVersion,
		"--kubeadm-config", "/root/kubeadm-extra.yaml", "--", "--ignore-preflight-errors=" + strings.Join(ignoredPreflight, ",")}
	out := cp.script(t, 6*time.Minute, "kubeadm-init.sh", initArgs...)
	t.Logf("kubeadm-init.sh done after %s", time.Since(start).Round(time.Second))

	t.Run("init: kindnet up before kubelet, join token short-lived and kept out of the output", func(t *testing.T) {
		kindnetUp := monotonic(t, cp, "kindnet.service", "ActiveEnterTimestampMonotonic")
		kubeletStart := monotonic(t, cp, "kubelet.service", "ExecMainStartTimestampMonotonic")
		if kindnetUp == 0 || kubeletStart == 0 || kindnetUp > kubeletStart {
			t.Errorf("kindnet.service active at %d µs, kubelet started at %d µs: want kindnet first", kindnetUp, kubeletStart)
		}
		checkJoinFile(t, cp, out)
	})

	// The hand-over: the join file, copied root-only as an admin would.
	joinFile, err := os.ReadFile(cp.Path("/etc/kubernetes/kindnet-join.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	worker.WriteFile("/root/kindnet-join.yaml", string(joinFile), 0o600)
	joinArgs := []string{"--pod-subnet", podSubnet, "--package", "/root/kindnet.deb", "--join-config", "/root/kindnet-join.yaml",
		"--", "--ignore-preflight-errors=" + strings.Join(ignoredPreflight, ",")}
	joinOut := worker.script(t, 5*time.Minute, "kubeadm-join.sh", joinArgs...)
	if strings.Contains(joinOut, tokenIn(t, string(joinFile))) {
		t.Errorf("kubeadm-join.sh printed the bootstrap token:\n%s", joinOut)
	}
	t.Logf("kubeadm-join.sh done after %s", time.Since(start).Round(time.Second))

	t.Cleanup(func() {
		if t.Failed() {
			cp.dump(t)
			worker.dump(t)
		}
	})
	sandbox.WaitFor(t, "both nodes Ready", 4*time.Minute, func() (bool, string) {
		o, err := cp.kubectl("get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type=="Ready")].status} {end}`)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(o, cpName+"=True") && strings.Contains(o, workerName+"=True"), o
	})
	t.Logf("nodes Ready after %s", time.Since(start).Round(time.Second))

	t.Run("a pod on the worker answers a pod on the control-plane node", func(t *testing.T) {
		cp.WriteFile("/root/pods.yaml", podManifest(cpName, workerName), 0o644)
		if _, err := cp.kubectl("apply", "-f", "/root/pods.yaml"); err != nil {
			t.Fatal(err)
		}
		var serverIP string
		sandbox.WaitFor(t, "both pods running with an address", 3*time.Minute, func() (bool, string) {
			o, err := cp.kubectl("get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name}={.status.phase}/{.status.podIP}/{.spec.nodeName} {end}`)
			if err != nil {
				return false, err.Error()
			}
			for _, f := range strings.Fields(o) {
				if rest, ok := strings.CutPrefix(f, "server=Running/"); ok {
					serverIP, _, _ = strings.Cut(rest, "/")
				}
			}
			return serverIP != "" && strings.Contains(o, "client=Running/"), o
		})
		var got string
		sandbox.WaitFor(t, "the server's answer", time.Minute, func() (bool, string) {
			o, err := cp.kubectl("exec", "client", "--", "curl", "-sS", "--max-time", "5", "http://"+serverIP+":8080/hostname")
			got = strings.TrimSpace(o)
			if err != nil {
				return false, err.Error()
			}
			return got == "server", got
		})
		routes := cp.MustRun("ip", "-4", "route", "show", "proto", "kindnet")
		if !strings.Contains(routes, "via 192.168.77.2 dev eth0") {
			t.Errorf("the control-plane node has no kindnet route via the worker:\n%s", routes)
		}
	})

	t.Run("a second run of each script changes nothing", func(t *testing.T) {
		before := map[*machine]string{cp: state(t, cp), worker: state(t, worker)}
		tokensBefore, _ := cp.kubectl("-n", "kube-system", "get", "secrets", "--field-selector", "type=bootstrap.kubernetes.io/token", "-o", "name")
		again := cp.script(t, 3*time.Minute, "kubeadm-init.sh", initArgs...)
		for _, want := range []string{"kindnet 1.0.0-1 is already installed", "/etc/kindnet/config.yaml is up to date",
			"the control plane is initialized; not running kubeadm init", "unchanged", "/etc/kubernetes/kindnet-join.yaml is up to date"} {
			if !strings.Contains(again, want) {
				t.Errorf("second kubeadm-init.sh run does not say %q:\n%s", want, again)
			}
		}
		againJoin := worker.script(t, 2*time.Minute, "kubeadm-join.sh", joinArgs...)
		if !strings.Contains(againJoin, "this node has joined; not running kubeadm join") {
			t.Errorf("second kubeadm-join.sh run:\n%s", againJoin)
		}
		for m, b := range before {
			if now := state(t, m); now != b {
				t.Errorf("%s changed across a second run:\nbefore:\n%s\nafter:\n%s", m.name, b, now)
			}
		}
		if tokensNow, _ := cp.kubectl("-n", "kube-system", "get", "secrets", "--field-selector", "type=bootstrap.kubernetes.io/token", "-o", "name"); tokensNow != tokensBefore {
			t.Errorf("bootstrap tokens changed: %q -> %q", tokensBefore, tokensNow)
		}
	})
	t.Logf("whole run: %s", time.Since(start).Round(time.Second))
}

func monotonic(t *testing.T, m *machine, unit, prop string) uint64 {
	t.Helper()
	v, _ := strconv.ParseUint(m.UnitProps(unit, prop)[prop], 10, 64)
	return v
}

var tokenLine = `    token: "`

func tokenIn(t *testing.T, joinFile string) string {
	t.Helper()
	_, rest, ok := strings.Cut(joinFile, tokenLine)
	tok, _, _ := strings.Cut(rest, `"`)
	if !ok || len(tok) != 23 {
		t.Fatalf("no bootstrap token in the join file:\n%s", joinFile)
	}
	return tok
}

// checkJoinFile: the join file is root-only, its token is a join token
// that expires within the TTL the script gives it (1h), and the token is
// in neither the script's output nor a process's command line.
func checkJoinFile(t *testing.T, cp *machine, out string) {
	t.Helper()
	fi, err := os.Stat(cp.Path("/etc/kubernetes/kindnet-join.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("join file mode %v, want 0600", fi.Mode().Perm())
	}
	b, _ := os.ReadFile(cp.Path("/etc/kubernetes/kindnet-join.yaml"))
	tok := tokenIn(t, string(b))
	if strings.Contains(out, tok) || strings.Contains(out, tok[7:]) {
		t.Errorf("kubeadm-init.sh printed the bootstrap token:\n%s", out)
	}
	list := cp.MustRun("kubeadm", "token", "list", "-o", `jsonpath={.token} {.expires} {.usages} {.groups}{"\n"}`)
	var line string
	for _, l := range strings.Split(list, "\n") {
		if strings.HasPrefix(l, tok+" ") {
			line = l
		}
	}
	f := strings.Fields(line)
	if len(f) < 4 {
		t.Fatalf("the join file's token is not listed by kubeadm token list:\n%s", list)
	}
	exp, err := time.Parse(time.RFC3339, f[1])
	if err != nil || time.Until(exp) > time.Hour+time.Minute || time.Until(exp) < 30*time.Minute {
		t.Errorf("token expires at %s (%v): want within the 1h TTL", f[1], err)
	}
	if !strings.Contains(line, "authentication") || !strings.Contains(line, "signing") || !strings.Contains(line, "system:bootstrappers:kubeadm:default-node-token") {
		t.Errorf("token usages/groups: %s", line)
	}
	if ps := cp.MustRun("sh", "-c", "cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\\0' ' '"); strings.Contains(ps, tok[7:]) {
		t.Errorf("a process has the token's secret on its command line")
	}
}

// state is what a second run must not change on a machine: the agent and
// kubelet processes, the files the scripts write, the package version.
func state(t *testing.T, m *machine) string {
	t.Helper()
	var b strings.Builder
	for _, u := range []string{"kindnet.service", "kubelet.service", "containerd.service"} {
		p := m.UnitProps(u, "MainPID", "NRestarts", "ActiveState")
		fmt.Fprintf(&b, "%s %s pid=%s restarts=%s\n", u, p["ActiveState"], p["MainPID"], p["NRestarts"])
	}
	for _, f := range []string{"/etc/kindnet/config.yaml", "/etc/kubernetes/kindnet-join.yaml", "/etc/kubernetes/admin.conf",
		"/etc/kubernetes/kubelet.conf", "/var/lib/kubelet/config.yaml"} {
		data, err := os.ReadFile(m.Path(f))
		if err != nil {
			fmt.Fprintf(&b, "%s: absent\n", f)
			continue
		}
		sum := sha256.Sum256(data)
		fi, _ := os.Stat(m.Path(f))
		fmt.Fprintf(&b, "%s: %s %v %s\n", f, hex.EncodeToString(sum[:8]), fi.Mode(), fi.ModTime().Format(time.RFC3339Nano))
	}
	if _, err := os.Stat(m.Path("/etc/kindnet/config.yaml.before-kubeadm-init.sh")); err == nil {
		b.WriteString("a config.yaml.before-kubeadm-init.sh backup exists\n")
	}
	b.WriteString(m.MustRun("dpkg-query", "-W", "-f", "${Status} ${Version}\n", "kindnet"))
	return b.String()
}

// checkNothingLeft: no mount of the test's (its temp dirs, the bridge's
// namespace) is left on the host, nor the bridge's namespace. The
// machines' cgroups are checked as they are removed (package sandbox).
// Other tests may run beside this one: only the test's own names count.
func checkNothingLeft(t *testing.T, brNS string) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	ours := filepath.Join(os.TempDir(), strings.ReplaceAll(t.Name(), "/", "_"))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (strings.HasPrefix(f[4], ours) || f[4] == "/run/netns/"+brNS) {
			t.Errorf("mount left on the host: %s", f[4])
		}
	}
	if _, err := os.Stat("/run/netns/" + brNS); err == nil {
		t.Errorf("network namespace %s left on the host", brNS)
	}
}
