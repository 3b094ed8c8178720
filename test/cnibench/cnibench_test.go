// Package cnibench measures what a container runtime waits for: the
// latency of CNI ADD and DEL of kindnet's plugin and, in the same run, of
// Debian's reference plugins (ptp with host-local IPAM, /usr/lib/cni) set
// up the same way — same ranges (dual-stack, or IPv4 only), same MTU, no
// hostPorts, IPAM state on tmpfs for both. Runs alternate between the two
// so that load on the machine hits both alike.
//
// It runs as root inside throwaway network namespaces (a "node" and its
// "pods") and never touches the machine's own namespace. `make bench-cni`
// runs it against bin/kindnet; it is a benchmark, not a test: it reports
// figures and asserts nothing about them.
package cnibench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// referenceDir holds Debian's containernetworking-plugins.
const referenceDir = "/usr/lib/cni"

// plugin is one of the two contenders.
type plugin struct {
	name string
	bin  string
	path string // CNI_PATH
	conf []byte
}

// stacks are the address families measured: dual-stack is what kindnet is
// for; IPv4 only spares the reference plugin the wait for IPv6 duplicate
// address detection it does on every ADD.
var stacks = []struct {
	name       string
	kindnet    []string
	reference  [][]map[string]string
	refDefault []map[string]string
}{
	{"dualstack", []string{"10.244.1.0/24", "fd00:10:244:1::/64"},
		[][]map[string]string{{{"subnet": "10.245.1.0/24"}}, {{"subnet": "fd00:10:245:1::/64"}}},
		[]map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}},
	{"ipv4", []string{"10.244.1.0/24"},
		[][]map[string]string{{{"subnet": "10.245.1.0/24"}}},
		[]map[string]string{{"dst": "0.0.0.0/0"}}},
}

func contenders(b *testing.B, stack int) []plugin {
	b.Helper()
	bin := os.Getenv("KINDNET_BIN")
	if bin == "" {
		b.Skip("set KINDNET_BIN to the kindnet binary to measure (make bench-cni does)")
	}
	if _, err := os.Stat(filepath.Join(referenceDir, "ptp")); err != nil {
		b.Skipf("the reference plugins are not installed (%v): make deps installs containernetworking-plugins", err)
	}
	// On tmpfs, as in production (/run/kindnet/ipam).
	dir, err := os.MkdirTemp(tmpfsDir(b), "kindnet-bench-")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	st := stacks[stack]
	kindnet, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "kindnet", "type": "kindnet", "mode": "ptp", "mtu": 1400,
		"ranges": st.kindnet, "ipamDir": filepath.Join(dir, "kindnet-ipam"),
	})
	reference, _ := json.Marshal(map[string]any{
		"cniVersion": "1.0.0", "name": "reference", "type": "ptp", "mtu": 1400, "ipMasq": false,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  st.reference,
			"routes":  st.refDefault,
			"dataDir": filepath.Join(dir, "host-local"),
		},
	})
	return []plugin{
		{name: "kindnet", bin: bin, path: filepath.Dir(bin), conf: kindnet},
		{name: "reference", bin: filepath.Join(referenceDir, "ptp"), path: referenceDir, conf: reference},
	}
}

// tmpfsDir is where the IPAM state of both plugins goes: /run where it is
// a tmpfs, as on systemd hosts, else /dev/shm (some VMs and containers have
// /run on their root disk, where every fsync of the state would be timed).
func tmpfsDir(b *testing.B) string {
	for _, d := range []string{"/run", "/dev/shm"} {
		var st unix.Statfs_t
		if unix.Statfs(d, &st) == nil && st.Type == unix.TMPFS_MAGIC {
			return d
		}
	}
	b.Skip("neither /run nor /dev/shm is a tmpfs")
	return ""
}

// exec runs one verb inside the node namespace and returns how long the
// plugin process took, from fork to exit: what a runtime waits for.
func (p plugin) exec(b *testing.B, node *netnstest.NS, verb, id, netns string) time.Duration {
	cmd := exec.Command(p.bin)
	cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + p.path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = bytes.NewReader(p.conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	var took time.Duration
	var runErr error
	err := node.Do(func() error {
		start := time.Now()
		runErr = cmd.Run()
		took = time.Since(start)
		return nil
	})
	if err != nil || runErr != nil {
		b.Fatalf("%s %s %s: %v %v\n%s", p.name, verb, id, err, runErr, out.String())
	}
	return took
}

// maxRSS runs ADD then DEL of one pod under GNU time and returns the ADD
// process's peak resident set in KiB. The rusage of a child this program
// starts would not do: Go starts children with vfork, and Linux carries
// the parent's peak RSS into the child's ru_maxrss at exec; GNU time forks
// a small process of its own. For the reference it is ptp's alone
// (host-local runs as ptp's child).
func (p plugin) maxRSS(b *testing.B, node *netnstest.NS, id, netns string) int64 {
	out := filepath.Join(b.TempDir(), "maxrss")
	timed := p
	timed.bin = "/usr/bin/time"
	cmd := exec.Command(timed.bin, "-o", out, "-f", "%M", p.bin)
	cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + id, "CNI_NETNS=" + netns,
		"CNI_IFNAME=eth0", "CNI_PATH=" + p.path, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.Stdin = bytes.NewReader(p.conf)
	if err := node.Do(cmd.Run); err != nil {
		b.Fatalf("%s ADD under %s: %v (make deps installs GNU time)", p.name, timed.bin, err)
	}
	p.exec(b, node, "DEL", id, netns)
	raw, err := os.ReadFile(out)
	if err != nil {
		b.Fatal(err)
	}
	var kib int64
	if _, err := fmt.Sscan(string(raw), &kib); err != nil {
		b.Fatalf("GNU time wrote %q: %v", raw, err)
	}
	return kib
}

// peakRSS is the largest resident set of each plugin process during ADD.
var peakRSS = rssPeaks{kib: map[string]int64{}}

type rssPeaks struct {
	sync.Mutex
	kib map[string]int64
}

func (r *rssPeaks) note(name string, kib int64) {
	r.Lock()
	defer r.Unlock()
	r.kib[name] = max(r.kib[name], kib)
}

// samples are latencies of one plugin and verb.
type samples []time.Duration

func (s samples) pct(p float64) time.Duration {
	if len(s) == 0 {
		return 0
	}
	c := slices.Clone(s)
	slices.Sort(c)
	i := int(float64(len(c))*p+0.5) - 1
	return c[max(0, min(i, len(c)-1))]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// results collects samples per plugin and verb.
type results struct {
	mu sync.Mutex
	m  map[string]samples
}

func (r *results) add(key string, d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[string]samples{}
	}
	r.m[key] = append(r.m[key], d)
}

// report prints the table and hands the figures to the benchmark output.
func (r *results) report(b *testing.B, title string, ps []plugin) {
	var t strings.Builder
	fmt.Fprintf(&t, "\n%s (%d runs each)\n%-10s %-5s %9s %9s\n", title, len(r.m[ps[0].name+" ADD"]), "plugin", "verb", "p50 ms", "p99 ms")
	for _, p := range ps {
		for _, verb := range []string{"VERSION", "ADD", "DEL", "ADD+DEL"} {
			s := r.m[p.name+" "+verb]
			if len(s) == 0 {
				continue
			}
			fmt.Fprintf(&t, "%-10s %-7s %7.1f %9.1f\n", p.name, verb, ms(s.pct(0.5)), ms(s.pct(0.99)))
			b.ReportMetric(ms(s.pct(0.5)), p.name+"-"+strings.ReplaceAll(strings.ToLower(verb), "+", "")+"-p50-ms")
			b.ReportMetric(ms(s.pct(0.99)), p.name+"-"+strings.ReplaceAll(strings.ToLower(verb), "+", "")+"-p99-ms")
		}
	}
	k, ref := r.m["kindnet ADD+DEL"], r.m["reference ADD+DEL"]
	if len(k) > 0 && len(ref) > 0 {
		ratio := ms(k.pct(0.5)) / ms(ref.pct(0.5))
		fmt.Fprintf(&t, "kindnet ADD+DEL p50 = %.2f x the reference's\n", ratio)
		b.ReportMetric(ratio, "kindnet/reference-cycle")
	}
	b.Log(t.String())
}

// BenchmarkCNI measures ADD and DEL, one pod at a time (sequential, where
// VERSION shows the cost of merely starting each plugin) and with 20 pods
// at once (parallel20), alternating the plugins every run.
// -benchtime=Nx sets the runs: N cycles each (sequential), N rounds of 20
// each (parallel20).
func BenchmarkCNI(b *testing.B) {
	netnstest.RequireRoot(b)
	for i, st := range stacks {
		b.Run(st.name, func(b *testing.B) { benchStack(b, i) })
	}
	goals(b)
}

// kept holds each sub-benchmark's last (full) run, for the goal table.
var kept = map[string]*results{}

func keep(key string, r *results) { kept[key] = r }

func benchStack(b *testing.B, stack int) {
	b.Run("sequential", func(b *testing.B) {
		ps := contenders(b, stack)
		node := netnstest.New(b)
		pods := map[string]*netnstest.NS{}
		for _, p := range ps {
			pods[p.name] = netnstest.New(b)
		}
		var r results
		b.ResetTimer()
		for i := range b.N {
			for j := range ps {
				p := ps[(i+j)%len(ps)] // alternate who goes first
				podID := fmt.Sprintf("seq-%s-%d", p.name, i)
				// VERSION does no work: it is the floor every call pays
				// (exec, runtime start, package initialisation).
				r.add(p.name+" VERSION", p.exec(b, node, "VERSION", podID, pods[p.name].Path()))
				add := p.exec(b, node, "ADD", podID, pods[p.name].Path())
				del := p.exec(b, node, "DEL", podID, pods[p.name].Path())
				r.add(p.name+" ADD", add)
				r.add(p.name+" DEL", del)
				r.add(p.name+" ADD+DEL", add+del)
			}
		}
		b.StopTimer()
		for _, p := range ps {
			for i := range 5 {
				peakRSS.note(p.name, p.maxRSS(b, node, fmt.Sprintf("rss-%s-%d", p.name, i), pods[p.name].Path()))
			}
		}
		for i := range 30 {
			delSteps(b, ps[0], node, fmt.Sprintf("steps-%d", i), pods[ps[0].name].Path(), stacks[stack].name)
		}
		r.report(b, "sequential: one pod at a time", ps)
		keep(stacks[stack].name+"/sequential", &r)
	})
	b.Run("parallel20", func(b *testing.B) {
		const width = 20
		ps := contenders(b, stack)
		node := netnstest.New(b)
		pods := map[string][]*netnstest.NS{}
		for _, p := range ps {
			for range width {
				pods[p.name] = append(pods[p.name], netnstest.New(b))
			}
		}
		var r results
		wave := func(p plugin, verb string, round int) {
			var wg sync.WaitGroup
			for k := range width {
				wg.Add(1)
				go func() {
					defer wg.Done()
					d := p.exec(b, node, verb, fmt.Sprintf("par-%s-%d-%d", p.name, round, k), pods[p.name][k].Path())
					r.add(p.name+" "+verb, d)
				}()
			}
			wg.Wait()
		}
		b.ResetTimer()
		for i := range b.N {
			for j := range ps {
				p := ps[(i+j)%len(ps)]
				wave(p, "ADD", i)
				wave(p, "DEL", i)
			}
		}
		b.StopTimer()
		r.report(b, fmt.Sprintf("parallel: %d pods at once", width), ps)
		keep(stacks[stack].name+"/parallel20", &r)
	})
}
