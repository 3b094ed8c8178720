// Package emul proves the foreign-architecture builds of kindnet, not only
// builds them: arm64 and armhf binaries run under Debian's user-mode
// emulator (qemu-user-static, fetched into the tool cache by
// scripts/tools.sh; never installed, never a binfmt_misc entry) in the
// network-namespace lab of package test/lab.
//
// For each architecture: a two-node lab whose agents are the foreign build
// following the static nodes file; their routes and CNI config checked as
// for amd64; the masquerade step, which qemu-user cannot run (it refuses
// netlink sockets of any protocol but NETLINK_ROUTE, KOBJECT_UEVENT and
// AUDIT with EPROTONOSUPPORT, so nftables' NETLINK_NETFILTER socket never
// opens), reported as a clear error while the agent keeps running; one pod
// added, pinged and deleted through the foreign plugin; and `kindnet
// status` and `kindnet version` of that build.
//
// The pod uses bridge mode: ptp mode's ADD installs a static neighbour
// (RTM_NEWNEIGH) for the gateway, and qemu-user's NETLINK_ROUTE translator
// handles only link, address and route messages, so that step fails under
// emulation with "add neighbour ...: operation not supported" (measured
// with qemu-user-static 7.2). Everything else of ptp mode is the same code.
//
// The agent and the plugin are each a file "kindnet" in a temporary
// directory of its own: a two-line script exec'ing the emulator on the foreign binary, so the
// lab, `ip netns exec` and libcni run it as they run the native one (same
// PID: the script execs).
package emul

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/pkg/routes"
	"github.com/kindnet-dev/kindnet/pkg/status"
	"github.com/kindnet-dev/kindnet/test/lab"
)

var repoRoot = func() string {
	wd, err := os.Getwd()
	if err != nil {
		panic(err)
	}
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}()

// arches are the emulated architectures: Go's name, GOARM, the emulator
// and what `kindnet version` says.
var arches = []struct {
	name, goarch, goarm, qemu string
}{
	{"arm64", "arm64", "", "qemu-aarch64-static"},
	{"armhf", "arm", "7", "qemu-arm-static"},
}

// foreignCommands are the programs built for the foreign architecture:
// the agent (and CLI) and the CNI plugin, each run through its own
// emulator wrapper.
var foreignCommands = []struct{ dir, pkg string }{
	{"agent", "./cmd/kindnet"},
	{"cni", "./cmd/kindnet-cni"},
}

// skipOrFail skips outside CI and fails in CI (CI=true), where make deps
// and make tools must have provided everything.
func skipOrFail(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// qemuDir is where scripts/tools.sh keeps the emulators.
func qemuDir(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "scripts", "tools.sh"), "path", "qemu").Output()
	if err != nil {
		skipOrFail(t, fmt.Sprintf("scripts/tools.sh path qemu: %v: run `make tools`", err))
	}
	return strings.TrimSpace(string(out))
}

func TestForeignArchitecturesUnderEmulation(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to build the network-namespace lab: run `sudo make test`")
	}
	qdir := qemuDir(t)
	// The lab tool (libcni driver, namespaces) is native: only kindnet
	// itself is foreign.
	native, err := lab.BuildCommands(repoRoot, map[string]string{"kindnet-lab": "./test/lab/kindnet-lab"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(native) })
	for _, a := range arches {
		t.Run(a.name, func(t *testing.T) {
			emu := filepath.Join(qdir, a.qemu)
			if _, err := os.Stat(emu); err != nil {
				skipOrFail(t, fmt.Sprintf("%v: run `make tools` (scripts/tools.sh ensure qemu)", err))
			}
			env := []string{"GOOS=linux", "GOARCH=" + a.goarch}
			if a.goarm != "" {
				env = append(env, "GOARM="+a.goarm)
			}
			cmds := map[string]string{}
			for _, c := range foreignCommands {
				cmds[c.dir+"."+a.name] = c.pkg
			}
			foreign, err := lab.BuildCommandsEnv(repoRoot, env, cmds)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(foreign) })
			// Each program behind a wrapper named "kindnet" in a directory
			// of its own: the agent's, and the CNI bin dir the conflist
			// names the plugin in.
			wrappers := map[string]string{}
			for _, c := range foreignCommands {
				d := filepath.Join(foreign, c.dir)
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
				w := filepath.Join(d, "kindnet")
				script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", emu, filepath.Join(foreign, c.dir+"."+a.name))
				if err := os.WriteFile(w, []byte(script), 0o755); err != nil {
					t.Fatal(err)
				}
				wrappers[c.dir] = w
			}
			checkArch(t, wrappers["agent"], a.goarch)
			labUnderEmulation(t, wrappers["agent"], filepath.Dir(wrappers["cni"]), filepath.Join(native, "kindnet-lab"))
		})
	}
}

// checkArch: `kindnet version` of the foreign build names its architecture
// (so the emulator, not the host, ran it).
func checkArch(t *testing.T, kindnet, goarch string) {
	t.Helper()
	out, err := exec.Command(kindnet, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("kindnet version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "linux/"+goarch+")") {
		t.Errorf("kindnet version = %q, want it to name linux/%s", out, goarch)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
}

func labUnderEmulation(t *testing.T, kindnet, cniBinDir, labTool string) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	l, err := lab.Up(ctx, lab.Options{Nodes: 2, PodsPerNode: 0, Kindnet: kindnet, CNIBinDir: cniBinDir, LabTool: labTool, CNIPlugin: "bridge", Log: t.Logf})
	if err != nil {
		t.Fatalf("lab up with the emulated agent: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range l.Nodes {
				if b, err := os.ReadFile(n.LogPath()); err == nil {
					t.Logf("---- agent log of %s ----\n%s", n.Name, b)
				}
			}
		}
		if err := l.Down(); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	n1, n2 := l.Nodes[0], l.Nodes[1]

	// Routes: n1 reaches n2's pod CIDRs via n2's addresses, tagged proto kindnet.
	waitRoutes(ctx, t, n1, n2)

	// The CNI config the foreign agent wrote names the kindnet plugin and n1's ranges.
	conf, err := os.ReadFile(n1.CNIConfPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"type": "kindnet"`, n1.PodCIDR4.String(), n1.PodCIDR6.String()} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("CNI config of %s lacks %s:\n%s", n1.Name, want, conf)
		}
	}

	// One pod through the foreign plugin, reachable from its node, then gone.
	p, err := l.AddPod(ctx, n1, "p1")
	if err != nil {
		t.Fatalf("CNI ADD through the emulated plugin: %v", err)
	}
	if err := lab.Ping(ctx, n1.NS, p.IPv4); err != nil {
		t.Errorf("ping pod %s from %s: %v", p.IPv4, n1.Name, err)
	}
	if err := l.DelPod(ctx, p); err != nil {
		t.Fatalf("CNI DEL through the emulated plugin: %v", err)
	}

	// kindnet status of the foreign build, talking to the foreign agent:
	// the masquerade step failed with a clear error naming the netfilter
	// socket, and the agent still answers (no crash, no hang).
	rec := statusJSON(ctx, t, l, n1)
	var masq *status.Run
	for i := range rec.Reconcilers {
		if rec.Reconcilers[i].Name == "masquerade" {
			masq = &rec.Reconcilers[i]
		}
	}
	// Reconcilers are listed only by a running agent (without one, status
	// inspects the host); and its process is still there.
	if masq == nil {
		t.Fatalf("status lists no masquerade reconciler (agent not answering?): %+v", rec.Reconcilers)
	}
	if err := syscall.Kill(n1.AgentPID, 0); err != nil {
		t.Errorf("agent of %s (pid %d) is gone: %v", n1.Name, n1.AgentPID, err)
	}
	msg := masq.Error
	if msg == "" {
		msg = masq.LastError
	}
	if !strings.Contains(msg, "protocol not supported") {
		t.Errorf("masquerade error = %q, want it to say the netfilter netlink socket is not supported", msg)
	}
	t.Logf("masquerade under emulation: %s", msg)
}

func waitRoutes(ctx context.Context, t *testing.T, n1, n2 *lab.Node) {
	t.Helper()
	// By number: the host need not have kindnet's rt_protos.d entry.
	proto := strconv.Itoa(int(routes.Protocol))
	var last string
	for ctx.Err() == nil {
		out4, _ := lab.Exec(ctx, n1.NS, "ip", "-4", "route", "show", "proto", proto)
		out6, _ := lab.Exec(ctx, n1.NS, "ip", "-6", "route", "show", "proto", proto)
		last = out4 + out6
		if strings.Contains(out4, n2.PodCIDR4.String()+" via "+n2.IPv4.String()) &&
			strings.Contains(out6, n2.PodCIDR6.String()+" via "+n2.IPv6.String()) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("no kindnet routes to %s's pod CIDRs on %s:\n%s", n2.Name, n1.Name, last)
}

func statusJSON(ctx context.Context, t *testing.T, l *lab.Lab, n *lab.Node) status.Record {
	t.Helper()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", n.NS, l.Opts.Kindnet, "status", "--config", n.ConfigPath(), "-o", "json")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	out, _ := cmd.Output() // exits non-zero while degraded
	var rec status.Record
	if err := json.Unmarshal(out, &rec); err != nil {
		t.Fatalf("kindnet status -o json on %s: %v\n%s", n.Name, err, out)
	}
	return rec
}
