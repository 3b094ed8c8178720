package bench

import (
	"bytes"
	"strings"
	"testing"
)

// The per-architecture table shows every binary, and a baseline that could
// not be measured says why instead of a zero.
func TestArchesTable(t *testing.T) {
	r := &Report{Arches: []ArchBinary{
		{Arch: "amd64", Binary: Binary{Bytes: 20 << 20, Static: true}, Plugin: Binary{Bytes: 4 << 20, Static: true}, BaselineKiB: 9 * 1024},
		{Arch: "386", Binary: Binary{Bytes: 19 << 20, Static: true}, Plugin: Binary{Bytes: 4 << 20, Static: true}, NotRun: "exec: exec format error"},
	}}
	var b bytes.Buffer
	r.markdownArches(&b)
	for _, want := range []string{
		"| amd64 | 20.0 MiB (20971520 bytes) | 4.0 MiB (4194304 bytes) | yes | 9.0 MiB |",
		"| 386 | 19.0 MiB (19922944 bytes) | 4.0 MiB (4194304 bytes) | yes | not measured: exec: exec format error |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
