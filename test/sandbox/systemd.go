package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// UnitDir is where the sandbox's systemd reads its units from
// (SYSTEMD_UNIT_PATH): only these run, never the machine's.
const UnitDir = "/kindnet-test/units"

const (
	// The sandbox runs only the units under test: never the machine's
	// sysinit units (tmpfiles would clean the real /tmp, and more). These
	// empty targets stand in for what DefaultDependencies= expects.
	stubTarget = "[Unit]\nDescription=stub %s\n"
	testTarget = `[Unit]
Description=kindnet test machine
Wants=systemd-journald.socket systemd-journald-dev-log.socket systemd-journald.service
`
	// The journal stays in the sandbox's /run, never the machine's
	// /var/log/journal files.
	journaldConf = "[Journal]\nStorage=volatile\nReadKMsg=no\n"
)

// BootWithPackagedUnits gives the sandbox's systemd the units the kindnet
// package installed (kindnet.service and the kubelet drop-in), then boots
// it as BootWithUnits does. It returns UnitDir, for drop-ins.
func (s *Sandbox) BootWithPackagedUnits(units map[string]string) string {
	s.t.Helper()
	all := map[string]string{}
	for _, u := range [][2]string{{"kindnet.service", "kindnet.service"}, {"kubelet.service.d/10-kindnet.conf", "kubelet.service.d/10-kindnet.conf"}} {
		b, err := os.ReadFile(s.Path("/lib/systemd/system/" + u[0]))
		if err != nil {
			s.t.Fatal(err)
		}
		all[u[1]] = string(b)
	}
	for name, content := range units {
		all[name] = content
	}
	return s.BootWithUnits(all)
}

// BootWithUnits gives the sandbox's systemd journald, the stub targets and
// the units given (path below UnitDir → content, e.g. "kubelet.service"),
// then boots it. It returns UnitDir, for drop-ins.
func (s *Sandbox) BootWithUnits(units map[string]string) string {
	s.t.Helper()
	s.WriteFile("/etc/systemd/journald.conf.d/kindnet-test.conf", journaldConf, 0o644)
	copyUnit := func(from, to string) {
		b, err := os.ReadFile(s.Path(from))
		if err != nil {
			s.t.Fatal(err)
		}
		s.WriteFile(filepath.Join(UnitDir, to), string(b), 0o644)
	}
	for _, u := range []string{"systemd-journald.service", "systemd-journald.socket", "systemd-journald-dev-log.socket", "systemd-journald-audit.socket"} {
		copyUnit("/lib/systemd/system/"+u, u)
	}
	for _, tgt := range []string{"sysinit", "basic", "sockets", "shutdown", "multi-user", "network", "network-online", "local-fs", "paths", "timers", "slices"} {
		s.WriteFile(filepath.Join(UnitDir, tgt+".target"), fmt.Sprintf(stubTarget, tgt), 0o644)
	}
	s.WriteFile(filepath.Join(UnitDir, "kindnet-test.target"), testTarget, 0o644)
	for name, content := range units {
		s.WriteFile(filepath.Join(UnitDir, name), content, 0o644)
	}
	s.Boot()
	return UnitDir
}

// UnitProps reads properties of a unit with systemctl show.
func (s *Sandbox) UnitProps(unit string, props ...string) map[string]string {
	s.t.Helper()
	args := []string{"systemctl", "show", unit}
	for _, p := range props {
		args = append(args, "-p", p)
	}
	out := s.MustRun(args...)
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(l, "="); ok {
			m[k] = v
		}
	}
	return m
}

// WaitFor polls cond every 100ms until it holds, or fails the test after
// timeout with cond's last description of the state.
func WaitFor(t interface {
	Helper()
	Fatalf(string, ...any)
}, what string, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
