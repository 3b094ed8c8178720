package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// pluginPeakRSS runs kindnet's CNI plugin ADD (then DEL) n times for a
// pod of a fresh node namespace, as a runtime does (CNI_* variables, the
// network config on stdin), and returns each ADD's peak resident memory
// (the plugin process's ru_maxrss) in MiB.
func pluginPeakRSS(ctx context.Context, env Env, l *lab.Lab, n int) ([]float64, error) {
	h, err := newSynthHost(l, "plugin", env.cniBinDir(), "", "")
	if err != nil {
		return nil, err
	}
	defer h.close()
	pod, err := l.AddNS("plugin-pod")
	if err != nil {
		return nil, err
	}
	defer func() { _ = exec.Command("ip", "netns", "del", pod).Run() }()
	c4, c6 := synthPodCIDRs(0)
	conf, err := json.Marshal(map[string]any{"cniVersion": "1.0.0", "name": "kindnet", "type": "kindnet", "mode": "ptp",
		"ranges": []string{c4.String(), c6.String()}, "ipamDir": filepath.Join(h.dir, "ipam")})
	if err != nil {
		return nil, err
	}
	var peaks []float64
	for i := range n {
		id := fmt.Sprintf("rss-%d", i)
		kib, err := runPlugin(ctx, env, h.n.NS, pod, "ADD", id, conf)
		if err != nil {
			return peaks, err
		}
		peaks = append(peaks, float64(kib)/mib)
		if _, err := runPlugin(ctx, env, h.n.NS, pod, "DEL", id, conf); err != nil {
			return peaks, err
		}
	}
	return peaks, nil
}

// runPlugin runs one CNI verb of the kindnet plugin inside the node
// namespace and returns its peak RSS in KiB, as GNU time reports it. The
// rusage of a process this program starts would not do: Go starts
// children with vfork, and Linux carries the parent's peak RSS into the
// child's ru_maxrss at exec; GNU time forks a small process of its own.
func runPlugin(ctx context.Context, env Env, nodeNS, podNS, verb, id string, conf []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rssFile, err := os.CreateTemp("", "kindnet-bench-maxrss-")
	if err != nil {
		return 0, err
	}
	rssFile.Close()
	defer os.Remove(rssFile.Name())
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nodeNS, timeBin, "-o", rssFile.Name(), "-f", "%M", env.plugin())
	cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + id, "CNI_NETNS=/run/netns/" + podNS,
		"CNI_IFNAME=eth0", "CNI_PATH=" + env.cniBinDir(), "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("kindnet plugin %s: %v: %s", verb, err, out.String())
	}
	b, err := os.ReadFile(rssFile.Name())
	if err != nil {
		return 0, err
	}
	kib, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil || kib <= 0 {
		return 0, fmt.Errorf("kindnet plugin %s: GNU time said %q", verb, b)
	}
	return kib, nil
}

// timeBin is GNU time (Debian package "time").
const timeBin = "/usr/bin/time"
