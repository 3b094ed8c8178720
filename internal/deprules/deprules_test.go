package deprules

import (
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/kindnet-dev/kindnet"

// lean lists the packages held to the rules. One line per package: add the
// NetworkPolicy reconciler here when it exists.
var lean = []struct {
	pkg        string
	stdlibOnly bool // nothing but the standard library, not even our own packages
}{
	{pkg: "pkg/model", stdlibOnly: true}, // the view, validation, the source contract
	{pkg: "pkg/routes"},                  // reconcilers
	{pkg: "pkg/masq"},
	{pkg: "pkg/cniconf"},
	{pkg: "pkg/sysctl"},
	{pkg: "pkg/hostport"},
	{pkg: "pkg/nftutil"}, // what masq and hostport share
	{pkg: "pkg/cni"},     // the CNI plugin and its address store
	{pkg: "pkg/ipam"},
	{pkg: "cmd/kindnet-cni"}, // the plugin binary the runtime starts for every pod
}

// forbidden are the dependencies no lean package may have: a path equal to
// prefix or below it. YAML libraries are matched by name (yamlLibrary).
var forbidden = []struct{ prefix, what string }{
	{"k8s.io/client-go", "the Kubernetes API client"},
	{"k8s.io/api", "the Kubernetes API types"},
	{"k8s.io/apimachinery", "the Kubernetes API machinery"},
	{module + "/pkg/kube", "the Kubernetes source"}, // pkg/kube/kubenode included
	{module + "/pkg/nodesfile", "the nodes-file source"},
	{module + "/pkg/cache", "the cached view (a source at boot)"},
	{"github.com/prometheus", "metrics"},
	{"github.com/spf13/cobra", "the CLI"},
}

// whyForbidden says what dep is when a lean package must not link it, or "".
func whyForbidden(dep string) string {
	for _, f := range forbidden {
		if dep == f.prefix || strings.HasPrefix(dep, f.prefix+"/") {
			return f.what
		}
	}
	if yamlLibrary(dep) {
		return "a YAML library"
	}
	return ""
}

// yamlLibrary matches sigs.k8s.io/yaml, go.yaml.in/yaml/v3, gopkg.in/yaml.v3,
// k8s.io/apimachinery/pkg/util/yaml, github.com/goccy/go-yaml and the like.
func yamlLibrary(dep string) bool {
	return slices.ContainsFunc(strings.Split(dep, "/"), func(elem string) bool {
		return strings.Contains(strings.ToLower(elem), "yaml")
	})
}

// graph is the import graph `go list -deps` prints for some packages.
type graph struct {
	imports  map[string][]string
	standard map[string]bool
}

// load lists pkgs and everything they depend on, as the release binary is
// built (CGO_ENABLED=0).
func load(t *testing.T, pkgs []string) graph {
	t.Helper()
	args := []string{"list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}{{range .Imports}} {{.}}{{end}}"}
	for _, p := range pkgs {
		args = append(args, module+"/"+p)
	}
	cmd := exec.Command("go", args...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, stderr.String())
	}
	g := graph{imports: map[string][]string{}, standard: map[string]bool{}}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			t.Fatalf("go list printed %q", line)
		}
		g.imports[f[0]], g.standard[f[0]] = f[2:], f[1] == "true"
	}
	return g
}

// violations walks what pkg depends on and returns one line per forbidden
// dependency, with the chain of imports that brings it in. The walk does
// not go through a forbidden package: the first one on a path is the one
// to cut.
func (g graph) violations(pkg string, stdlibOnly bool) []string {
	root := module + "/" + pkg
	from := map[string]string{root: ""}
	queue := []string{root}
	var out []string
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, dep := range g.imports[p] {
			if _, seen := from[dep]; seen {
				continue
			}
			from[dep] = p
			why := whyForbidden(dep)
			if why == "" && stdlibOnly && !g.standard[dep] {
				why = "not the standard library"
			}
			if why != "" {
				out = append(out, dep+" ("+why+"), via "+chain(from, dep))
				continue
			}
			if !g.standard[dep] {
				queue = append(queue, dep)
			}
		}
	}
	return out
}

// chain is the import path from the walk's root to dep, short names for ours.
func chain(from map[string]string, dep string) string {
	var path []string
	for p := dep; p != ""; p = from[p] {
		path = append(path, strings.TrimPrefix(p, module+"/"))
	}
	slices.Reverse(path)
	return strings.Join(path, " → ")
}

func TestReconcilersModelAndPluginLinkNoClientSourceMetricsCLIOrYAML(t *testing.T) {
	var pkgs []string
	for _, l := range lean {
		pkgs = append(pkgs, l.pkg)
	}
	g := load(t, append(pkgs, "cmd/kindnet"))

	// The whole binary links the sources, metrics, the CLI and YAML: if the
	// walk did not find them there, an empty result below would mean blind,
	// not lean.
	found := strings.Join(g.violations("cmd/kindnet", false), "\n")
	for _, want := range []string{"pkg/kube (the Kubernetes source)", "cobra (the CLI)", "(metrics)", "(a YAML library)"} {
		if !strings.Contains(found, want) {
			t.Fatalf("the walk misses %q in cmd/kindnet, which links it; it found:\n%s", want, found)
		}
	}

	for _, l := range lean {
		for _, v := range g.violations(l.pkg, l.stdlibOnly) {
			t.Errorf("%s must not depend on %s", l.pkg, v)
		}
	}
}
