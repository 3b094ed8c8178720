package bench

import (
	"context"
	"debug/buildinfo"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Machine describes where the benchmark ran.
type Machine struct {
	Host     string  `json:"host"`
	CPUModel string  `json:"cpuModel"`
	Cores    int     `json:"cores"`
	Kernel   string  `json:"kernel"`
	MemGiB   float64 `json:"memGiB"`
}

// Versions are the versions of what was measured and what measured it.
type Versions struct {
	Kindnet   string `json:"kindnet"`
	KindnetGo string `json:"kindnetGo"` // Go that built the kindnet binary
	BenchGo   string `json:"benchGo"`
	Iperf3    string `json:"iperf3"`
	Ping      string `json:"ping"`
	IPRoute2  string `json:"iproute2"`
}

// Load is the load average (1, 5, 15 minutes) at one moment.
type Load struct {
	At      time.Time  `json:"at"`
	What    string     `json:"what"`
	Average [3]float64 `json:"average"`
}

func readMachine() Machine {
	m := Machine{Cores: runtime.NumCPU()}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kib, _ := strconv.ParseFloat(f[1], 64)
				m.MemGiB = float64(int(kib/(1<<20)*10+0.5)) / 10
			}
		}
	}
	return m
}

func readLoad(what string) Load {
	l := Load{At: time.Now().UTC(), What: what}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		f := strings.Fields(string(b))
		for i := 0; i < 3 && i < len(f); i++ {
			l.Average[i], _ = strconv.ParseFloat(f[i], 64)
		}
	}
	return l
}

func readVersions(ctx context.Context, kindnet string) Versions {
	v := Versions{BenchGo: runtime.Version()}
	v.Kindnet = firstLine(commandOutput(ctx, kindnet, "version"))
	if bi, err := buildinfo.ReadFile(kindnet); err == nil {
		v.KindnetGo = bi.GoVersion
	}
	v.Iperf3 = firstLine(commandOutput(ctx, "iperf3", "--version"))
	v.Ping = firstLine(commandOutput(ctx, "ping", "-V"))
	v.IPRoute2 = firstLine(commandOutput(ctx, "ip", "-V"))
	return v
}

func commandOutput(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("unknown (%s: %v)", name, err)
	}
	return string(out)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(line)
}

// Binary describes the kindnet executable.
type Binary struct {
	Path   string `json:"path"`
	Bytes  int64  `json:"bytes"`
	Static bool   `json:"static"`
	// Why says what makes it not static (an interpreter, needed libraries).
	Why string `json:"why,omitempty"`
}

// inspectBinary measures the file and checks that it is static: no
// program interpreter and no needed shared library.
func inspectBinary(path string) (Binary, error) {
	b := Binary{Path: path}
	st, err := os.Stat(path)
	if err != nil {
		return b, err
	}
	b.Bytes = st.Size()
	f, err := elf.Open(path)
	if err != nil {
		return b, fmt.Errorf("read ELF %s: %w", path, err)
	}
	defer f.Close()
	var why []string
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			why = append(why, "has a program interpreter")
		}
	}
	if libs, err := f.ImportedLibraries(); err == nil && len(libs) > 0 {
		why = append(why, "needs "+strings.Join(libs, ", "))
	}
	b.Static, b.Why = len(why) == 0, strings.Join(why, "; ")
	return b, nil
}
