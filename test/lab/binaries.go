package lab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// BuildBinaries builds kindnet and kindnet-lab (static, as shipped) from
// the source tree at repoRoot into a new temporary directory, for the test
// packages that run whole agents. The caller removes dir when done.
func BuildBinaries(repoRoot string) (dir string, err error) {
	return BuildCommands(repoRoot, map[string]string{"kindnet": "./cmd/kindnet", "kindnet-lab": "./test/lab/kindnet-lab"})
}

// BuildCommands builds each package (static) into a new temporary
// directory under the name it is mapped from. The caller removes dir.
func BuildCommands(repoRoot string, cmds map[string]string) (dir string, err error) {
	return BuildCommandsEnv(repoRoot, nil, cmds)
}

// BuildCommandsEnv is BuildCommands with extra environment for go build:
// GOARCH=arm64, say, for a foreign-architecture build.
func BuildCommandsEnv(repoRoot string, env []string, cmds map[string]string) (dir string, err error) {
	dir, err = os.MkdirTemp("", "kindnet-test-bin-")
	if err != nil {
		return "", err
	}
	for out, pkg := range cmds {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, out), pkg)
		cmd.Dir = repoRoot
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			return "", fmt.Errorf("build %s: %w\n%s", pkg, err, b)
		}
	}
	return dir, nil
}
