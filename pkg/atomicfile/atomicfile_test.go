package atomicfile

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestWriteRenamesWithinTheDirectoryEvenWithTMPDIROnTheSameFilesystem
// proves what a CNI config watcher needs: the new file appears in the
// directory by a move from a temporary file in that same directory (an
// IN_MOVED_FROM there, paired with the IN_MOVED_TO of the target), never as
// a file moved in from elsewhere, which containerd 2.x takes for a create
// and ignores. $TMPDIR points at another directory of the same file system,
// where renameio would otherwise put its temporary file.
func TestWriteRenamesWithinTheDirectoryEvenWithTMPDIROnTheSameFilesystem(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "net.d")
	tmp := filepath.Join(base, "tmp")
	for _, d := range []string{dir, tmp} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("TMPDIR", tmp)
	target := filepath.Join(dir, "10-kindnet.conflist")

	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE|unix.IN_MOVED_FROM|unix.IN_MOVED_TO); err != nil {
		t.Fatal(err)
	}

	for i, content := range []string{"one", "two"} { // a create, then a replace
		changed, err := Write(target, []byte(content), 0o644)
		if err != nil || !changed {
			t.Fatalf("write %d: changed=%v err=%v", i, changed, err)
		}
	}
	if got, _ := os.ReadFile(target); string(got) != "two" {
		t.Fatalf("content %q, want %q", got, "two")
	}

	movedFrom := map[uint32]string{}
	movedTo := 0
	for _, ev := range readEvents(t, fd) {
		switch {
		case ev.mask&unix.IN_MOVED_FROM != 0:
			movedFrom[ev.cookie] = ev.name
		case ev.mask&unix.IN_MOVED_TO != 0 && ev.name == filepath.Base(target):
			movedTo++
			from, ok := movedFrom[ev.cookie]
			if !ok {
				t.Fatalf("%s was moved in from outside the directory: a watcher sees a create", ev.name)
			}
			if !strings.HasPrefix(from, ".") || loadedByRuntimes(from) {
				t.Errorf("temporary file %q: a runtime could load it", from)
			}
		case ev.mask&unix.IN_CREATE != 0 && loadedByRuntimes(ev.name) && ev.name != filepath.Base(target):
			t.Errorf("created %q, a name a runtime loads", ev.name)
		}
	}
	if movedTo != 2 {
		t.Fatalf("saw %d moves onto the target, want 2", movedTo)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("files left in TMPDIR: %v", left)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("files in the directory: %v, want only the target", left)
	}
}

// TestWriteLeavesEqualContentAlone: no write, so no event for a watcher.
func TestWriteLeavesEqualContentAlone(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if _, err := Write(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	changed, err := Write(p, []byte("x"), 0o600)
	if err != nil || changed {
		t.Fatalf("second write of the same content: changed=%v err=%v", changed, err)
	}
}

func loadedByRuntimes(name string) bool {
	switch filepath.Ext(name) {
	case ".conf", ".conflist", ".json":
		return true
	}
	return false
}

type event struct {
	mask, cookie uint32
	name         string
}

func readEvents(t *testing.T, fd int) []event {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatalf("read inotify events: %v", err)
	}
	var evs []event
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		raw := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
		nameBytes := buf[off+unix.SizeofInotifyEvent : off+unix.SizeofInotifyEvent+int(raw.Len)]
		evs = append(evs, event{mask: raw.Mask, cookie: raw.Cookie, name: string(bytes.TrimRight(nameBytes, "\x00"))})
		off += unix.SizeofInotifyEvent + int(raw.Len)
	}
	return evs
}
