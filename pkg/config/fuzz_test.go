package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzConfigFile: any file either loads into a configuration whose typed
// accessors work, or fails with a *config.Error (exit 2) — never a panic.
func FuzzConfigFile(f *testing.F) {
	if b, err := os.ReadFile("../../packaging/config.yaml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(base + "clusterCIDRs: [10.244.0.0/16, fd00:10:244::/56]\npodCIDRs: [10.244.1.0/24]\ncni: {mtu: 1400, plugin: bridge}\n"))
	f.Add([]byte("masquerade: {noMasqueradeCIDRs: [192.168.0.0/16], table: kindnet_x}\nresyncInterval: 1h\n"))
	f.Add([]byte("cni: 5\n"))
	f.Add([]byte("cri: {endpoint: unix:///run/containerd/containerd.sock}\n"))
	f.Add([]byte("cri: {endpoint: ' /run/crio/crio.sock '}\n"))
	f.Add([]byte("nodeName: [a, b]\n"))
	f.Add([]byte("clusterCIDRs: [0.0.0.0/1, 128.0.0.0/1, \"::/1\", \"8000::/1\"]\npodCIDRs: [10.244.1.1/32]\n"))
	f.Add([]byte("podCIDRs: [8.0.0.0/24, \"fe80::/64\"]\nstateDir: /var/lib/\nrunDir: /etc/kubernetes/..\ncni: {confDir: /usr/x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		l, err := Load(Sources{File: path, FileRequired: true, Environ: []string{"KINDNET_NODE_NAME=n1", "KINDNET_NODES_FILE=/n.yaml"}})
		if err != nil {
			var ce *Error
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *config.Error", err)
			}
			return
		}
		_ = l.ClusterPrefixes()
		_ = l.PodPrefixes()
		_ = l.NoMasqueradePrefixes()
		_, _ = l.CRIEndpoints()
		_ = l.Render()
	})
}
