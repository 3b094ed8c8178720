// Package golden compares a test's output with a file under testdata and,
// with `go test -update`, rewrites the file instead. It owns the -update
// flag, so that every package whose tests use it (and the helpers they
// import) agree on one flag; it never writes outside the path it is given.
package golden

import (
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata instead of comparing")

// Check compares got with the file at path (relative to the package, so
// "testdata/x.golden"). On -update it writes got there and passes. A
// difference fails the test showing both, and how to accept it.
func Check(t testing.TB, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if string(got) != string(want) {
		t.Errorf("%s differs (run go test with -update if the change is intended, and review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// Updating reports whether the run was asked to rewrite golden files, for
// tests that compare in a way of their own but still record with -update.
func Updating() bool { return *update }
