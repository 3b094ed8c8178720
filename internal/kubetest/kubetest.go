// Package kubetest runs a real etcd and kube-apiserver for tests, from the
// binaries `make tools` builds and caches (scripts/tools.sh, wrapper module
// test/kube). It makes a throwaway PKI (a CA, the serving certificate, an
// admin in system:masters, and system:node:<name> identities on request),
// writes kubeconfigs, and can stop and restart the API server to simulate an
// outage.
//
// It only ever serves on loopback, or inside a network namespace the caller
// names (the lab's "api" host): never on the machine's own interfaces. Its
// processes are stopped by PID, and die with the test process.
package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kindnet-dev/kindnet/internal/netnstest"
)

// Options shape a test control plane.
type Options struct {
	// Dir holds the PKI, etcd's data and the logs (a test's TempDir).
	Dir string
	// NetNS, when set, runs etcd and the API server inside that named
	// network namespace (/run/netns/NAME); the test reaches them by dialing
	// from inside it. Empty runs them on this namespace's loopback.
	NetNS string
	// Addr is where the API server listens and what it advertises; it must
	// exist in NetNS. Default 127.0.0.1.
	Addr netip.Addr
	// Log receives progress lines; nil discards them.
	Log func(format string, args ...any)
	// Cluster serves a whole cluster rather than a test of the API alone:
	// the ServiceAccount admission plugin stays on (pods get tokens), the
	// kubernetes Service's endpoints are reconciled to Addr (pods reach the
	// API through its ClusterIP), privileged pods are allowed, and the API
	// server has a client certificate for kubelets (logs, exec).
	Cluster bool
	// ServiceCIDRs is --service-cluster-ip-range (default 10.96.0.0/16);
	// the first address of each range is in the serving certificate.
	ServiceCIDRs []netip.Prefix
	// Detach starts the processes in sessions of their own that outlive
	// the caller (a command that brings a cluster up and exits); the
	// caller records their PIDs and stops them. Otherwise they die with
	// the calling process.
	Detach bool
}

// Server is a running etcd + kube-apiserver.
type Server struct {
	opts                  Options
	CA                    *CA
	URL                   string // https://addr:port
	apiPort, etcdPort     int
	peerPort              int
	etcd, api             *Process
	adminCert, adminKey   []byte
	dial                  func(ctx context.Context, network, addr string) (net.Conn, error)
	apiserverBin, etcdBin string
}

// AdminUser is the test's cluster-admin identity.
const AdminUser = "kindnet-test-admin"

// New starts a control plane for the test and stops it when the test ends.
// Without the cached binaries it skips the test unless it runs as the host's
// root, and fails it then (CI runs `make tools` first, so there they must
// exist). With them it runs anywhere, also in `make test-unit`'s user
// namespace: the control plane only listens on loopback.
func New(t testing.TB, o Options) *Server {
	t.Helper()
	api, etcd, err := Binaries()
	if err != nil {
		if !netnstest.IsHostRoot() {
			t.Skipf("needs a real kube-apiserver and etcd: %v", err)
		}
		t.Fatalf("needs a real kube-apiserver and etcd: %v", err)
	}
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	if o.Log == nil {
		o.Log = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	s, err := Start(ctx, o, api, etcd)
	if s != nil {
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("---- kube-apiserver log (tail) ----\n%s", tailFile(filepath.Join(o.Dir, "kube-apiserver.log"), 30))
			}
			s.Close()
		})
	}
	if err != nil {
		t.Fatalf("start the test control plane: %v", err)
	}
	return s
}

// Start starts etcd and the API server and waits until the API server is
// ready. On error the returned Server (if any) must still be closed.
func Start(ctx context.Context, o Options, apiserverBin, etcdBin string) (*Server, error) {
	if !o.Addr.IsValid() {
		o.Addr = netip.MustParseAddr("127.0.0.1")
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	s := &Server{opts: o, apiserverBin: apiserverBin, etcdBin: etcdBin}
	if err := s.choosePorts(); err != nil {
		return nil, err
	}
	s.URL = "https://" + netip.AddrPortFrom(o.Addr, uint16(s.apiPort)).String()
	s.dial = (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	if o.NetNS != "" {
		s.dial = DialInNetNS("/run/netns/" + o.NetNS)
	}
	if err := s.writePKI(); err != nil {
		return nil, fmt.Errorf("write test PKI: %w", err)
	}
	start := time.Now()
	if err := s.startEtcd(ctx); err != nil {
		return s, err
	}
	if err := s.StartAPIServer(ctx); err != nil {
		return s, err
	}
	o.Log("kubetest: etcd and kube-apiserver ready at %s in %s", s.URL, time.Since(start).Round(time.Millisecond))
	return s, nil
}

// choosePorts picks free ports on loopback; inside a namespace of its own
// the well-known ones are free.
func (s *Server) choosePorts() error {
	if s.opts.NetNS != "" {
		s.etcdPort, s.peerPort, s.apiPort = 2379, 2380, 6443
		return nil
	}
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range 3 {
		l, err := net.Listen("tcp", net.JoinHostPort(s.opts.Addr.String(), "0"))
		if err != nil {
			return fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	s.etcdPort, s.peerPort, s.apiPort = ports[0], ports[1], ports[2]
	return nil
}

func (s *Server) path(name string) string { return filepath.Join(s.opts.Dir, name) }

func (s *Server) writePKI() error {
	ca, err := NewCA()
	if err != nil {
		return err
	}
	s.CA = ca
	ips := []net.IP{net.IP(s.opts.Addr.AsSlice()), net.IPv4(127, 0, 0, 1)}
	for _, p := range s.serviceCIDRs() {
		// The kubernetes Service's ClusterIP: the first address of the range.
		ips = append(ips, net.IP(p.Masked().Addr().Next().AsSlice()))
	}
	srvCert, srvKey, err := ca.Issue(CertSpec{CommonName: "kube-apiserver",
		IPs: ips, Names: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}})
	if err != nil {
		return err
	}
	kubeletCert, kubeletKey, err := ca.Issue(CertSpec{CommonName: "kube-apiserver-kubelet-client", Groups: []string{"system:masters"}})
	if err != nil {
		return err
	}
	s.adminCert, s.adminKey, err = ca.Issue(CertSpec{CommonName: AdminUser, Groups: []string{"system:masters"}})
	if err != nil {
		return err
	}
	saPriv, saPub, err := keyPairPEM()
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{
		"ca.crt": ca.CertPEM, "apiserver.crt": srvCert, "apiserver.key": srvKey, "sa.key": saPriv, "sa.pub": saPub,
		"apiserver-kubelet-client.crt": kubeletCert, "apiserver-kubelet-client.key": kubeletKey,
	} {
		if err := os.WriteFile(s.path(name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) startEtcd(ctx context.Context) error {
	client := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.etcdPort))
	peer := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.peerPort))
	p, err := s.spawn("etcd", s.etcdBin,
		"--name", "kindnet-test",
		"--data-dir", s.path("etcd-data"),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "kindnet-test="+peer,
		"--unsafe-no-fsync",
		"--heartbeat-interval", "10", "--election-timeout", "50",
		"--log-level", "warn",
	)
	if err != nil {
		return err
	}
	s.etcd = p
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: s.dial}}
	return s.waitHTTP(ctx, p, hc, client+"/health", "etcd")
}

// StartAPIServer starts the API server (again, after StopAPIServer) and
// waits until /readyz answers 200.
func (s *Server) StartAPIServer(ctx context.Context) error {
	if s.api != nil && s.api.Alive() {
		return errors.New("kube-apiserver already runs")
	}
	p, err := s.spawn("kube-apiserver", s.apiserverBin, s.apiserverArgs()...)
	if err != nil {
		return err
	}
	s.api = p
	return s.waitHTTP(ctx, p, s.httpClient(), s.URL+"/readyz", "kube-apiserver")
}

func (s *Server) serviceCIDRs() []netip.Prefix {
	if len(s.opts.ServiceCIDRs) == 0 {
		return []netip.Prefix{netip.MustParsePrefix("10.96.0.0/16")}
	}
	return s.opts.ServiceCIDRs
}

func (s *Server) apiserverArgs() []string {
	var ranges []string
	for _, p := range s.serviceCIDRs() {
		ranges = append(ranges, p.String())
	}
	args := []string{
		"--etcd-servers", "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.etcdPort)),
		"--bind-address", s.opts.Addr.String(), "--advertise-address", s.opts.Addr.String(),
		"--secure-port", strconv.Itoa(s.apiPort),
		"--tls-cert-file", s.path("apiserver.crt"), "--tls-private-key-file", s.path("apiserver.key"),
		"--client-ca-file", s.path("ca.crt"),
		"--authorization-mode", "Node,RBAC",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", s.path("sa.pub"), "--service-account-signing-key-file", s.path("sa.key"),
		"--service-cluster-ip-range", strings.Join(ranges, ","),
		"--cert-dir", s.path("apiserver-certs"),
		"--profiling=false",
	}
	if !s.opts.Cluster {
		// No pods run, so no token is needed; the default reconciler
		// refuses to advertise a loopback address, and there is no Service
		// network anyway.
		return append(args, "--disable-admission-plugins", "ServiceAccount", "--endpoint-reconciler-type", "none")
	}
	return append(args,
		"--allow-privileged=true",
		"--kubelet-client-certificate", s.path("apiserver-kubelet-client.crt"),
		"--kubelet-client-key", s.path("apiserver-kubelet-client.key"),
		"--kubelet-preferred-address-types", "InternalIP",
	)
}

// StopAPIServer stops the API server (SIGTERM, then SIGKILL), keeping etcd
// and so every object: starting it again is an outage ending.
func (s *Server) StopAPIServer() error {
	if s.api == nil {
		return nil
	}
	return s.api.Stop()
}

// Close stops both processes.
func (s *Server) Close() {
	_ = s.StopAPIServer()
	if s.etcd != nil {
		_ = s.etcd.Stop()
	}
}

// RestConfig is the admin's client config, dialing into the namespace
// when the server runs in one.
func (s *Server) RestConfig() *rest.Config {
	return &rest.Config{
		Host: s.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CertData: s.adminCert, KeyData: s.adminKey, CAData: s.CA.CertPEM,
		},
		Dial:    s.dial,
		QPS:     500,
		Burst:   1000,
		Timeout: 30 * time.Second,
	}
}

// Admin returns a cluster-admin clientset.
func (s *Server) Admin() (*kubernetes.Clientset, error) {
	return kubernetes.NewForConfig(s.RestConfig())
}

// httpClient speaks TLS to the API server as the admin.
func (s *Server) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AddCert(s.CA.Cert)
	cert, _ := tls.X509KeyPair(s.adminCert, s.adminKey)
	return &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		DialContext:     s.dial,
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}},
	}}
}

func (s *Server) waitHTTP(ctx context.Context, p *Process, hc *http.Client, url, what string) error {
	for {
		resp, err := hc.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		if !p.Alive() {
			return fmt.Errorf("%s exited during start:\n%s", what, tailFile(p.Log, 30))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)\n%s", what, ctx.Err(), err, tailFile(p.Log, 30))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// spawn starts bin inside the namespace (ip netns exec execs it: same PID)
// or directly, its output in NAME.log in Dir.
func (s *Server) spawn(name, bin string, args ...string) (*Process, error) {
	argv := append([]string{bin}, args...)
	if s.opts.NetNS != "" {
		argv = append([]string{"ip", "netns", "exec", s.opts.NetNS}, argv...)
	}
	p, err := StartProcess(ProcessSpec{Name: name, Argv: argv, Dir: s.opts.Dir, Log: s.path(name + ".log"), Detach: s.opts.Detach})
	if err != nil {
		return nil, err
	}
	s.opts.Log("kubetest: %s started (pid %d)", name, p.PID)
	return p, nil
}

// Spawn starts another control-plane program (controller-manager,
// scheduler) the way etcd and the API server run: in the same namespace,
// with its output in NAME.log in Dir.
func (s *Server) Spawn(name, bin string, args ...string) (*Process, error) {
	return s.spawn(name, bin, args...)
}

// PIDs are the processes this server started, by name.
func (s *Server) PIDs() map[string]int {
	out := map[string]int{}
	for _, p := range []*Process{s.etcd, s.api} {
		if p != nil {
			out[p.Name] = p.PID
		}
	}
	return out
}

// Path is a file in the server's directory (ca.crt, sa.key, …).
func (s *Server) Path(name string) string { return s.path(name) }

// TailFile returns the last n lines of a file, or the error reading it.
func TailFile(path string, n int) string { return tailFile(path, n) }

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
