package kube

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/connrotation"

	"github.com/kindnet-dev/kindnet/pkg/model"
)

// Protobuf is cheaper than JSON to decode and keeps the watch's memory
// low with thousands of Nodes; JSON stays acceptable as a fallback.
const (
	contentType = "application/vnd.kubernetes.protobuf"
	accept      = "application/vnd.kubernetes.protobuf,application/json"
)

// credentials are one loaded version of the kubeconfig and the files it
// names, plus what is needed to notice when any of them changes on disk.
type credentials struct {
	rest     *rest.Config
	dialer   *connrotation.Dialer // closes every connection when the session ends
	files    []string             // the kubeconfig and every file it names
	sum      [32]byte             // fingerprint of files when loaded
	identity string               // "user system:node:n1 (groups system:nodes)", for logs
}

// ErrNoKubeconfig says the kubeconfig does not exist yet (a node before it
// joined the cluster). The source waits for it.
var ErrNoKubeconfig = errors.New("kubeconfig does not exist yet")

// loadCredentials reads the kubeconfig and the certificate and key files it
// names into one self-contained client config. Certificates are read here,
// not by client-go, so that a rotated certificate is noticed by comparing
// file contents (see changed) and picked up by reconnecting at once.
func loadCredentials(path, userAgent string) (*credentials, error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, &model.SourceError{Reason: model.SourceWaiting, Hint: "join the node to the cluster (e.g. kubeadm join), or set kubeconfig",
			Err: fmt.Errorf("waiting for the kubeconfig %s (%w: it appears when the node joins the cluster); keeping the bootstrap state", path, ErrNoKubeconfig)}
	}
	raw, err := clientcmd.LoadFromFile(path)
	if err == nil {
		err = clientcmd.ResolveLocalPaths(raw) // relative to the kubeconfig's directory, as kubectl does
	}
	if err != nil {
		return nil, invalid(path, err)
	}
	files := append([]string{path}, namedFiles(raw)...)
	sum := fingerprint(files)
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, invalid(path, err)
	}
	if err := inlineTLSFiles(cfg); err != nil {
		return nil, invalid(path, err)
	}
	cfg.ContentType, cfg.AcceptContentTypes, cfg.UserAgent = contentType, accept, userAgent
	d := connrotation.NewDialer((&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext)
	cfg.Dial = d.DialContext
	return &credentials{rest: cfg, dialer: d, files: files, sum: sum, identity: identity(cfg.CertData)}, nil
}

func invalid(path string, err error) error {
	return &model.SourceError{Reason: model.SourceInvalid, Err: fmt.Errorf("kubeconfig %s: %w", path, err)}
}

// namedFiles lists the files the current context of the kubeconfig reads.
func namedFiles(c *clientcmdapi.Config) []string {
	ctx := c.Contexts[c.CurrentContext]
	if ctx == nil {
		return nil
	}
	var out []string
	if a := c.AuthInfos[ctx.AuthInfo]; a != nil {
		out = append(out, a.ClientCertificate, a.ClientKey, a.TokenFile)
	}
	if cl := c.Clusters[ctx.Cluster]; cl != nil {
		out = append(out, cl.CertificateAuthority)
	}
	kept := out[:0]
	for _, f := range out {
		if f != "" {
			kept = append(kept, f)
		}
	}
	return kept
}

// inlineTLSFiles replaces certificate, key and CA file names by their
// contents, so the connection uses exactly what was fingerprinted.
func inlineTLSFiles(cfg *rest.Config) error {
	for _, f := range []struct {
		file *string
		data *[]byte
	}{{&cfg.CertFile, &cfg.CertData}, {&cfg.KeyFile, &cfg.KeyData}, {&cfg.CAFile, &cfg.CAData}} {
		if *f.file == "" || len(*f.data) > 0 {
			continue
		}
		b, err := os.ReadFile(*f.file)
		if err != nil {
			return err
		}
		*f.data, *f.file = b, ""
	}
	if len(cfg.CertData) > 0 || len(cfg.KeyData) > 0 {
		if _, err := tls.X509KeyPair(cfg.CertData, cfg.KeyData); err != nil {
			return fmt.Errorf("client certificate and key do not form a pair (caught mid-rotation?): %w", err)
		}
	}
	return nil
}

// fingerprint hashes the names and contents of files (a missing file
// counts as such, so its appearance is a change).
func fingerprint(files []string) [32]byte {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			b = []byte("\x00unreadable")
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(b))
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// changed reports whether any file differs from what was loaded or last
// accepted.
func (c *credentials) changed() bool { return fingerprint(c.files) != c.sum }

// accept takes the current file contents as seen, so a change that cannot
// be loaded is reported once, not on every check.
func (c *credentials) accept() { c.sum = fingerprint(c.files) }

// identity describes the client certificate's subject, as the API server
// reads it: the common name is the user, organizations are groups.
func identity(certPEM []byte) string {
	for len(certPEM) > 0 {
		var blk *pem.Block
		blk, certPEM = pem.Decode(certPEM)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return ""
		}
		s := "user " + c.Subject.CommonName
		if len(c.Subject.Organization) > 0 {
			s += " (groups " + strings.Join(c.Subject.Organization, ",") + ")"
		}
		return s + ", certificate valid until " + c.NotAfter.UTC().Format(time.RFC3339)
	}
	return "no client certificate"
}
