package status

import (
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kindnet-dev/kindnet/internal/golden"
)

// schemaLines lists every JSON field of t as "path type", e.g.
// "peers[].state string": the shape scripts rely on.
func schemaLines(t reflect.Type, prefix string) []string {
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := strings.Split(f.Tag.Get("json"), ",")[0]
		if name == "" || name == "-" {
			continue
		}
		path := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		switch {
		case ft == reflect.TypeFor[time.Time]():
			out = append(out, path+" time")
		case ft == reflect.TypeFor[time.Duration]():
			out = append(out, path+" int(ns)")
		case ft.Kind() == reflect.Struct:
			out = append(out, path+" object")
			out = append(out, schemaLines(ft, path+".")...)
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			out = append(out, path+" list")
			out = append(out, schemaLines(ft.Elem(), path+"[].")...)
		case ft.Kind() == reflect.Slice:
			out = append(out, path+" list of "+ft.Elem().Kind().String())
		default:
			out = append(out, path+" "+ft.Kind().String())
		}
	}
	return out
}

// TestSchemaIsStable pins the JSON schema of `kindnet status -o json`.
// Within one SchemaVersion a field may be added (record it with -update and
// document it) but never removed, renamed or retyped: that needs a new
// SchemaVersion.
func TestSchemaIsStable(t *testing.T) {
	cur := schemaLines(reflect.TypeFor[Record](), "")
	got := fmt.Sprintf("schemaVersion %d\n%s\n", SchemaVersion, strings.Join(cur, "\n"))
	if golden.Updating() {
		golden.Check(t, "testdata/schema.golden", []byte(got))
		return
	}
	data, err := os.ReadFile("testdata/schema.golden")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var goldenVersion int
	fmt.Sscanf(lines[0], "schemaVersion %d", &goldenVersion)
	if goldenVersion != SchemaVersion {
		t.Fatalf("SchemaVersion is %d, testdata/schema.golden pins %d: document the new version in docs/status.md and run go test -update", SchemaVersion, goldenVersion)
	}
	for _, l := range lines[1:] {
		if !slices.Contains(cur, l) {
			t.Errorf("field %q was removed or changed type within schemaVersion %d: keep it, or bump SchemaVersion", l, SchemaVersion)
		}
	}
	for _, l := range cur {
		if !slices.Contains(lines[1:], l) {
			t.Errorf("new field %q: document it in docs/status.md and record it with go test ./pkg/status -update", l)
		}
	}
}

// TestSchemaIsDocumented checks that docs/status.md names every field.
func TestSchemaIsDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/status.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range schemaLines(reflect.TypeFor[Record](), "") {
		path := strings.Fields(l)[0]
		if !strings.Contains(string(doc), "`"+path+"`") {
			t.Errorf("docs/status.md does not document `%s`", path)
		}
	}
	if !strings.Contains(string(doc), fmt.Sprintf("schemaVersion: %d", SchemaVersion)) &&
		!strings.Contains(string(doc), fmt.Sprintf("`schemaVersion` is %d", SchemaVersion)) {
		t.Errorf("docs/status.md does not state the current schemaVersion %d", SchemaVersion)
	}
}
