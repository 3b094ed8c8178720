package kube

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kindnet-dev/kindnet/internal/kubetest"
	"github.com/kindnet-dev/kindnet/pkg/model"
)

// pki makes a CA and writes a kubeconfig that references a certificate
// file the way kubeadm's kubelet.conf does; it returns the kubeconfig path
// and a function that (re)issues the certificate into that file.
func pki(t *testing.T) (kubeconfig string, issue func(cn string) []byte) {
	t.Helper()
	ca, err := kubetest.NewCA()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	pem := filepath.Join(dir, "pki", "kubelet-client-current.pem")
	issue = func(cn string) []byte {
		cert, key, err := ca.Issue(kubetest.CertSpec{CommonName: cn, Groups: []string{"system:nodes"}, NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if err := kubetest.WriteFileAtomic(pem, append(cert, key...)); err != nil {
			t.Fatal(err)
		}
		return cert
	}
	issue("system:node:a")
	kubeconfig = filepath.Join(dir, "kubelet.conf")
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"c": {Server: "https://192.0.2.10:6443", CertificateAuthorityData: ca.CertPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"u": {ClientCertificate: "pki/kubelet-client-current.pem", ClientKey: "pki/kubelet-client-current.pem"}},
		Contexts:       map[string]*clientcmdapi.Context{"x": {Cluster: "c", AuthInfo: "u"}},
		CurrentContext: "x",
	}
	if err := clientcmd.WriteToFile(cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	return kubeconfig, issue
}

func TestMissingKubeconfigIsWaitedFor(t *testing.T) {
	_, err := loadCredentials(filepath.Join(t.TempDir(), "kubelet.conf"), "test")
	var se *model.SourceError
	if !errors.As(err, &se) || se.Reason != model.SourceWaiting || !errors.Is(err, ErrNoKubeconfig) {
		t.Fatalf("missing kubeconfig: got %v, want a %q SourceError", err, model.SourceWaiting)
	}
}

func TestCredentialsReadCertificateFilesAndNoticeRotation(t *testing.T) {
	path, issue := pki(t)
	c, err := loadCredentials(path, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(c.identity, "user system:node:a (groups system:nodes)") {
		t.Errorf("identity %q", c.identity)
	}
	if c.rest.CertFile != "" || len(c.rest.CertData) == 0 || c.rest.ContentType != contentType {
		t.Errorf("client config not self-contained protobuf: certFile %q, %d bytes of cert data, content type %q",
			c.rest.CertFile, len(c.rest.CertData), c.rest.ContentType)
	}
	if c.changed() {
		t.Fatal("changed right after loading")
	}
	cert := issue("system:node:a") // kubelet rotates
	if !c.changed() {
		t.Fatal("a rotated certificate file was not noticed")
	}
	next, err := loadCredentials(path, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(next.rest.CertData), string(cert)) {
		t.Error("reloaded credentials do not carry the rotated certificate")
	}
}

func TestHalfWrittenRotationKeepsTheWorkingCredentials(t *testing.T) {
	path, _ := pki(t)
	pem := filepath.Join(filepath.Dir(path), "pki", "kubelet-client-current.pem")
	b, err := os.ReadFile(pem)
	if err != nil {
		t.Fatal(err)
	}
	// The key is missing: what a reader may see mid-write.
	if err := os.WriteFile(pem, b[:strings.Index(string(b), "-----BEGIN EC PRIVATE KEY")], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = loadCredentials(path, "test")
	var se *model.SourceError
	if !errors.As(err, &se) || se.Reason != model.SourceInvalid {
		t.Fatalf("half-written certificate file: got %v, want an %q SourceError", err, model.SourceInvalid)
	}
}

func TestServerAddrsAreProtected(t *testing.T) {
	for _, tc := range []struct {
		server string
		want   []netip.Addr
	}{
		{"https://192.0.2.10:6443", []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
		{"https://[2001:db8::10]:6443", []netip.Addr{netip.MustParseAddr("2001:db8::10")}},
		{"https://[::ffff:192.0.2.10]", []netip.Addr{netip.MustParseAddr("192.0.2.10")}},
		{"https://localhost:6443", []netip.Addr{netip.MustParseAddr("127.0.0.1")}},
		{"::not a url", nil},
	} {
		got := serverAddrs(context.Background(), tc.server)
		if tc.server == "https://localhost:6443" {
			if !slices.Contains(got, tc.want[0]) {
				t.Errorf("%s: got %v, want it to contain %v", tc.server, got, tc.want[0])
			}
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.server, got, tc.want)
		}
	}
}
