package cluster

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/test/lab"
)

// A node's mount and UTS namespaces show it its own directories at the
// standard paths, the sysctls kubelet wants, and its name as hostname —
// and the machine sees none of it: not the sysctl values, not a mount;
// Down removes everything.
func TestNodeNamespacesAreTheNodesOwnAndLeaveNothing(t *testing.T) {
	netnstest.RequireHostRoot(t, "node namespaces with mounts and cgroups")
	root := t.TempDir()
	id := newID()
	c := &Cluster{ID: id, Dir: filepath.Join(root, id)}
	n := &Node{Name: "node1", NS: id + "-node1", Dir: filepath.Join(c.Dir, "node1"), CgroupRoot: "/" + id + "-node1"}
	c.Nodes = []*Node{n}
	t.Cleanup(func() {
		if err := c.Down(); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	hostSysctl, _ := os.ReadFile("/proc/sys/kernel/panic")
	if err := lab.AddNS(n.NS); err != nil {
		t.Fatal(err)
	}
	if err := n.prepareDirs(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.own("kindnet-etc"), "config.yaml"), []byte("x: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(n.upper("usr-bin"), "kindnet-probe"), []byte("#!/bin/sh\necho installed\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := makeCgroupRoot(n.CgroupRoot); err != nil {
		t.Fatal(err)
	}
	// The namespace-pinning mounts the machine has now (this node's
	// network namespace among them): the node must hold no copy of them.
	// Mounts the machine makes later (other tests' namespaces, running in
	// parallel) reach the node through its slave propagation, and leave
	// with the machine's unmount: those are not copies that pin anything.
	listNsfs := "findmnt -rn -t nsfs -o TARGET || true" // findmnt exits 1 when none
	hostOut, err := exec.Command("/bin/sh", "-c", listNsfs).Output()
	if err != nil {
		t.Fatal(err)
	}
	pinned := strings.Fields(string(hostOut))
	if err := n.makeNamespaces(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	nodeOut, err := n.run(ctx, "/bin/sh", "-c", listNsfs)
	if err != nil {
		t.Fatalf("on the node, %s: %v: %s", listNsfs, err, nodeOut)
	}
	for _, m := range strings.Fields(nodeOut) {
		if slices.Contains(pinned, m) {
			t.Errorf("the node holds a copy of the machine's namespace mount %s (it would pin that namespace while the node lives)", m)
		}
	}
	for cmd, want := range map[string]string{
		"hostname":                           "node1",
		"cat /proc/sys/kernel/panic":         "10",
		"cat /proc/sys/vm/overcommit_memory": "1",
		"cat /etc/kindnet/config.yaml":       "x: 1",
		"kindnet-probe":                      "installed",
		// The machine's files still show through the overlays.
		"test -x /usr/bin/env && test -e /etc/passwd && echo yes":                  "yes",
		"touch /var/lib/kubelet/f /run/f /etc/cni/net.d/f /etc/newfile && echo ok": "ok",
	} {
		out, err := n.run(ctx, "/bin/sh", "-c", cmd)
		if err != nil || strings.TrimSpace(out) != want {
			t.Errorf("on the node, %s: got %q (%v), want %q", cmd, out, err, want)
		}
	}
	for _, p := range []string{filepath.Join(n.own("kubelet"), "f"), filepath.Join(n.own("run"), "f"), filepath.Join(n.own("cni-conf"), "f"), filepath.Join(n.upper("etc"), "newfile")} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("a file written on the node is not in its directory: %v", err)
		}
	}
	for _, p := range []string{"/etc/newfile", "/usr/bin/kindnet-probe", "/var/lib/kubelet", "/etc/kindnet"} {
		if _, err := os.Stat(p); err == nil {
			t.Errorf("%s appeared on the machine", p)
		}
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/panic"); string(now) != string(hostSysctl) {
		t.Errorf("the machine's kernel.panic changed: %q, was %q", now, hostSysctl)
	}
	if err := c.Down(); err != nil {
		t.Fatalf("down: %v", err)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), c.Dir) {
		t.Errorf("mounts left under %s:\n%s", c.Dir, mi)
	}
	if _, err := os.Stat(c.Dir); err == nil {
		t.Errorf("%s left behind", c.Dir)
	}
	if _, err := os.Stat("/run/netns/" + n.NS); err == nil {
		t.Errorf("network namespace %s left behind", n.NS)
	}
	mounts, _ := cgroupMounts()
	for _, m := range mounts {
		if _, err := os.Stat(filepath.Join(m, n.CgroupRoot)); err == nil {
			t.Errorf("cgroup %s left in %s", n.CgroupRoot, m)
		}
	}
}

// The control-plane node comes first among all nodes and only its kubelet
// registers the control-plane taint: workers take every workload.
func TestOnlyTheControlPlaneNodeIsTainted(t *testing.T) {
	cp := &Node{Name: ControlPlaneNodeName, ControlPlane: true, CgroupRoot: "/x-control-plane"}
	w := &Node{Name: "node1", CgroupRoot: "/x-node1"}
	c := &Cluster{ControlPlaneNode: cp, Nodes: []*Node{w}}
	if all := c.AllNodes(); len(all) != 2 || all[0] != cp || all[1] != w {
		t.Fatalf("AllNodes = %v, want the control-plane node then node1", all)
	}
	if c.Node(ControlPlaneNodeName) != cp {
		t.Errorf("Node(%q) does not find the control-plane node", ControlPlaneNodeName)
	}
	taint := "registerWithTaints:\n- {key: " + ControlPlaneTaint + ", effect: NoSchedule}\n"
	if got := kubeletConfig(cp); !strings.HasSuffix(got, taint) {
		t.Errorf("control-plane kubelet config lacks the taint:\n%s", got)
	}
	if got := kubeletConfig(w); strings.Contains(got, "registerWithTaints") {
		t.Errorf("worker kubelet config is tainted:\n%s", got)
	}
	if all := (&Cluster{Nodes: []*Node{w}}).AllNodes(); len(all) != 1 {
		t.Errorf("a cluster without a control-plane node: AllNodes = %v", all)
	}
}
