// Package nodesfile is the static cluster source: a file of Kubernetes Node
// objects, as `kubectl get nodes -o yaml` prints them, read at start and
// re-read whenever its content changes. It is how the lab runs, and how a
// node with no API server runs for good.
//
// It only reads the file it is given and sends views; it never writes a
// file, never talks to an API server and never touches the kernel.
package nodesfile

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/kindnet-dev/kindnet/pkg/kube/kubenode"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// maxNodesFileSize bounds the memory and CPU a nodes file can make the agent
// use: parsing costs about six times the file's size in memory. 10,000
// dual-stack nodes with what the agent reads (name, podCIDRs, addresses,
// hostname label) take 4.5 MiB of YAML as kubectl prints it (measured:
// 4,680,636 bytes, about 470 bytes a node), so 16 MiB leaves 3.5 times that.
// A full `kubectl get nodes -o yaml` of kubelet-managed nodes carries
// status.images and conditions (5-12 KiB a node) and must be trimmed to
// those fields for big clusters (docs/troubleshooting.md shows how).
const maxNodesFileSize = 16 << 20

// tooLarge is the error for a file over maxNodesFileSize; it names the bound.
func tooLarge(size int64) error {
	return fmt.Errorf("%d bytes: larger than the %d MiB limit for a nodes file (10,000 nodes with addresses and podCIDRs take about 4.5 MiB; keep only those fields)",
		size, maxNodesFileSize>>20)
}

// Parse reads Node objects exactly as `kubectl get nodes -o yaml`
// prints them: a v1 List or NodeList of Nodes, or a stream of YAML (or JSON)
// documents each holding one v1 Node.
func Parse(data []byte) ([]corev1.Node, error) {
	if len(data) > maxNodesFileSize {
		return nil, tooLarge(int64(len(data)))
	}
	rd := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var nodes []corev1.Node
	for doc := 1; ; doc++ {
		raw, err := rd.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || isOnlyComments(raw) {
			continue
		}
		got, err := parseNodeDoc(raw)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		nodes = append(nodes, got...)
	}
	return nodes, nil
}

func isOnlyComments(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

type typeMeta struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Items      []json.RawMessage `json:"items"`
}

func parseNodeDoc(raw []byte) ([]corev1.Node, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	var tm typeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		return nil, fmt.Errorf("expected a Kubernetes object: %w", err)
	}
	switch {
	case tm.APIVersion != "v1":
		return nil, fmt.Errorf("apiVersion %q: expected v1", tm.APIVersion)
	case tm.Kind == "Node":
		n, err := decodeNode(js)
		if err != nil {
			return nil, err
		}
		return []corev1.Node{n}, nil
	case tm.Kind == "NodeList" || tm.Kind == "List":
		out := make([]corev1.Node, 0, len(tm.Items))
		for i, item := range tm.Items {
			var itm typeMeta
			_ = json.Unmarshal(item, &itm)
			if itm.Kind != "" && itm.Kind != "Node" {
				return nil, fmt.Errorf("items[%d]: kind %q: expected Node", i, itm.Kind)
			}
			n, err := decodeNode(item)
			if err != nil {
				return nil, fmt.Errorf("items[%d]: %w", i, err)
			}
			out = append(out, n)
		}
		return out, nil
	default:
		return nil, fmt.Errorf("kind %q: expected Node, NodeList or List", tm.Kind)
	}
}

func decodeNode(js []byte) (corev1.Node, error) {
	var n corev1.Node
	if err := json.Unmarshal(js, &n); err != nil {
		return n, fmt.Errorf("not a valid Node: %w", err)
	}
	return n, nil
}

// Source is the static source: a file of Node objects, re-read when it
// changes. It is how the lab runs, and how an edge box with no API server
// runs for good.
type Source struct {
	Path     string
	Self     string
	Policy   kubenode.AddressPolicy
	Interval time.Duration // how often the file is checked for changes; default 1s

	// parse is Parse; tests count calls through it.
	parse func([]byte) ([]corev1.Node, error)
	// polled, when set, is called after every poll of the file (tests).
	polled func()
}

// Name implements model.Source.
func (f *Source) Name() string { return "nodes file" }

// Read loads the file once.
func (f *Source) Read() (model.View, error) {
	data, err := readLimited(f.Path)
	if err != nil {
		return model.View{}, err
	}
	nodes, err := f.parseFn()(data)
	if err != nil {
		return model.View{}, fmt.Errorf("nodes file %s: %w", f.Path, err)
	}
	return f.viewOf(nodes)
}

// viewOf turns the file's Nodes into a View, or refuses a file that cannot
// be the whole cluster: one without this node (a 0-byte, comment-only or
// half-written file, `items: []`: what an editor, `cp` or a full disk
// leaves behind), which applied would withdraw every route; or one naming
// this node twice, where either entry could replace this node's pod
// ranges. The caller keeps the last good view.
func (f *Source) viewOf(nodes []corev1.Node) (model.View, error) {
	n := 0
	for i := range nodes {
		if nodes[i].Name == f.Self {
			n++
		}
	}
	switch {
	case n == 0:
		return model.View{}, &model.SourceError{Reason: model.SourceInvalid,
			Hint: "a nodes file lists every node of the cluster, this one included",
			Err: fmt.Errorf("nodes file %s: this node %q is not among its %d nodes: taken as truncated or partial, not applied",
				f.Path, f.Self, len(nodes))}
	case n > 1:
		return model.View{}, &model.SourceError{Reason: model.SourceInvalid,
			Hint: "remove the extra entries named like this node",
			Err:  fmt.Errorf("nodes file %s: this node %q is named by %d entries: not applied", f.Path, f.Self, n)}
	}
	return kubenode.ToView(f.Self, nodes, f.Policy), nil
}

func (f *Source) parseFn() func([]byte) ([]corev1.Node, error) {
	if f.parse != nil {
		return f.parse
	}
	return Parse
}

// readLimited reads a regular file of at most maxNodesFileSize bytes.
func readLimited(path string) ([]byte, error) {
	fh, fi, err := openRegular(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	return readOpened(fh, fi, path)
}

// readOpened reads an opened nodes file. A file over the bound is refused
// from its size before any byte is read; the limited read still bounds a
// file that grows while it is read.
func readOpened(fh *os.File, fi fs.FileInfo, path string) ([]byte, error) {
	if fi.Size() > maxNodesFileSize {
		return nil, fmt.Errorf("nodes file %s: %w", path, tooLarge(fi.Size()))
	}
	data, err := io.ReadAll(io.LimitReader(fh, maxNodesFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("nodes file %s: %w", path, err)
	}
	if len(data) > maxNodesFileSize {
		return nil, fmt.Errorf("nodes file %s: %w", path, tooLarge(int64(len(data))))
	}
	return data, nil
}

// fileID is what stat says of a file's identity and last change. Any write
// changes ctime (no user can set it), a file renamed into place has another
// inode.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // ns
}

func idOf(fi fs.FileInfo) fileID {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileID{}
	}
	return fileID{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano()}
}

// settled reports whether the file had last changed over a second before
// opened: only then does an unchanged fileID prove unchanged content. A
// write in the same clock tick as the read could leave the same times
// (file timestamps come from a coarse clock), so a file that changed just
// before it was read is read again next time (git's "racily clean" rule).
func (id fileID) settled(opened time.Time) bool {
	limit := opened.Add(-time.Second).UnixNano()
	return id.ino != 0 && id.mtime < limit && id.ctime < limit
}

// outcome is what the last content read turned into: a view or the reason
// it was refused. Content is identified by its hash, so the same bytes —
// good or broken — are parsed once, however often they are polled.
type outcome struct {
	valid bool
	sum   [32]byte
	// id is the file as last read; stable says it had settled then, so the
	// same id means the same content without reading it.
	id     fileID
	stable bool
	view   model.View
	err    error
}

// Run implements model.Source. It polls the file's content: polling survives the
// file being replaced by rename, deleted and recreated, or written in place,
// which is every way editors and config tools update a file. An unreadable
// or broken file, or one without this node or naming it twice (viewOf), is
// reported once and the last good view stays. Content already seen is not
// parsed again: a broken 60 MB file polled every second used to cost 0.47
// CPU-seconds a second, re-parsing the same bytes to the same error.
func (f *Source) Run(ctx context.Context, out chan<- model.Update) error {
	interval := f.Interval
	if interval <= 0 {
		interval = time.Second
	}
	var last outcome
	var lastErr string // the problem last reported; "" once a view was sent
	t := time.NewTicker(interval)
	defer t.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
			}
		}
		v, changed, err := f.poll(&last)
		if f.polled != nil {
			f.polled()
		}
		if err != nil {
			if err.Error() != lastErr { // report each distinct problem once
				lastErr = err.Error()
				if errors.Is(err, fs.ErrNotExist) {
					err = fmt.Errorf("%w (keeping the last good view)", err)
				}
				send(ctx, out, model.Update{Err: err})
			}
			continue
		}
		if !changed && lastErr == "" {
			continue
		}
		lastErr = ""
		send(ctx, out, model.Update{View: &v})
	}
}

// poll reads the file and returns its view or the reason it is refused, and
// whether the content differs from the last content read. A settled file
// whose stat is unchanged is not even read; content with the hash of the
// last content read is not parsed again: its outcome is reused.
func (f *Source) poll(last *outcome) (v model.View, changed bool, err error) {
	opened := time.Now()
	fh, fi, err := openRegular(f.Path)
	if err != nil {
		return model.View{}, false, err
	}
	defer fh.Close()
	id := idOf(fi)
	if last.valid && last.stable && id == last.id {
		return last.view, false, last.err
	}
	data, err := readOpened(fh, fi, f.Path)
	if err != nil {
		return model.View{}, false, err
	}
	sum := sha256.Sum256(data)
	stable := id.settled(opened)
	if last.valid && sum == last.sum {
		last.id, last.stable = id, stable
		return last.view, false, last.err
	}
	*last = outcome{valid: true, sum: sum, id: id, stable: stable}
	nodes, err := f.parseFn()(data)
	if err != nil {
		last.err = fmt.Errorf("nodes file %s: %w", f.Path, err)
		return model.View{}, true, last.err
	}
	last.view, last.err = f.viewOf(nodes)
	return last.view, true, last.err
}

func send(ctx context.Context, out chan<- model.Update, u model.Update) {
	select {
	case out <- u:
	case <-ctx.Done():
	}
}
