package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return fs
}

const base = "nodeName: n1\nnodesFile: /etc/kindnet/nodes.yaml\n"

func TestPrecedenceFlagsOverEnvOverFileOverDefaults(t *testing.T) {
	file := writeFile(t, base+"cni:\n  mtu: 1400\n  plugin: bridge\nresyncInterval: 30s\nmasquerade:\n  enabled: false\n")
	l, err := Load(Sources{
		File:    file,
		Environ: []string{"KINDNET_CNI_MTU=1450", "KINDNET_CNI_PLUGIN=ptp", "PATH=/bin"},
		Flags:   flags(t, "--cni-mtu=1300"),
	})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key, origin string
		got, want   any
	}{
		{"cni.mtu", "flag --cni-mtu", l.CNI.MTU, 1300},
		{"cni.plugin", "env KINDNET_CNI_PLUGIN", l.CNI.Plugin, "ptp"},
		{"resyncInterval", "file " + file, l.ResyncInterval.Std().String(), "30s"},
		{"masquerade.enabled", "file " + file, l.Masquerade.Enabled, false},
		{"cni.confDir", "default", l.CNI.ConfDir, DefaultCNIConfDir},
	}
	for _, c := range cases {
		if c.got != c.want || l.Origin(c.key) != c.origin {
			t.Errorf("%s = %v from %q, want %v from %q", c.key, c.got, l.Origin(c.key), c.want, c.origin)
		}
	}
}

func TestMissingDefaultFileIsFineButExplicitFileMustExist(t *testing.T) {
	env := []string{"KINDNET_NODE_NAME=n1", "KINDNET_NODES_FILE=/x.yaml"}
	if _, err := Load(Sources{File: "/nonexistent/config.yaml", Environ: env}); err != nil {
		t.Fatalf("missing default file: %v", err)
	}
	_, err := Load(Sources{File: "/nonexistent/config.yaml", FileRequired: true, Environ: env})
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/config.yaml") {
		t.Fatalf("missing explicit file: err = %v", err)
	}
}

func TestBadConfigNamesFieldValueAndExpectation(t *testing.T) {
	cases := []struct {
		name, file string
		env        []string
		want       []string // substrings of the error
	}{
		{"unparsable CIDR", base + "clusterCIDRs: [10.244.0.0/33]\n", nil,
			[]string{"clusterCIDRs[0]", `"10.244.0.0/33"`, "not a CIDR"}},
		{"host bits set", base + "clusterCIDRs: [10.244.0.1/16]\n", nil,
			[]string{"clusterCIDRs[0]", "not a network address", "expected 10.244.0.0/16"}},
		{"default route", base + "clusterCIDRs: [0.0.0.0/0]\n", nil,
			[]string{"clusterCIDRs[0]", "default route"}},
		{"unknown key with hint", base + "masquerade:\n  enable: true\n", nil,
			[]string{"masquerade.enable", `did you mean "masquerade.enabled"`}},
		{"unknown top-level key", base + "foo: 1\n", nil, []string{"foo", "unknown key"}},
		{"two podCIDRs of one family", base + "podCIDRs: [10.244.1.0/24, 10.244.2.0/24]\n", nil,
			[]string{"podCIDRs[1]", "at most one range per IP family"}},
		{"podCIDR outside clusterCIDRs", base + "clusterCIDRs: [10.244.0.0/16]\npodCIDRs: [10.99.0.0/24]\n", nil,
			[]string{"podCIDRs", "outside clusterCIDRs"}},
		{"wrong type", base + "cni:\n  mtu: big\n", nil, []string{"cni.mtu", "expected a whole number"}},
		{"bad plugin", base + "cni:\n  plugin: vxlan\n", nil, []string{"cni.plugin", `"vxlan"`, `expected "ptp" or "bridge"`}},
		{"bad CNI spec version", base + "cni:\n  specVersion: 0.2.0\n", nil, []string{"cni.specVersion", `"0.2.0"`, "1.1.0"}},
		{"IPv6 MTU", base + "clusterCIDRs: [fd00::/56]\ncni:\n  mtu: 1000\n", nil, []string{"cni.mtu", "at least 1280"}},
		{"no source", "nodeName: n1\nkubeconfig: \"\"\n", nil, []string{"nodesFile", "required"}},
		{"bad node name", "nodeName: Node_1\nnodesFile: /x\n", nil, []string{"nodeName", "Kubernetes node name"}},
		{"relative path", base + "stateDir: var/lib\n", nil, []string{"stateDir", "absolute path"}},
		{"bad env value", base, []string{"KINDNET_RESYNC_INTERVAL=soon"}, []string{"resyncInterval", "env KINDNET_RESYNC_INTERVAL", "duration"}},
		{"unknown env", base, []string{"KINDNET_CLUSTER_CIDR=10.0.0.0/8"}, []string{"KINDNET_CLUSTER_CIDR", "unknown variable"}},
		{"not YAML", "nodeName: [\n", nil, []string{"not valid YAML"}},
		{"bad table name", base + "masquerade:\n  table: filter\n", nil, []string{"masquerade.table", "starting with \"kindnet\""}},
		{"bad metrics address", base + "metricsAddress: localhost\n", nil, []string{"metricsAddress", "host:port"}},
		{"CRI endpoint over TCP", base + "cri:\n  endpoint: tcp://10.0.0.1:1234\n", nil,
			[]string{"cri.endpoint", `"tcp://10.0.0.1:1234"`, "only Unix sockets", `"auto"`, `"none"`}},
		{"CRI endpoint relative", base, []string{"KINDNET_CRI_ENDPOINT=unix://run/containerd/containerd.sock"},
			[]string{"cri.endpoint", "env KINDNET_CRI_ENDPOINT", "absolute socket path"}},
		{"CRI socket path too long", base + "cri:\n  endpoint: /" + strings.Repeat("x", 120) + "\n", nil,
			[]string{"cri.endpoint", "at most 107 bytes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Load(Sources{File: writeFile(t, c.file), FileRequired: true, Environ: c.env})
			if err == nil {
				t.Fatal("no error")
			}
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestEveryErrorIsReportedAtOnce(t *testing.T) {
	_, err := Load(Sources{File: writeFile(t, base+"clusterCIDRs: [bad]\ncni:\n  plugin: x\nlogLevel: loud\n"), FileRequired: true})
	for _, w := range []string{"clusterCIDRs[0]", "cni.plugin", "logLevel"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v lacks %s", err, w)
		}
	}
}

func TestCRIEndpoints(t *testing.T) {
	cases := []struct {
		name, value string
		want        []string
		auto        bool
	}{
		{"default looks at the well-known sockets", "", CRIWellKnownEndpoints, true},
		{"auto", "auto", CRIWellKnownEndpoints, true},
		{"none", "none", nil, false},
		{"empty turns it off", `""`, nil, false},
		{"a URL", "unix:///run/k3s/containerd/containerd.sock", []string{"unix:///run/k3s/containerd/containerd.sock"}, false},
		{"a bare path", "/var/run/crio/crio.sock", []string{"unix:///var/run/crio/crio.sock"}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			file := base
			if c.value != "" {
				file += "cri:\n  endpoint: " + c.value + "\n"
			}
			l, err := Load(Sources{File: writeFile(t, file), FileRequired: true})
			if err != nil {
				t.Fatal(err)
			}
			got, auto := l.CRIEndpoints()
			if strings.Join(got, " ") != strings.Join(c.want, " ") || auto != c.auto {
				t.Errorf("CRIEndpoints() = %q auto %v, want %q auto %v", got, auto, c.want, c.auto)
			}
		})
	}
}

func TestEnvAndFlagNamesFollowKeys(t *testing.T) {
	for key, want := range map[string][2]string{
		"masquerade.noMasqueradeCIDRs": {"KINDNET_MASQUERADE_NO_MASQUERADE_CIDRS", "masquerade-no-masquerade-cidrs"},
		"clusterCIDRs":                 {"KINDNET_CLUSTER_CIDRS", "cluster-cidrs"},
		"cni.mtu":                      {"KINDNET_CNI_MTU", "cni-mtu"},
		"nodeName":                     {"KINDNET_NODE_NAME", "node-name"},
		"cri.endpoint":                 {"KINDNET_CRI_ENDPOINT", "cri-endpoint"},
	} {
		f, _ := fieldByKey(key)
		if f.EnvName() != want[0] || f.FlagName() != want[1] {
			t.Errorf("%s: env %s flag %s, want %v", key, f.EnvName(), f.FlagName(), want)
		}
	}
}

func TestShippedExampleIsValidAndComplete(t *testing.T) {
	data, err := os.ReadFile("../../packaging/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range Keys() {
		leaf := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(string(data), leaf+":") {
			t.Errorf("packaging/config.yaml does not document %s", k)
		}
	}
	// The example is all comments: loading it gives the defaults.
	if _, err := Load(Sources{File: "../../packaging/config.yaml", FileRequired: true, Environ: []string{"KINDNET_NODE_NAME=n1"}}); err != nil {
		t.Fatal(err)
	}
}

// loadErr loads a config file body and returns the error, which must be a
// *config.Error (exit 2).
func loadErr(t *testing.T, body string) error {
	t.Helper()
	_, err := Load(Sources{File: writeFile(t, body), FileRequired: true})
	var ce *Error
	if err != nil && !errors.As(err, &ce) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	return err
}

func TestRangesPodsCannotUseAreRefused(t *testing.T) {
	cases := []struct {
		name, file string
		want       []string
	}{
		{"loopback clusterCIDR", "clusterCIDRs: [127.0.0.0/8]\n", []string{"clusterCIDRs[0]", "special range 127.0.0.0/8"}},
		{"multicast clusterCIDR", "clusterCIDRs: [10.244.0.0/16, 224.0.0.0/4]\n", []string{"clusterCIDRs[1]", "special range 224.0.0.0/4"}},
		{"link-local clusterCIDR", "clusterCIDRs: [169.254.0.0/16]\n", []string{"clusterCIDRs[0]", "special range 169.254.0.0/16"}},
		{"IPv6 link-local clusterCIDR", "clusterCIDRs: [fe80::/64]\n", []string{"clusterCIDRs[0]", "special range fe80::/10"}},
		{"unspecified clusterCIDR", "clusterCIDRs: [0.0.0.0/8]\n", []string{"clusterCIDRs[0]", "special range 0.0.0.0/8"}},
		{"IPv6 unspecified clusterCIDR", "clusterCIDRs: [\"::/128\"]\n", []string{"clusterCIDRs[0]", "special range ::/127"}},
		{"halves of IPv4", "clusterCIDRs: [0.0.0.0/1, 128.0.0.0/1]\n", []string{"clusterCIDRs", "cover every IPv4 address"}},
		{"halves of IPv6", "clusterCIDRs: [\"::/1\", \"8000::/1\"]\n", []string{"clusterCIDRs", "cover every IPv6 address"}},
		{"loopback podCIDR", "podCIDRs: [127.1.0.0/24]\n", []string{"podCIDRs[0]", "special range 127.0.0.0/8"}},
		{"multicast podCIDR", "podCIDRs: [10.244.1.0/24, ff02::/64]\n", []string{"podCIDRs[1]", "special range ff00::/8"}},
		{"podCIDR /32", "podCIDRs: [10.244.1.1/32]\n", []string{"podCIDRs[0]", "no usable pod address"}},
		{"podCIDR /31", "clusterCIDRs: [10.244.0.0/16]\npodCIDRs: [10.244.1.0/31]\n", []string{"podCIDRs[0]", "no usable pod address"}},
		{"podCIDR /127", "podCIDRs: [\"fd00:10:244:1::/127\"]\n", []string{"podCIDRs[0]", "no usable pod address"}},
		{"podCIDR /128", "podCIDRs: [\"fd00:10:244:1::1/128\"]\n", []string{"podCIDRs[0]", "no usable pod address"}},
		{"podCIDR too wide", "podCIDRs: [10.0.0.0/7]\n", []string{"podCIDRs[0]", "too wide"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := loadErr(t, base+c.file)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	ok := "clusterCIDRs: [10.244.0.0/16, \"fd00:10:244::/56\"]\npodCIDRs: [10.244.1.0/30, \"fd00:10:244:1::/126\"]\n"
	if err := loadErr(t, base+ok); err != nil {
		t.Errorf("%q refused: %v", ok, err)
	}
}

func TestWithoutClusterCIDRsOwnPodCIDRsMustBePrivate(t *testing.T) {
	for _, c := range []string{"8.0.0.0/8", "1.2.3.0/24", "\"2001:db8:1::/64\""} {
		err := loadErr(t, base+"podCIDRs: ["+c+"]\n")
		if err == nil || !strings.Contains(err.Error(), "podCIDRs[0]") || !strings.Contains(err.Error(), "list the cluster's pod ranges in clusterCIDRs") {
			t.Errorf("public podCIDR %s: %v", c, err)
		}
	}
	for _, c := range []string{"10.244.1.0/24", "172.16.1.0/24", "192.168.1.0/24", "100.64.1.0/24", "\"fd00:10:244:1::/64\""} {
		if err := loadErr(t, base+"podCIDRs: ["+c+"]\n"); err != nil {
			t.Errorf("private podCIDR %s refused: %v", c, err)
		}
	}
	// Public space the operator lists in clusterCIDRs is accepted.
	if err := loadErr(t, base+"clusterCIDRs: [8.0.0.0/8, \"2001:db8::/32\"]\npodCIDRs: [8.1.0.0/24, \"2001:db8:1::/64\"]\n"); err != nil {
		t.Errorf("public podCIDRs inside clusterCIDRs refused: %v", err)
	}
}

func TestSystemDirectoriesAreNotKindnets(t *testing.T) {
	bad := []string{"/", "/etc", "/var", "/run", "/tmp", "/home", "/root", "/boot", "/var/lib", "/var/lib/", "/var/lib/kindnet/..",
		"/var/run", "/usr", "/usr/lib/kindnet", "/usr/local/kindnet", "/etc/kubernetes", "/etc/kubernetes/pki", "/proc/sys/net", "//etc"}
	for _, key := range []string{"stateDir", "runDir", "cni.confDir"} {
		for _, d := range bad {
			body := base + strings.Replace(key, "cni.", "cni:\n  ", 1) + ": " + d + "\n"
			err := loadErr(t, body)
			if err == nil || !strings.Contains(err.Error(), key+" = ") || !strings.Contains(err.Error(), "expected a directory of kindnet's own") {
				t.Errorf("%s: %s accepted or misreported: %v", key, d, err)
			}
		}
	}
	for _, d := range []string{"/var/lib/kindnet", "/run/kindnet-lab", "/srv/kindnet/state", "/opt/kindnet"} {
		if err := loadErr(t, base+"stateDir: "+d+"\n"); err != nil {
			t.Errorf("stateDir %s refused: %v", d, err)
		}
	}
	err := loadErr(t, base+"stateDir: /var/lib/kindnet\ncni:\n  confDir: /var/lib/kindnet/\n")
	if err == nil || !strings.Contains(err.Error(), "cni.confDir") || !strings.Contains(err.Error(), "is also stateDir") {
		t.Errorf("confDir = stateDir: %v", err)
	}
}

func TestNodesFileMustBeARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "nodes.fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{fifo: "a named pipe (FIFO)", dir: "a directory", "/dev/null": "a character device"} {
		err := loadErr(t, "nodeName: n1\nnodesFile: "+path+"\n")
		if err == nil || !strings.Contains(err.Error(), "nodesFile = \""+path+"\"") || !strings.Contains(err.Error(), "is "+kind+", not a regular file") {
			t.Errorf("%s: %v", path, err)
		}
	}
	regular := filepath.Join(dir, "nodes.yaml")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{regular, filepath.Join(dir, "not-yet.yaml")} {
		if err := loadErr(t, "nodeName: n1\nnodesFile: "+p+"\n"); err != nil {
			t.Errorf("%s refused: %v", p, err)
		}
	}
}
