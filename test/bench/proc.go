package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// proc is a helper process started inside a lab namespace (an iperf3
// server). It is stopped by its PID.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

// startInNS starts args inside namespace ns in a session of its own, with
// its output in logPath. `ip netns exec` execs the command, so the PID is
// the command's own.
func startInNS(ns, logPath string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s in %s: %w", args[0], ns, err)
	}
	p := &proc{name: args[0] + " in " + ns, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop sends SIGTERM to the process, then SIGKILL after 3 seconds.
func (p *proc) stop() {
	pid := p.cmd.Process.Pid
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(3 * time.Second):
		_ = syscall.Kill(pid, syscall.SIGKILL)
		<-p.done
	}
}

// runInNS runs a command inside a namespace with a time limit and returns
// its standard output.
func runInNS(ctx context.Context, timeout time.Duration, ns string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...)
	out, err := cmd.Output()
	if err != nil {
		msg := err.Error()
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			msg += ": " + strings.TrimSpace(string(ee.Stderr))
		}
		if ctx.Err() != nil {
			msg += " (time limit " + timeout.String() + ")"
		}
		return out, fmt.Errorf("%s in %s: %s", strings.Join(args, " "), ns, msg)
	}
	return out, nil
}

// ProcMem is what /proc/<pid>/status says about a process's memory.
type ProcMem struct {
	RSSKiB int64 // VmRSS: resident now
	HWMKiB int64 // VmHWM: peak resident
}

// readProcMem reads VmRSS and VmHWM of pid.
func readProcMem(pid int) (ProcMem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return ProcMem{}, err
	}
	return parseProcStatus(string(b))
}

func parseProcStatus(s string) (ProcMem, error) {
	var m ProcMem
	found := 0
	for _, line := range strings.Split(s, "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "VmRSS":
			dst = &m.RSSKiB
		case "VmHWM":
			dst = &m.HWMKiB
		default:
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("unexpected %s line %q", key, line)
		}
		v, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("%s: %w", key, err)
		}
		*dst = v
		found++
	}
	if found != 2 {
		return m, errors.New("no VmRSS/VmHWM in /proc status (process gone?)")
	}
	return m, nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat;
// it is 100 on every Linux architecture Go supports.
const clockTicks = 100

// readCPUSeconds returns the user+system CPU time pid has used.
func readCPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(string(b))
}

// parseProcStatCPU takes utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line; the command name in parentheses may hold spaces,
// so fields are counted after its closing parenthesis.
func parseProcStatCPU(s string) (float64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("malformed /proc stat line %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, fmt.Errorf("short /proc stat line %q", s)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat times: %w", err)
	}
	return float64(ut+st) / clockTicks, nil
}
