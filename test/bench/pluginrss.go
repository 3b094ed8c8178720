package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kindnet-dev/kindnet/test/lab"
)

// pluginPeakRSS runs kindnet's CNI plugin ADD (then DEL) n times for a
// pod of a fresh node namespace, as a runtime does (CNI_* variables, the
// network config on stdin), and returns each ADD's peak resident memory
// (ru_maxrss of the process) in MiB.
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
// namespace and returns the process's peak RSS in KiB. `ip netns exec`
// execs the plugin, so the process's ru_maxrss is the plugin's (ip
// itself stays far smaller).
func runPlugin(ctx context.Context, env Env, nodeNS, podNS, verb, id string, conf []byte) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", nodeNS, env.Kindnet)
	cmd.Env = []string{"CNI_COMMAND=" + verb, "CNI_CONTAINERID=" + id, "CNI_NETNS=/run/netns/" + podNS,
		"CNI_IFNAME=eth0", "CNI_PATH=" + env.cniBinDir(), "PATH=" + os.Getenv("PATH")}
	cmd.Stdin = bytes.NewReader(conf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("kindnet plugin %s: %v: %s", verb, err, out.String())
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok || ru.Maxrss <= 0 {
		return 0, fmt.Errorf("kindnet plugin %s: no resource usage", verb)
	}
	return ru.Maxrss, nil
}

