package cli

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

func runCLI(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Execute(args, &out, &errb, env)
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("nodeName: n1\nnodesFile: /etc/kindnet/nodes.yaml\nclusterCIDRs: [10.244.0.0/16]\n"), 0o600)
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("nodeName: n1\nnodesFile: /x\nclusterCIDRs: [10.244.0.1/16]\nmasqurade: {}\n"), 0o600)
	cases := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr []string
	}{
		{"valid config", []string{"config", "validate", "--config", good}, ExitOK, "ok\n", nil},
		{"invalid config", []string{"config", "validate", "--config", bad}, ExitBadConfig, "", []string{"masqurade", "unknown key"}},
		{"missing explicit file", []string{"config", "validate", "--config", filepath.Join(dir, "nope.yaml")}, ExitBadConfig, "", []string{"nope.yaml", "cannot read"}},
		{"bad flag value", []string{"config", "validate", "--config", good, "--cni-plugin", "flannel"}, ExitBadConfig, "", []string{"cni.plugin", "flag --cni-plugin", `"flannel"`}},
		{"agent refuses bad config before touching anything", []string{"agent", "--config", bad}, ExitBadConfig, "", []string{"clusterCIDRs[0]", "expected 10.244.0.0/16"}},
		{"unknown flag", []string{"agent", "--bogus"}, ExitUsage, "", []string{"unknown flag: --bogus"}},
		{"unknown command", []string{"frobnicate"}, ExitUsage, "", []string{"unknown command"}},
		{"extra argument", []string{"version", "extra"}, ExitUsage, "", []string{"unknown command"}},
		{"completion needs a shell", []string{"completion"}, ExitUsage, "", []string{"accepts 1 arg"}},
		{"version", []string{"version", "--short"}, ExitOK, "", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := runCLI(t, []string{"PATH=/bin"}, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", code, c.code, out, errs)
			}
			if c.stdout != "" && out != c.stdout {
				t.Errorf("stdout %q, want %q", out, c.stdout)
			}
			for _, w := range c.stderr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
		})
	}
}

func TestConfigShowSaysWhereValuesComeFrom(t *testing.T) {
	code, out, errs := runCLI(t, []string{"KINDNET_CNI_MTU=1400"}, "config", "show", "--node-name", "n9", "--nodes-file", "/n.yaml")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"nodeName: n9  # flag --node-name", "cni.mtu: 1400  # env KINDNET_CNI_MTU", "cni.plugin: ptp  # default"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

func TestCompletionScripts(t *testing.T) {
	for shell, marker := range map[string]string{"bash": "__start_kindnet", "zsh": "#compdef kindnet", "fish": "complete -c kindnet"} {
		code, out, errs := runCLI(t, nil, "completion", shell)
		if code != ExitOK || !strings.Contains(out, marker) {
			t.Errorf("%s: exit %d, marker %q missing (stderr %s)", shell, code, marker, errs)
		}
	}
	if code, _, _ := runCLI(t, nil, "completion", "powershell"); code != ExitUsage {
		t.Errorf("powershell: exit %d, want %d", code, ExitUsage)
	}
}

func TestConfigValidateRefusesWhatIssue14Names(t *testing.T) {
	dir := t.TempDir()
	cases := map[string][]string{
		"runDir: /etc/kubernetes\n":                      {"runDir = \"/etc/kubernetes\"", "expected a directory of kindnet's own"},
		"stateDir: /var/lib\n":                           {"stateDir = \"/var/lib\""},
		"cni:\n  confDir: /usr/lib/cni\n":                {"cni.confDir = \"/usr/lib/cni\""},
		"podCIDRs: [8.0.0.0/24]\n":                       {"podCIDRs[0] = \"8.0.0.0/24\"", "clusterCIDRs"},
		"podCIDRs: [10.244.1.0/32]\n":                    {"podCIDRs[0]", "no usable pod address"},
		"clusterCIDRs: [0.0.0.0/1, 128.0.0.0/1]\n":       {"clusterCIDRs", "every IPv4 address"},
		"clusterCIDRs: [10.244.0.0/16, 127.0.0.0/8]\n":   {"clusterCIDRs[1]", "special range 127.0.0.0/8"},
		"nodesFile: " + dir + "\n":                       {"nodesFile", "a directory, not a regular file"},
		"clusterCIDRs: [\"fe80::/64\", 10.244.0.0/16]\n": {"clusterCIDRs[0]", "special range fe80::/10"},
	}
	i := 0
	for body, want := range cases {
		i++
		cfg := filepath.Join(dir, fmt.Sprintf("c%d.yaml", i))
		if !strings.HasPrefix(body, "nodesFile") {
			body = "nodesFile: /etc/kindnet/nodes.yaml\n" + body
		}
		os.WriteFile(cfg, []byte("nodeName: n1\n"+body), 0o600)
		code, _, errs := runCLI(t, []string{"PATH=/bin"}, "config", "validate", "--config", cfg)
		if code != ExitBadConfig {
			t.Errorf("%q: exit %d, want %d\n%s", body, code, ExitBadConfig, errs)
		}
		for _, w := range want {
			if !strings.Contains(errs, w) {
				t.Errorf("%q: stderr lacks %q:\n%s", body, w, errs)
			}
		}
	}
}

func TestConfigValidateWarnsAboutAConfigOthersCanWrite(t *testing.T) {
	netnstest.RequireHostRoot(t, "the file must be owned by root to tell the modes apart")
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(cfg, []byte("nodeName: n1\nnodesFile: /etc/kindnet/nodes.yaml\n"), 0o600)
	if err := os.Chmod(cfg, 0o666); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, []string{"PATH=/bin"}, "config", "validate", "--config", cfg)
	if code != ExitOK || out != "ok\n" || !strings.Contains(errs, "warning: insecure: config file "+cfg) {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
