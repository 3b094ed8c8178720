package cluster

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
)

// Binaries are the programs a cluster runs.
type Binaries struct {
	// Kubernetes holds kubelet, kube-proxy, kube-controller-manager,
	// kube-scheduler, kubectl and agnhost (scripts/tools.sh path kubernetes).
	Kubernetes string `json:"kubernetes"`
	APIServer  string `json:"apiserver"`
	Etcd       string `json:"etcd"`
	// Containerd holds containerd, containerd-shim-runc-v2 and ctr.
	Containerd string `json:"containerd"`
	CoreDNS    string `json:"coredns"`
	// Kindnet is the kindnet binary, installed on every node as the
	// package installs it.
	Kindnet string `json:"kindnet"`
	// Tool is kindnet-cluster itself (its notify-sink stands in for
	// systemd's notify socket).
	Tool string `json:"tool"`
	// From Debian (make deps): runc, and the CNI loopback plugin.
	Runc     string `json:"runc"`
	Loopback string `json:"loopback"`
}

// Kube is the path of a program in the Kubernetes directory.
func (b Binaries) Kube(name string) string { return filepath.Join(b.Kubernetes, name) }

// FindBinaries locates the cached tools (scripts/tools.sh) and checks
// that every program is there and executable; the error names the
// missing one and how to get it.
func FindBinaries(kindnet, tool string) (Binaries, error) {
	b := Binaries{Kindnet: kindnet, Tool: tool, Runc: "/usr/sbin/runc", Loopback: "/usr/lib/cni/loopback"}
	for name, dst := range map[string]*string{
		"kubernetes": &b.Kubernetes, "kube_apiserver": &b.APIServer, "etcd": &b.Etcd,
		"containerd2": &b.Containerd, "coredns": &b.CoreDNS,
	} {
		p, err := kubetest.ToolPath(name)
		if err != nil {
			return b, err
		}
		*dst = p
	}
	return b, b.check()
}

func (b Binaries) check() error {
	tools := []string{b.APIServer, b.Etcd, b.CoreDNS,
		filepath.Join(b.Containerd, "containerd"), filepath.Join(b.Containerd, "containerd-shim-runc-v2"), filepath.Join(b.Containerd, "ctr")}
	for _, k := range []string{"kubelet", "kube-proxy", "kube-controller-manager", "kube-scheduler", "kubectl", "agnhost"} {
		tools = append(tools, b.Kube(k))
	}
	for _, p := range tools {
		if !executable(p) {
			return fmt.Errorf("%s is not built: run `make tools` (the Kubernetes binaries take about 30 minutes on 2 cores the first time, then they are cached)", p)
		}
	}
	for _, p := range []string{b.Runc, b.Loopback} {
		if !executable(p) {
			return fmt.Errorf("%s is missing: run `make deps` (Debian packages runc and containernetworking-plugins)", p)
		}
	}
	for _, p := range []string{b.Kindnet, b.Tool} {
		if !executable(p) {
			return fmt.Errorf("%s is missing: run `make build`", p)
		}
	}
	return nil
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}
