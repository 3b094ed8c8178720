// Package buildinfo carries the version and commit injected at link time
// (make build passes -ldflags "-X ...").
package buildinfo

import "runtime"

// Set by the linker; the defaults mark an untagged developer build.
var (
	Version = "0.0.0-dev"
	Commit  = "unknown"
	Date    = "unknown"
)

// String is the one-line version shown by `kindnet version` and logs.
func String() string {
	return "kindnet " + Version + " (commit " + Commit + ", built " + Date + ", " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + ")"
}
