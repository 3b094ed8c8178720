package packaging

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// script runs one of the repository's scripts as an unprivileged preview
// (--dry-run needs no root and changes nothing) and returns its output
// and exit code.
func script(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot, "scripts", name), args...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%s: %v", name, err)
	return "", 0
}

func TestKubeadmScriptsRejectBadArguments(t *testing.T) {
	tests := []struct {
		script  string
		args    []string
		code    int
		message string
	}{
		{"kubeadm-init.sh", nil, 64, "--pod-subnet is required"},
		{"kubeadm-init.sh", []string{"--pod-subnet"}, 64, "--pod-subnet needs a value"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0"}, 64, "'10.244.0.0' is not a CIDR"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/33"}, 64, "'10.244.0.0/33' is not a CIDR"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "300.1.0.0/16"}, 64, "'300.1.0.0/16' is not a CIDR"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16,10.245.0.0/16"}, 64, "more than one range of an IP family"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--service-subnet", "nope"}, 64, "--service-subnet: 'nope' is not a CIDR"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--node-name", "Node_1"}, 64, "'Node_1' is not a Kubernetes node name"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--package", "kindnet.tar.gz"}, 64, "neither a .deb nor an .rpm"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--package", "/nonexistent/kindnet.deb"}, 64, "cannot read '/nonexistent/kindnet.deb'"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--api-timeout", "soon"}, 64, "'soon' is not a number of seconds"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--bogus"}, 64, "unknown argument '--bogus'"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--token-ttl", "0s"}, 64, "'0s' is not a duration"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--token-ttl", "1d"}, 64, "'1d' is not a duration"},
		{"kubeadm-init.sh", []string{"--pod-subnet", "10.244.0.0/16", "--kubeadm-config", "/nonexistent/k.yaml"}, 64, "--kubeadm-config: cannot read '/nonexistent/k.yaml'"},
		{"kubeadm-join.sh", []string{"--dry-run", "--pod-subnet", "10.244.0.0/16"}, 64, "how to join is missing: give --join-config FILE"},
		{"kubeadm-join.sh", []string{"--dry-run", "--pod-subnet", "10.244.0.0/16", "--join-config", "/nonexistent/j.yaml"}, 64, "--join-config: cannot read '/nonexistent/j.yaml'"},
		{"kubeadm-join.sh", []string{"--pod-subnet", "10.244.0.0/16", "192.0.2.1:6443"}, 64, "kubeadm join's arguments go after --"},
		{"kubeadm-join.sh", []string{"--pod-subnet", "fd00::/56,fd01::/56", "--dry-run", "--", "x"}, 64, "more than one range of an IP family"},
	}
	for _, tt := range tests {
		t.Run(tt.script+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			out, code := script(t, tt.script, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.message) {
				t.Errorf("exit %d, want %d; output:\n%s\nwant it to say %q", code, tt.code, out, tt.message)
			}
			if tt.code == 64 && !strings.Contains(out, "--help") {
				t.Errorf("a usage error should point to --help:\n%s", out)
			}
		})
	}
}

func TestKubeadmScriptsHelp(t *testing.T) {
	for _, name := range []string{"kubeadm-init.sh", "kubeadm-join.sh"} {
		out, code := script(t, name, "--help")
		if code != 0 || !strings.Contains(out, "--pod-subnet CIDR[,CIDR]") || !strings.Contains(out, "--dry-run") || strings.Contains(out, "#") {
			t.Errorf("%s --help (exit %d):\n%s", name, code, out)
		}
	}
}

// TestKubeadmDryRunPrintsTheConfigKindnetAcceptsAndTheCommands runs both
// scripts in --dry-run mode with a real package, checks the config they
// would write is one `kindnet config validate` accepts with the pod ranges
// as clusterCIDRs, and that the commands are the bootstrap's.
func TestKubeadmDryRunPrintsTheConfigKindnetAcceptsAndTheCommands(t *testing.T) {
	needTools(t, "dpkg-deb")
	if _, err := os.Stat("/etc/kubernetes/admin.conf"); err == nil {
		t.Skip("this machine is a kubeadm control plane: the dry run would (rightly) skip kubeadm init")
	}
	p := packagesFor(t, "1.0.0")
	out, code := script(t, "kubeadm-init.sh", "--dry-run", "--pod-subnet", "10.244.0.0/16,fd00:10:244::/56",
		"--service-subnet", "10.96.0.0/12,fd00:10:96::/112", "--node-name", "cp1", "--package", p.deb,
		"--kubernetes-version", "v1.37.2", "--token-ttl", "30m", "--", "--skip-phases=addon/kube-proxy")
	if code != 0 {
		t.Fatalf("kubeadm-init.sh --dry-run: exit %d\n%s", code, out)
	}
	for _, want := range []string{
		"would run: env DEBIAN_FRONTEND=noninteractive dpkg --force-confold -i " + p.deb,
		"would write /etc/kindnet/config.yaml:",
		"would run: systemctl start kindnet.service",
		"would write a kubeadm config (mode 0600, removed after kubeadm init):",
		"    - token: \"<a new token from kubeadm token generate>\"\n",
		"      ttl: 30m\n",
		"      groups: [system:bootstrappers:kubeadm:default-node-token]\n",
		"    nodeRegistration:\n      name: cp1\n",
		"      podSubnet: \"10.244.0.0/16,fd00:10:244::/56\"\n      serviceSubnet: \"10.96.0.0/12,fd00:10:96::/112\"\n",
		"    kubernetesVersion: \"v1.37.2\"\n",
		"would run: kubeadm init --config=KUBEADM-CONFIG --skip-token-print --skip-phases=addon/kube-proxy",
		"would run: kubectl --kubeconfig=/etc/kubernetes/admin.conf get --raw=/readyz",
		"would run: kindnet rbac | kubectl --kubeconfig=/etc/kubernetes/admin.conf apply -f -",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("dry run lacks %q:\n%s", want, out)
		}
	}
	// The steps come in the bootstrap's order.
	order := []string{"dpkg --force-confold", "would write /etc/kindnet/config.yaml", "systemctl start kindnet", "kubeadm init", "get --raw=/readyz", "kindnet rbac", "kubeadm token create --ttl 30m", "would write /etc/kubernetes/kindnet-join.yaml"}
	last := -1
	for _, step := range order {
		i := strings.Index(out, step)
		if i < last {
			t.Errorf("%q comes before an earlier step:\n%s", step, out)
		}
		last = i
	}
	cfg := configFrom(t, out)
	if !strings.Contains(cfg, "clusterCIDRs: [10.244.0.0/16, fd00:10:244::/56]\n") || !strings.Contains(cfg, "nodeName: cp1\n") {
		t.Errorf("config:\n%s", cfg)
	}
	validate(t, cfg)

	out, code = script(t, "kubeadm-join.sh", "--dry-run", "--pod-subnet", "10.244.0.0/16", "--package", p.deb,
		"--", "192.0.2.10:6443", "--token", "abcdef.0123456789abcdef", "--discovery-token-ca-cert-hash", "sha256:00ff")
	if code != 0 {
		t.Fatalf("kubeadm-join.sh --dry-run: exit %d\n%s", code, out)
	}
	if want := "would run: kubeadm join 192.0.2.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:00ff"; !strings.Contains(out, want) {
		t.Errorf("join dry run lacks %q:\n%s", want, out)
	}
	cfg = configFrom(t, out)
	if !strings.Contains(cfg, "clusterCIDRs: [10.244.0.0/16]\n") || strings.Contains(cfg, "nodeName") {
		t.Errorf("join config:\n%s", cfg)
	}
	validate(t, cfg)

	// With the join file kubeadm-init.sh writes: the token stays in the
	// file, kubeadm reads it from there; the agent starts first.
	joinFile := filepath.Join(t.TempDir(), "kindnet-join.yaml")
	if err := os.WriteFile(joinFile, []byte("apiVersion: kubeadm.k8s.io/v1beta4\nkind: JoinConfiguration\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, code = script(t, "kubeadm-join.sh", "--dry-run", "--pod-subnet", "10.244.0.0/16", "--package", p.deb,
		"--join-config", joinFile, "--node-name", "w1", "--", "--ignore-preflight-errors=Swap")
	if code != 0 {
		t.Fatalf("kubeadm-join.sh --dry-run --join-config: exit %d\n%s", code, out)
	}
	want := "would run: kubeadm join --config=" + joinFile + " --node-name=w1 --ignore-preflight-errors=Swap"
	if !strings.Contains(out, want) || strings.Index(out, "systemctl start kindnet") > strings.Index(out, "kubeadm join") {
		t.Errorf("join dry run lacks %q after starting kindnet:\n%s", want, out)
	}
}

// configFrom extracts the indented config after "would write …:".
func configFrom(t *testing.T, out string) string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "would write /etc/kindnet/config.yaml:\n")
	if !ok {
		t.Fatalf("no config in:\n%s", out)
	}
	var b strings.Builder
	for _, l := range strings.Split(rest, "\n") {
		if !strings.HasPrefix(l, "    ") {
			break
		}
		b.WriteString(strings.TrimPrefix(l, "    ") + "\n")
	}
	return b.String()
}

// validate runs `kindnet config validate` on a config, with the binary of
// this tree (go run: no install needed).
func validate(t *testing.T, cfg string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "./cmd/kindnet", "config", "validate", "--config", f, "--node-name", "node1")
	cmd.Dir = repoRoot
	cmd.Env = append(os.Environ(), "KINDNET_CONFIG=")
	if out, err := cmd.CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("kindnet config validate rejects the config the script would write: %v\n%s\nconfig:\n%s", err, out, cfg)
	}
}

// TestShellScriptsAreShellcheckClean checks the scripts of the repository
// and the maintainer scripts as packaged (assembled by packaging/build.sh).
func TestShellScriptsAreShellcheckClean(t *testing.T) {
	needTools(t, "shellcheck", "dpkg-deb", "rpm")
	files := []string{"scripts/kubeadm-init.sh", "scripts/kubeadm-join.sh", "scripts/kubeadm-lib.sh",
		"scripts/tools.sh", "scripts/lab.sh", "packaging/build.sh", "scripts/qemu-exec.sh"}
	for i, f := range files {
		files[i] = filepath.Join(repoRoot, f)
	}
	p := packagesFor(t, "1.0.0")
	ctl := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-e", p.deb, ctl).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -e: %v\n%s", err, out)
	}
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		files = append(files, filepath.Join(ctl, s))
	}
	for _, tag := range []string{"POSTIN", "PREUN", "POSTUN"} {
		body := rpmHost(t, "-qp", "--qf", "%{"+tag+"}", p.rpm)
		f := filepath.Join(ctl, "rpm-"+strings.ToLower(tag))
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	cmd := exec.Command("shellcheck", append([]string{"-x", "-s", "bash", "-S", "style"}, files[:7]...)...)
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck (repository scripts): %v\n%s", err, out)
	}
	// Maintainer scripts run under /bin/sh (dash on Debian). Each holds
	// all the shared helpers of packaging/scripts/lib.sh, whether it calls
	// them or not: SC2317 ("unreachable") is expected there.
	cmd = exec.Command("shellcheck", append([]string{"-s", "sh", "-S", "style", "-e", "SC2317"}, files[7:]...)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("shellcheck (maintainer scripts as packaged): %v\n%s", err, out)
	}
}

// TestPkgVersionOrdersForDpkg checks the package versions derived from
// kindnet versions, and that dpkg orders them as releases are ordered.
func TestPkgVersionOrdersForDpkg(t *testing.T) {
	tests := []struct{ in, want string }{
		{"1.2.3", "1.2.3"},
		{"v1.2.3", "1.2.3"},
		{"1.2.3-rc.1", "1.2.3~rc.1"},
		{"0.1.0-dev", "0.1.0~dev"},
		{"1.2.3-4-gabc1234", "1.2.3+4.gabc1234"},
		{"1.2.3-rc.1-4-gabc1234", "1.2.3~rc.1+4.gabc1234"},
		{"1.2.3+meta.1", "1.2.3+meta.1"},
	}
	for _, tt := range tests {
		if got := pkgVersion(t, tt.in); got != tt.want {
			t.Errorf("pkg-version %s = %s, want %s", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"1.2", "latest", "1.2.3-rc 1", "1.2.3-"} {
		out, err := exec.Command(filepath.Join(repoRoot, "packaging", "build.sh"), "pkg-version", bad).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "VERSION="+bad) {
			t.Errorf("pkg-version %q: err %v, output %q; want an error naming the version", bad, err, out)
		}
	}
	if _, err := exec.LookPath("dpkg"); err != nil {
		return
	}
	ascending := []string{"0.1.0~dev", "0.1.0", "1.2.3~rc.1", "1.2.3~rc.1+4.gabc1234", "1.2.3", "1.2.3+4.gabc1234", "1.2.4~rc.1"}
	for i := 1; i < len(ascending); i++ {
		if err := exec.Command("dpkg", "--compare-versions", ascending[i-1], "lt", ascending[i]).Run(); err != nil {
			t.Errorf("dpkg does not order %s before %s", ascending[i-1], ascending[i])
		}
	}
}
