package kubetest

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// NodeUser is the user name of a kubelet identity.
func NodeUser(node string) string { return "system:node:" + node }

// NodeCert issues a kubelet client certificate for node (user
// system:node:<node>, group system:nodes), valid until notAfter (zero: 12h).
func (s *Server) NodeCert(node string, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	return s.CA.Issue(CertSpec{CommonName: NodeUser(node), Groups: []string{"system:nodes"}, NotAfter: notAfter})
}

// Kubeconfig describes a kubeconfig to write.
type Kubeconfig struct {
	// Server overrides the URL (default: the server's own).
	Server string
	// CertFile and KeyFile, when set, are referenced by path, the way
	// kubeadm's kubelet.conf points at the rotating
	// kubelet-client-current.pem; otherwise the certificate is embedded.
	CertFile, KeyFile string
	CertPEM, KeyPEM   []byte
}

// WriteKubeconfig writes a kubeconfig for the given client identity to
// path, atomically (temp file and rename), as kubeadm and kubelet do.
func (s *Server) WriteKubeconfig(path string, k Kubeconfig) error {
	if k.Server == "" {
		k.Server = s.URL
	}
	user := &clientcmdapi.AuthInfo{ClientCertificate: k.CertFile, ClientKey: k.KeyFile}
	if k.CertFile == "" {
		user.ClientCertificateData, user.ClientKeyData = k.CertPEM, k.KeyPEM
	}
	cfg := clientcmdapi.Config{
		Clusters:       map[string]*clientcmdapi.Cluster{"test": {Server: k.Server, CertificateAuthorityData: s.CA.CertPEM}},
		AuthInfos:      map[string]*clientcmdapi.AuthInfo{"user": user},
		Contexts:       map[string]*clientcmdapi.Context{"test": {Cluster: "test", AuthInfo: "user"}},
		CurrentContext: "test",
	}
	b, err := clientcmd.Write(cfg)
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	return WriteFileAtomic(path, b)
}

// WriteFileAtomic replaces path with data through a rename, so a reader
// never sees a half-written file.
func WriteFileAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// WriteAdminKubeconfig writes the cluster-admin's kubeconfig to path.
func (s *Server) WriteAdminKubeconfig(path string) error {
	return s.WriteKubeconfig(path, Kubeconfig{CertPEM: s.adminCert, KeyPEM: s.adminKey})
}
