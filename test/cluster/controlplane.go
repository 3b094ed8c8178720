package cluster

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
)

func prefixList(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

// controlPlane starts etcd and kube-apiserver (internal/kubetest, in the
// control-plane namespace), writes the kubeconfigs, starts the
// controller-manager and the scheduler, and applies kindnet's RBAC so the
// agents may list Nodes with kubelet's identity.
func (u *upper) controlPlane(ctx context.Context) error {
	c := u.c
	dir := filepath.Join(c.Dir, "cp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	bins := u.o.Bins
	sctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	api, err := kubetest.Start(sctx, kubetest.Options{Dir: dir, NetNS: c.CP.NS, Addr: c.CP.IPv4, Log: u.o.Log,
		Cluster: true, ServiceCIDRs: ServiceCIDRs, Detach: true}, bins.APIServer, bins.Etcd)
	if api != nil {
		for _, name := range []string{"etcd", "kube-apiserver"} {
			if pid := api.PIDs()[name]; pid != 0 {
				if err := u.record(name, "", pid, filepath.Join(dir, name+".log")); err != nil {
					return err
				}
			}
		}
	}
	if err != nil {
		return err
	}
	u.api = api
	if err := api.WriteAdminKubeconfig(c.AdminKubeconfig()); err != nil {
		return err
	}
	kc := func(user string) (string, error) {
		cert, key, err := api.CA.Issue(kubetest.CertSpec{CommonName: user})
		if err != nil {
			return "", err
		}
		p := filepath.Join(dir, strings.TrimPrefix(user, "system:")+".conf")
		return p, api.WriteKubeconfig(p, kubetest.Kubeconfig{CertPEM: cert, KeyPEM: key})
	}
	cm, err := kc("system:kube-controller-manager")
	if err != nil {
		return err
	}
	sched, err := kc("system:kube-scheduler")
	if err != nil {
		return err
	}
	if err := u.spawnCP("kube-controller-manager", bins.Kube("kube-controller-manager"),
		"--kubeconfig", cm, "--authentication-kubeconfig", cm, "--authorization-kubeconfig", cm,
		"--bind-address", "127.0.0.1", "--leader-elect=false",
		"--allocate-node-cidrs", "--cluster-cidr", prefixList(ClusterCIDRs),
		"--node-cidr-mask-size-ipv4", "24", "--node-cidr-mask-size-ipv6", "64",
		"--service-cluster-ip-range", prefixList(ServiceCIDRs),
		"--service-account-private-key-file", api.Path("sa.key"), "--root-ca-file", api.Path("ca.crt"),
		"--use-service-account-credentials", "--profiling=false",
	); err != nil {
		return err
	}
	if err := u.spawnCP("kube-scheduler", bins.Kube("kube-scheduler"),
		"--kubeconfig", sched, "--authentication-kubeconfig", sched, "--authorization-kubeconfig", sched,
		"--bind-address", "127.0.0.1", "--leader-elect=false", "--profiling=false",
	); err != nil {
		return err
	}
	// What the docs tell a user to run once per cluster.
	rbac, err := exec.CommandContext(ctx, bins.Kindnet, "rbac").Output()
	if err != nil {
		return fmt.Errorf("kindnet rbac: %w", err)
	}
	if _, err := u.c.Kubectl(ctx, bins, rbac, "apply", "-f", "-"); err != nil {
		return fmt.Errorf("apply kindnet's RBAC: %w", err)
	}
	return nil
}

func (u *upper) spawnCP(name, bin string, args ...string) error {
	p, err := u.api.Spawn(name, bin, args...)
	if err != nil {
		return err
	}
	return u.record(name, "", p.PID, p.Log)
}

// Kubectl runs kubectl as the cluster admin inside the control-plane
// namespace, with stdin as its input, and returns its output.
func (c *Cluster) Kubectl(ctx context.Context, bins Binaries, stdin []byte, args ...string) (string, error) {
	argv := append([]string{"netns", "exec", c.CP.NS, bins.Kube("kubectl"), "--kubeconfig", c.AdminKubeconfig()}, args...)
	cmd := exec.CommandContext(ctx, "ip", argv...)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
