// Package filekind names a file's type in words for error messages ("a
// named pipe (FIFO)", "a directory"), so the config check and the nodes-file
// source say the same thing about the same file. It only describes a mode:
// it never opens, stats or changes a file.
package filekind

import "io/fs"

// Of names the type of a file with mode m.
func Of(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return "not a regular file"
}
