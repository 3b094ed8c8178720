package cni

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/types/create"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
	"github.com/kindnet-dev/kindnet/pkg/ipam"
)

// started is a plugin process running in the node's namespace.
type started struct {
	cmd    *exec.Cmd
	stdout *bytes.Buffer
	stderr *bytes.Buffer
}

// start launches the plugin inside the node without waiting for it.
func (n *node) start(c call) started {
	n.t.Helper()
	cmd, stdout, stderr := c.command()
	var err error
	if derr := n.ns.Do(func() error { err = cmd.Start(); return nil }); derr != nil || err != nil {
		n.t.Fatalf("start %s %s: %v %v", c.verb, c.id, derr, err)
	}
	return started{cmd, stdout, stderr}
}

func TestTwoHundredParallelAddsNeverShareAnAddress(t *testing.T) {
	netnstest.RequireRoot(t)
	const count = 200
	n := newNode(t)
	conf := n.conf("1.0.0", ModePTP, nil)
	pods := make([]*netnstest.NS, count)
	for i := range pods {
		pods[i] = netnstest.New(t)
	}
	run := func(verb string) []started {
		procs := make([]started, count)
		for i := range procs {
			procs[i] = n.start(call{verb: verb, id: id("par", i), netns: pods[i].Path(), ifname: "eth0", conf: conf})
		}
		for i, p := range procs {
			if err := p.cmd.Wait(); err != nil {
				t.Errorf("%s %d: %v: %s %s", verb, i, err, p.stdout, p.stderr)
			}
		}
		return procs
	}

	adds := run("ADD")
	owner := map[netip.Addr]int{}
	for i, p := range adds {
		res, err := create.Create("1.0.0", p.stdout.Bytes())
		if err != nil {
			t.Fatalf("ADD %d result: %v", i, err)
		}
		cur, _ := types100.NewResultFromResult(res)
		for _, ipc := range cur.IPs {
			ip, _ := netip.AddrFromSlice(ipc.Address.IP)
			ip = ip.Unmap()
			if prev, dup := owner[ip]; dup {
				t.Errorf("%s given to pod %d and pod %d", ip, prev, i)
			}
			owner[ip] = i
			// ...and it is really on that pod's eth0.
			if have := addrsOf(t, pods[i].NL, "eth0"); !containsAddr(have, ip) {
				t.Errorf("pod %d lacks %s: %v", i, ip, have)
			}
		}
	}
	if len(owner) != 2*count || len(n.allocations()) != count || len(n.hostLinks()) != count {
		t.Fatalf("%d addresses, %d records, %d host links; want %d, %d, %d",
			len(owner), len(n.allocations()), len(n.hostLinks()), 2*count, count, count)
	}
	run("DEL")
	n.assertNothingLeft("after 200 parallel DELs")
}

func containsAddr(ps []netip.Prefix, ip netip.Addr) bool {
	for _, p := range ps {
		if p.Addr() == ip {
			return true
		}
	}
	return false
}

// An ADD killed at a random point, 50 times: the store always parses, has
// no duplicate and no address outside the ranges; a killed ADD's record
// is whole (both families) or absent; a new ADD right after gets other
// addresses; DEL, as the runtime sends after a failed ADD, leaves nothing.
func TestAddKilledAtRandomPointsLeavesStoreConsistent(t *testing.T) {
	netnstest.RequireRoot(t)
	n := newNode(t)
	conf := n.conf("1.0.0", ModePTP, map[string]any{"runtimeConfig": map[string]any{
		"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80}}}})

	// How long a whole ADD takes here: kills land anywhere within it.
	warm := netnstest.New(t)
	begin := time.Now()
	n.add("1.0.0", conf, "warm", warm)
	span := time.Since(begin)
	n.must(call{verb: "DEL", id: "warm", netns: warm.Path(), ifname: "eth0", conf: conf})

	var withRecord, withLink int
	for i := range 50 {
		pod := netnstest.New(t)
		victim := id("kill", i)
		p := n.start(call{verb: "ADD", id: victim, netns: pod.Path(), ifname: "eth0", conf: conf})
		time.Sleep(time.Duration(rand.Int64N(int64(span) * 6 / 5)))
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()

		rec := storeConsistent(t, n)
		killed, found := rec[victim]
		if found {
			withRecord++
			if len(killed) != 2 {
				t.Errorf("kill %d: half a record: %v", i, killed)
			}
		}
		if len(n.hostLinks()) > 0 {
			withLink++
		}

		probe := netnstest.New(t)
		res := n.add("1.0.0", conf, id("probe", i), probe)
		for _, ipc := range res.IPs {
			ip, _ := netip.AddrFromSlice(ipc.Address.IP)
			for _, k := range killed {
				if k == ip.Unmap() {
					t.Errorf("kill %d: %s handed out again while the killed ADD holds it", i, k)
				}
			}
		}
		n.must(call{verb: "DEL", id: id("probe", i), netns: probe.Path(), ifname: "eth0", conf: conf})
		n.must(call{verb: "DEL", id: victim, netns: pod.Path(), ifname: "eth0", conf: conf})
		n.assertNothingLeft("after DEL of a killed ADD")
		probe.Close()
		pod.Close()
	}
	t.Logf("ADD takes ~%s here; of 50 kills, %d left a record and %d a host link for DEL to clean", span, withRecord, withLink)
	if entries, _ := os.ReadDir(filepath.Join(n.ipamDir, "kindnet")); len(entries) > 2 {
		t.Errorf("files left in the store after the last DEL: %v", entries)
	}
}

// storeConsistent reads the state file as a later plugin would, checks it,
// and returns the addresses by container ID.
func storeConsistent(t *testing.T, n *node) map[string][]netip.Addr {
	t.Helper()
	s := ipam.New(n.ipamDir, "kindnet")
	b, err := os.ReadFile(s.StatePath())
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Allocations []ipam.Allocation `json:"allocations"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("state file does not parse after a kill: %v\n%s", err, b)
	}
	out := map[string][]netip.Addr{}
	seen := map[netip.Addr]bool{}
	r4, r6 := netip.MustParsePrefix(range4), netip.MustParsePrefix(range6)
	for _, a := range st.Allocations {
		for _, ip := range a.IPs {
			if seen[ip] || !(r4.Contains(ip) || r6.Contains(ip)) {
				t.Errorf("bad address %s in %+v", ip, a)
			}
			seen[ip] = true
		}
		out[a.ContainerID] = a.IPs
	}
	if strings.Contains(string(b), "\x00") {
		t.Error("state file holds NUL bytes")
	}
	return out
}

// Several ADDs of one attachment (same container ID, interface and pod) at
// once, as a confused runtime may send them, 25 times over. One may win;
// the others must fail without undoing anything the winner did: whatever
// address is on the pod's interface afterwards is the one the store
// records for the attachment, the winner's result names it, and DEL then
// leaves nothing. (Before the fix a loser's rollback released the winner's
// record, or deleted its veth.)
func TestConcurrentAddsOfOneAttachmentKeepTheWinnersAddress(t *testing.T) {
	netnstest.RequireRoot(t)
	t.Run("ptp", func(t *testing.T) { concurrentAddsOfOneAttachment(t, ModePTP, 25) })
	t.Run("bridge", func(t *testing.T) { concurrentAddsOfOneAttachment(t, ModeBridge, 10) })
}

func concurrentAddsOfOneAttachment(t *testing.T, mode Mode, rounds int) {
	const racers = 4
	n := newNode(t)
	conf := n.conf("1.0.0", mode, nil)
	for round := range rounds {
		pod := netnstest.New(t)
		cid := id("same", round)
		procs := make([]started, racers)
		for i := range procs {
			procs[i] = n.start(call{verb: "ADD", id: cid, netns: pod.Path(), ifname: "eth0", conf: conf})
		}
		var won []netip.Addr
		winners := 0
		for i, p := range procs {
			if err := p.cmd.Wait(); err != nil {
				var e types.Error
				if jerr := json.Unmarshal(p.stdout.Bytes(), &e); jerr != nil || e.Code != types.ErrInvalidEnvironmentVariables {
					t.Errorf("round %d: losing ADD %d: want error 4 (the attachment exists), got %q %q", round, i, p.stdout, p.stderr)
				}
				continue
			}
			winners++
			res, err := create.Create("1.0.0", p.stdout.Bytes())
			if err != nil {
				t.Fatalf("round %d: ADD %d result: %v", round, i, err)
			}
			cur, _ := types100.NewResultFromResult(res)
			for _, ipc := range cur.IPs {
				ip, _ := netip.AddrFromSlice(ipc.Address.IP)
				won = append(won, ip.Unmap())
			}
		}
		if winners != 1 {
			t.Errorf("round %d: %d of %d ADDs succeeded, want exactly 1", round, winners, racers)
		}
		var onPod []netip.Addr
		if l, err := pod.NL.LinkByName("eth0"); err == nil {
			for _, p := range addrsOf(t, pod.NL, l.Attrs().Name) {
				onPod = append(onPod, p.Addr())
			}
		}
		var recorded []netip.Addr
		for _, a := range n.allocations() {
			if a.ContainerID == cid {
				recorded = append(recorded, a.IPs...)
			}
		}
		for _, ip := range onPod {
			if !slices.Contains(recorded, ip) {
				t.Errorf("round %d: %s is on the pod's eth0 but the store does not record it (store: %v)", round, ip, recorded)
			}
		}
		if winners == 1 && (!sameAddrs(won, onPod) || !sameAddrs(won, recorded)) {
			t.Errorf("round %d: the winner got %v; the pod has %v, the store records %v", round, won, onPod, recorded)
		}
		n.must(call{verb: "DEL", id: cid, netns: pod.Path(), ifname: "eth0", conf: conf})
		n.assertNothingLeft(fmt.Sprintf("round %d, after DEL", round))
		if _, err := pod.NL.LinkByName("eth0"); err == nil {
			t.Errorf("round %d: eth0 left in the pod after DEL", round)
		}
		pod.Close()
		if t.Failed() {
			return // one failed round says it; the rest would repeat it
		}
	}
}

func sameAddrs(a, b []netip.Addr) bool {
	x, y := slices.Clone(a), slices.Clone(b)
	slices.SortFunc(x, netip.Addr.Compare)
	slices.SortFunc(y, netip.Addr.Compare)
	return slices.Equal(x, y)
}
