package agent

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const unixRTMDelRoute = unix.RTM_DELROUTE

// strs renders addresses or prefixes as strings for logs and the record.
func strs[T fmt.Stringer](in []T) []string {
	out := make([]string, len(in))
	for i, v := range in {
		out[i] = v.String()
	}
	return out
}
