package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ProcessSpec describes a process to start.
type ProcessSpec struct {
	Name string
	// Argv is the command line; Argv[0] is looked up in PATH.
	Argv []string
	// Dir is the working directory; Log receives stdout and stderr
	// (appended).
	Dir, Log string
	// Env replaces the environment when not nil.
	Env []string
	// Detach runs it in a session of its own that outlives the caller;
	// otherwise it is killed when the calling process dies (Pdeathsig).
	Detach bool
}

// Process is a process started by StartProcess, stopped by its PID only.
type Process struct {
	Name   string
	PID    int
	Log    string
	exited chan struct{}
}

// StartProcess starts a process with its output in a log file. Whoever
// started it stops it with Stop; a detached one outlives the caller, who
// must record its PID (see StopPID).
func StartProcess(spec ProcessSpec) (*Process, error) {
	logf, err := os.OpenFile(spec.Log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log of %s: %w", spec.Name, err)
	}
	defer logf.Close()
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Dir = spec.Dir
	cmd.Env = spec.Env
	cmd.Stdout, cmd.Stderr = logf, logf
	if spec.Detach {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	} else {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	p := &Process{Name: spec.Name, PID: cmd.Process.Pid, Log: spec.Log, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	return p, nil
}

// Alive says whether the process still runs.
func (p *Process) Alive() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// Exited is closed when the process has exited.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Stop sends SIGTERM to the recorded PID, then SIGKILL after 10 s.
func (p *Process) Stop() error {
	if !p.Alive() {
		return nil
	}
	_ = syscall.Kill(p.PID, syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(p.PID, syscall.SIGKILL)
	select {
	case <-p.exited:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("%s (pid %d) did not exit", p.Name, p.PID)
	}
}

// StartTime is the start time of pid in clock ticks since boot (field 22
// of /proc/PID/stat): with the PID it names one process for good, so a
// PID recorded by an earlier command and reused since is never signalled.
// Zero when the process is gone or a zombie.
func StartTime(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: fields count from
	// after its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 || f[0] == "Z" {
		return 0
	}
	t, _ := strconv.ParseUint(f[19], 10, 64)
	return t
}

// StopPID stops a process recorded by another command (pid and the start
// time StartTime gave then): SIGTERM, then SIGKILL after grace. A PID now
// held by another process is left alone.
func StopPID(pid int, start uint64, grace time.Duration) error {
	if pid <= 1 || start == 0 || StartTime(pid) != start {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signal pid %d: %w", pid, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if StartTime(pid) != start {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for range 100 {
		if StartTime(pid) != start {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("pid %d did not exit after SIGKILL", pid)
}
