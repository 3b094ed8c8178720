package cniconf

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// probeTimeout bounds one VERSION call of the plugin: a plugin that hangs
// must not hold up the reconcile loop.
const probeTimeout = 5 * time.Second

// pluginProbe remembers the last answer of the plugin binary, keyed by what
// stat says of the file: each reconcile re-stats it, and runs it again only
// when it changed (installed, replaced, made executable).
type pluginProbe struct {
	mu     sync.Mutex
	key    string
	reason string
}

// pluginWaiting says why the conflist must not be written yet, or "" when
// <binDir>/kindnet exists and answers VERSION with a list holding the
// config's cniVersion. A runtime that reads a conflist naming a plugin that
// is not there yet fails every pod instead of waiting
// (containerd/go-cni#116), so the config comes after the binary.
func (r *Reconciler) pluginWaiting(ctx context.Context) string {
	if r.BinDir == "" {
		return ""
	}
	path := filepath.Join(r.BinDir, PluginType)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		r.probe.forget()
		return "CNI plugin " + path + " is not installed yet"
	}
	if err != nil {
		r.probe.forget()
		return "CNI plugin " + path + ": " + err.Error()
	}
	key := fmt.Sprintf("%s %d %s %d", r.CNIVersion, st.Size(), st.Mode(), st.ModTime().UnixNano())
	r.probe.mu.Lock()
	defer r.probe.mu.Unlock()
	if r.probe.key == key {
		return r.probe.reason
	}
	r.probe.reason = askVersion(ctx, path, r.CNIVersion)
	r.probe.key = key
	if r.probe.reason != "" {
		// A failed probe is not cached: the next reconcile asks again
		// (a plugin half-copied when statted, a slow start).
		r.probe.key = ""
	}
	return r.probe.reason
}

func (p *pluginProbe) forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.key, p.reason = "", ""
}

// askVersion runs the plugin as a runtime does for CNI VERSION and says
// what is wrong with its answer, or "" when it supports want.
func askVersion(ctx context.Context, path, want string) string {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path)
	cmd.Env = []string{"CNI_COMMAND=VERSION"}
	cmd.Stdin = strings.NewReader(`{"cniVersion":"` + want + `"}`)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Sprintf("CNI plugin %s does not answer VERSION: %v %s", path, err, strings.TrimSpace(stderr.String()))
	}
	var answer struct {
		Supported []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &answer); err != nil {
		return fmt.Sprintf("CNI plugin %s answers VERSION with %q, not a version list", path, strings.TrimSpace(stdout.String()))
	}
	if !slices.Contains(answer.Supported, want) {
		return fmt.Sprintf("CNI plugin %s supports CNI %s, not the config's cniVersion %s", path, strings.Join(answer.Supported, ", "), want)
	}
	return ""
}
