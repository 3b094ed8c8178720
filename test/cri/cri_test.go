// Package cri runs kindnet's CNI plugin under real container runtimes:
// Debian's containerd 1.6 (with a 1.0.0 conflist) and containerd 2.4.2
// built from source (with a 1.1.0 conflist, so it asks STATUS), each
// started with a config of its own inside a lab node's network namespace
// and driven through CRI with crictl, as kubelet would drive it; and
// `kindnet status` showing what containerd reports about the network.
//
// Root, state, sockets and pod network namespaces live under a temporary
// directory; the pause image is built here from a tiny static binary
// (written by test/cluster/images) and imported with ctr (no registry is needed). Everything is removed at the
// end, also on failure. Without root, or without the runtimes (make deps,
// make tools), the tests skip saying why.
package cri

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
	"github.com/kindnet-dev/kindnet/test/cluster/images"
	"github.com/kindnet-dev/kindnet/test/lab"
)

var (
	binDir       string // kindnet, kindnet-cni (the plugin runtimes run), kindnet-lab, pause, built once
	imageTar     string // the pause image
	crictlBin    string
	containerd2D string // directory of the containerd 2.x binaries
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	if !netnstest.IsHostRoot() {
		fmt.Println("cri: not the host's root: the runtime tests skip (run `sudo make test`)")
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "kindnet-cri-bin-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(dir)
	binDir = dir
	for out, pkg := range map[string]string{"kindnet": "./cmd/kindnet", "kindnet-cni": "./cmd/kindnet-cni", "kindnet-lab": "./test/lab/kindnet-lab", "pause": "./test/cri/pause"} {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = "../.."
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			fmt.Printf("build %s: %v\n%s", pkg, err, b)
			return 1
		}
	}
	imageTar = filepath.Join(dir, "pause.tar")
	if err := writePauseImage(filepath.Join(dir, "pause"), imageTar); err != nil {
		fmt.Println("pause image:", err)
		return 1
	}
	crictlBin = toolPath("crictl")
	containerd2D = toolPath("containerd2")
	return m.Run()
}

// pauseImage is the name the image is imported under; the runtimes'
// configs name it as their sandbox image.
const pauseImage = "kindnet.test/pause:1"

// writePauseImage writes the pause image as an OCI archive `ctr images
// import` reads: one layer with the static pause binary as /pause.
func writePauseImage(pauseBin, out string) error {
	l := images.NewLayer()
	if err := l.HostFile("/pause", pauseBin, 0o755); err != nil {
		return err
	}
	return images.WriteArchive(images.Image{Ref: pauseImage, Layer: l, Entrypoint: []string{"/pause"}}, out)
}

// toolPath asks scripts/tools.sh where a cached tool lives ("" if that
// fails).
func toolPath(name string) string {
	out, err := exec.Command("../../scripts/tools.sh", "path", name).Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

func requireTools(t *testing.T, f flavour) {
	t.Helper()
	netnstest.RequireHostRoot(t, "runs containerd and runc")
	need := []string{f.containerd, f.ctr, crictlBin, "/usr/lib/cni/loopback"}
	if f.shim != "" {
		need = append(need, f.shim)
	}
	for _, p := range need {
		if _, err := os.Stat(p); p == "" || err != nil {
			t.Skipf("%s is missing (%v): `make deps` installs containerd, runc and the loopback plugin, `make tools` builds containerd 2.x and crictl", p, err)
		}
	}
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc is missing: `make deps` installs it")
	}
}

// Each runtime runs a pod sandbox wired by kindnet through the conflist
// the node's agent wrote: the pod gets its addresses from kindnet, is
// reachable from another node over IPv4 and IPv6, its hostPort works from
// there; stopping and removing it releases its addresses and removes its
// links and rules (containerd 2.x sends DEL twice: fine). With CNI 1.1.0,
// the runtime's NetworkReady follows kindnet's STATUS.
func TestContainerdRunsPodsWiredByKindnet(t *testing.T) {
	flavours := []flavour{containerd16(), containerd2(containerd2D)}
	for _, f := range flavours {
		t.Run(f.name, func(t *testing.T) {
			requireTools(t, f)
			l := newLab(t, f)
			n1, n2 := l.Nodes[0], l.Nodes[1]
			d := startContainerd(t, f, n1, filepath.Join(binDir, "kindnet-cni"))
			d.importImage(imageTar)

			if ok, msg, err := d.networkReady(); err != nil || !ok {
				t.Fatalf("NetworkReady before any pod: %v %s %v", ok, msg, err)
			}
			id, err := d.runPod("web", 30080, lab.WhoamiPort)
			if err != nil {
				t.Fatalf("run pod: %v", err)
			}
			sb, err := d.inspect(id)
			if err != nil {
				t.Fatal(err)
			}
			v4, v6 := podAddrs(t, sb, n1)
			t.Logf("pod %s: %s %s (pid %d)", id[:12], v4, v6, sb.PID)
			store := ipam.New(filepath.Join(n1.Dir, "run", "ipam"), "kindnet")
			if all, err := store.List(); err != nil || len(all) != 1 || all[0].ContainerID != id {
				t.Errorf("IPAM store: %+v %v, want the sandbox %s", all, err, id)
			}

			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			for _, a := range []netip.Addr{v4, v6} {
				if err := retry(func() error { return lab.Ping(ctx, n2.NS, a) }); err != nil {
					t.Errorf("node2 cannot reach the pod at %s: %v", a, err)
				}
			}
			stopServer := serveInPod(t, sb.PID)
			for _, a := range []netip.Addr{n1.IPv4, n1.IPv6} {
				addr := netip.AddrPortFrom(a, 30080).String()
				var out string
				err := retry(func() (err error) {
					out, err = lab.Exec(ctx, n2.NS, filepath.Join(binDir, "kindnet-lab"), "fetch", "--timeout", "2s", addr)
					return err
				})
				if err != nil {
					t.Errorf("hostPort %s from node2: %v", addr, err)
				} else if seen := strings.TrimSpace(out); seen != n2.IPv4.String() && seen != n2.IPv6.String() {
					t.Errorf("hostPort %s from node2: the pod saw %s", addr, seen)
				}
			}
			stopServer()

			if f.status {
				checkNetworkReadyFollowsStatus(t, d, store)
			} else if ok, msg, _ := d.networkReady(); !ok {
				t.Errorf("NetworkReady false with a 1.0.0 conflist: %s", msg)
			}

			if _, err := d.crictl("stopp", id); err != nil {
				t.Fatal(err)
			}
			if _, err := d.crictl("rmp", id); err != nil {
				t.Fatal(err)
			}
			if all, err := store.List(); err != nil || len(all) != 0 {
				t.Errorf("addresses not released after the pod was removed: %+v %v", all, err)
			}
			links, _ := lab.Exec(ctx, n1.NS, "ip", "-o", "link", "show")
			if strings.Contains(links, "kindnet:kindnet/") || strings.Contains(links, ": kn") {
				t.Errorf("pod links left on node1:\n%s", links)
			}
			rules, _ := lab.Exec(ctx, n1.NS, "nft", "list", "table", "inet", "kindnet_hostport")
			if strings.Contains(rules, "comment") {
				t.Errorf("hostPort rules left:\n%s", rules)
			}
			if err := lab.Ping(ctx, n2.NS, v4); err == nil {
				t.Errorf("%s still answers after the pod was removed", v4)
			}
		})
	}
}

// checkNetworkReadyFollowsStatus makes the plugin unable to allocate (a
// file where its store's directory should be) and expects containerd's
// NetworkReady to turn False with kindnet's message, then True again once
// the store is back.
func checkNetworkReadyFollowsStatus(t *testing.T, d *daemon, store *ipam.Store) {
	t.Helper()
	away := store.Dir + ".away"
	if err := os.Rename(store.Dir, away); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.Dir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	restore := func() {
		_ = os.Remove(store.Dir)
		_ = os.Rename(away, store.Dir)
	}
	defer restore()
	var msg string
	err := eventually(20*time.Second, func() error {
		ok, m, err := d.networkReady()
		msg = m
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("NetworkReady still true")
		}
		return nil
	})
	if err != nil || !strings.Contains(msg, "kindnet cannot allocate pod addresses") {
		t.Errorf("with the store unusable: %v; NetworkReady message %q, want kindnet's", err, msg)
	} else {
		t.Logf("NetworkReady=false: %s", msg)
	}
	restore()
	if err := eventually(20*time.Second, func() error {
		ok, m, err := d.networkReady()
		if err == nil && !ok {
			err = fmt.Errorf("NetworkReady false: %s", m)
		}
		return err
	}); err != nil {
		t.Errorf("after the store is back: %v", err)
	}
}

// newLab builds a two-node lab whose agents write the conflist version
// the runtime takes, with extra agent flags.
func newLab(t *testing.T, f flavour, agentArgs ...string) *lab.Lab {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Nodes: 2, Kindnet: filepath.Join(binDir, "kindnet"), LabTool: filepath.Join(binDir, "kindnet-lab"),
		CNIPlugin: "ptp", AgentArgs: append([]string{"--cni-spec-version", f.cniVersion}, agentArgs...), Log: t.Logf})
	if err != nil {
		t.Fatalf("lab up: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	conf, err := os.ReadFile(l.Nodes[0].CNIConfPath())
	if err != nil || !strings.Contains(string(conf), `"cniVersion": "`+f.cniVersion+`"`) || !strings.Contains(string(conf), `"type": "kindnet"`) {
		t.Fatalf("agent-written conflist: %v\n%s", err, conf)
	}
	return l
}

// podAddrs checks the sandbox has one address of each family from the
// node's ranges.
func podAddrs(t *testing.T, sb sandbox, n *lab.Node) (v4, v6 netip.Addr) {
	t.Helper()
	for _, s := range sb.IPs {
		a, err := netip.ParseAddr(s)
		switch {
		case err != nil:
			t.Fatalf("sandbox address %q: %v", s, err)
		case a.Is4() && n.PodCIDR4.Contains(a):
			v4 = a
		case a.Is6() && n.PodCIDR6.Contains(a):
			v6 = a
		}
	}
	if !v4.IsValid() || !v6.IsValid() {
		t.Fatalf("sandbox addresses %v, want one in %s and one in %s", sb.IPs, n.PodCIDR4, n.PodCIDR6)
	}
	return v4, v6
}

// serveInPod runs the whoami server inside the pod's network namespace
// (entered through its pause process); the returned func stops it by PID.
func serveInPod(t *testing.T, pid int) func() {
	t.Helper()
	cmd := exec.Command("nsenter", fmt.Sprintf("--net=/proc/%d/ns/net", pid), "--",
		filepath.Join(binDir, "kindnet-lab"), "whoami", "--listen", fmt.Sprintf("[::]:%d", lab.WhoamiPort))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Cleanup(stop)
	return stop
}

// retry gives f 20 seconds to succeed: the first packets to a new pod may
// wait for its links to come up.
func retry(f func() error) error { return eventually(20*time.Second, f) }

func eventually(d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}
