package images

import (
	"bufio"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
)

// program is a host program to carry into an image, as its Debian package
// installs it.
type program struct {
	path string // where the package installs it (as dpkg -L lists it)
	pkg  string // the Debian package; `make deps` installs it
	// as are the commands it is run by, when not its own name: symlinks
	// to it in /usr/bin.
	as []string
}

// missing says that a host file an image needs is absent and who
// installs it.
func missing(p, pkg string, err error) error {
	return fmt.Errorf("%s is missing (%w): `make deps` installs Debian's %s", p, err, pkg)
}

// addProgram adds p to the layer at the path its package gives it, with
// the symlinks on that path, every shared library ldd reports for it and
// its dynamic loader, each at its host path; then a /usr/bin symlink for
// each name in p.as. It returns the commands it provides.
func addProgram(ctx context.Context, l *Layer, p program) ([]string, error) {
	if _, err := os.Stat(p.path); err != nil {
		return nil, missing(p.path, p.pkg, err)
	}
	if err := l.Mirror(p.path); err != nil {
		return nil, err
	}
	real, err := filepath.EvalSymlinks(p.path)
	if err != nil {
		return nil, err
	}
	libs, err := sharedLibraries(ctx, real)
	if err != nil {
		return nil, fmt.Errorf("%s (Debian's %s): %w", p.path, p.pkg, err)
	}
	for _, lib := range libs {
		if err := l.Mirror(lib); err != nil {
			return nil, fmt.Errorf("%s needs %s: %w", p.path, lib, err)
		}
	}
	cmds := []string{path.Base(p.path)}
	for _, name := range p.as {
		if err := l.Symlink("/usr/bin/"+name, p.path); err != nil {
			return nil, err
		}
		cmds = append(cmds, name)
	}
	return cmds, nil
}

// sharedLibraries lists the files a dynamically linked program or shared
// object needs to be loaded: its loader (PT_INTERP) and every library ldd
// resolves, as the paths ldd prints. A static program needs none. A
// library ldd cannot find is an error naming it.
func sharedLibraries(ctx context.Context, prog string) ([]string, error) {
	f, err := elf.Open(prog)
	if err != nil {
		return nil, fmt.Errorf("read ELF: %w", err)
	}
	interp := ""
	for _, ph := range f.Progs {
		if ph.Type == elf.PT_INTERP {
			b := make([]byte, ph.Filesz)
			if _, err := ph.ReadAt(b, 0); err != nil {
				f.Close()
				return nil, fmt.Errorf("read PT_INTERP: %w", err)
			}
			interp = strings.TrimRight(string(b), "\x00")
		}
	}
	needed, err := f.ImportedLibraries()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("read DT_NEEDED: %w", err)
	}
	if interp == "" && len(needed) == 0 {
		return nil, nil
	}
	out, err := exec.CommandContext(ctx, "ldd", prog).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("ldd: %w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("ldd (Debian's libc-bin): %w", err)
	}
	var libs []string
	if interp != "" {
		libs = append(libs, interp)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		// libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)
		// /lib64/ld-linux-x86-64.so.2 (0x...)
		// linux-vdso.so.1 (0x...)            (in the kernel: nothing to copy)
		// libfoo.so.1 => not found
		name, target, arrow := strings.Cut(line, " => ")
		if arrow {
			if strings.HasPrefix(target, "not found") {
				return nil, fmt.Errorf("ldd: %s not found", name)
			}
			name = target
		}
		p, _, _ := strings.Cut(name, " (")
		if strings.HasPrefix(p, "/") {
			libs = append(libs, p)
		}
	}
	return libs, nil
}

// busyboxApplets links every applet of the static busybox at bb (as
// `busybox --list-full` places them) to it, except commands some other
// program of the image already provides (Debian's nc, ip, nslookup win
// over busybox's whatever directory PATH finds first).
func busyboxApplets(ctx context.Context, l *Layer, bb string, provided map[string]bool) error {
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return fmt.Errorf("%s --list-full: %w", bb, err)
	}
	for _, p := range strings.Fields(string(out)) {
		name := path.Base(p)
		if !strings.Contains(p, "/") || provided[name] || name == "busybox" {
			continue // linuxrc at /, and what others provide
		}
		if err := l.Symlink("/"+p, bb); err != nil {
			return err
		}
	}
	return nil
}

// mirrorIfPresent mirrors p when the host has it: for files whose absence
// is harmless (glibc 2.34 and later build the files and dns NSS modules
// into libc; the .so.2 files left are stubs some releases drop).
func mirrorIfPresent(l *Layer, p string) error {
	if _, err := os.Lstat(p); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return l.Mirror(p)
}
