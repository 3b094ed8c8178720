package nodesfile

import (
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/kindnet-dev/kindnet/internal/filekind"
)

// openRegular opens path for reading and refuses anything but a regular
// file. The open does not block: a plain open of a FIFO waits until some
// process opens it for writing, and an agent waiting there at start never
// reaches its main loop (nor its SIGTERM handling). The type is checked on
// the opened file, so a file swapped after a check cannot slip through.
// It also returns the opened file's FileInfo (its size bounds the read).
func openRegular(path string) (*os.File, fs.FileInfo, error) {
	fh, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("nodes file: %w", err)
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, nil, fmt.Errorf("nodes file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		fh.Close()
		return nil, nil, fmt.Errorf("nodes file %s: is %s, not a regular file: expected a file of Node objects (keeping the last good view)", path, filekind.Of(fi.Mode()))
	}
	return fh, fi, nil
}
