package kubetest

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries returns the cached kube-apiserver and etcd that `make tools`
// builds. KINDNET_KUBE_APISERVER and KINDNET_ETCD override the paths;
// otherwise scripts/tools.sh says where they are, so the versions are
// written down in one place only.
func Binaries() (apiserver, etcd string, err error) {
	apiserver, etcd = os.Getenv("KINDNET_KUBE_APISERVER"), os.Getenv("KINDNET_ETCD")
	if apiserver == "" || etcd == "" {
		root, err := repoRoot()
		if err != nil {
			return "", "", err
		}
		if apiserver == "" {
			if apiserver, err = toolPath(root, "kube_apiserver"); err != nil {
				return "", "", err
			}
		}
		if etcd == "" {
			if etcd, err = toolPath(root, "etcd"); err != nil {
				return "", "", err
			}
		}
	}
	for _, p := range []string{apiserver, etcd} {
		if st, err := os.Stat(p); err != nil || st.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%s is not built: run `make tools` (about 5 minutes the first time, then cached)", p)
		}
	}
	return apiserver, etcd, nil
}

// ToolPath is where scripts/tools.sh caches the tool NAME (it may not be
// built yet).
func ToolPath(name string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	return toolPath(root, name)
}

// RepoRoot is the kindnet repository above the working directory.
func RepoRoot() (string, error) { return repoRoot() }

func toolPath(root, name string) (string, error) {
	out, err := exec.Command(filepath.Join(root, "scripts", "tools.sh"), "path", name).Output()
	if err != nil {
		return "", fmt.Errorf("scripts/tools.sh path %s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// repoRoot walks up from the working directory (a package directory under
// `go test`) to the kindnet module's root.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.HasPrefix(bytes.TrimSpace(b), []byte("module github.com/kindnet-dev/kindnet\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("cannot find the kindnet repository root above the working directory")
		}
		dir = parent
	}
}
