// Package gatetest runs a real gatehouse for tests: Start parses a config
// text, starts an instance on loopback ports chosen by the kernel, and
// returns its addresses and clients that trust its local CA and reach it
// whatever host name a URL names.
package gatetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/accesslog"
	"gatehouse/internal/config"
	"gatehouse/internal/instance"
	"gatehouse/internal/syncbuf"
)

// Gatehouse is a running instance under test.
type Gatehouse struct {
	*instance.Instance
	Config *config.Config
	HTTP   string // host:port of the first HTTP listener
	HTTPS  string // host:port of the first HTTPS listener
	DNS    string // host:port of the first DNS listener, UDP and TCP
	Roots  *x509.CertPool
	// Logs holds everything gatehouse logged (both logs, the access log
	// unless the config turns it off), for assertions.
	Logs *syncbuf.Buffer
	// DataDir is the instance's data directory.
	DataDir string
}

// Start runs cfgText. Listen addresses default to 127.0.0.1:0 when the
// config names none. The instance stops when the test ends.
func Start(t testing.TB, cfgText string) *Gatehouse {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, []byte(cfgText))
	if err != nil {
		t.Fatalf("config does not parse:\n%v", err)
	}
	return StartConfig(t, cfg)
}

// StartDefault runs the embedded default on free loopback ports.
func StartDefault(t testing.TB) *Gatehouse {
	return StartConfig(t, config.Default())
}

// StartConfig runs an already parsed config.
func StartConfig(t testing.TB, cfg *config.Config) *Gatehouse {
	t.Helper()
	for _, addrs := range [][]string{cfg.Listen.HTTP, cfg.Listen.HTTPS} {
		for i, a := range addrs {
			// Fixed ports (:80, the default's 8443…) become free ones.
			if host, port, _ := net.SplitHostPort(a); port != "0" {
				if host == "" {
					host = "127.0.0.1"
				}
				addrs[i] = net.JoinHostPort(host, "0")
			}
		}
	}
	if cfg.Demo != "" {
		// The demo app gets a free port, and routes to it follow.
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		free := l.Addr().String()
		l.Close()
		for i := range cfg.Sites {
			for _, r := range cfg.Sites[i].Routes {
				if r.Proxy != nil {
					for j, to := range r.Proxy.To {
						r.Proxy.To[j] = strings.ReplaceAll(to, cfg.Demo, free)
					}
				}
			}
		}
		cfg.Demo = free
	}
	if cfg.Admin.Listen != "" {
		cfg.Admin.Listen = "127.0.0.1:0"
	}
	for i := range cfg.DNS.Listen {
		cfg.DNS.Listen[i] = "127.0.0.1:0"
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	data := cfg.Data // a test that restarts on the same data names it
	if data == "" {
		data = t.TempDir()
	}
	var access *accesslog.Writer
	if cfg.Log.Access != "off" {
		access = accesslog.NewWriter(logs, 0) // each line at once, for assertions
	}
	in, err := instance.New(cfg, instance.Options{DataDir: data, Log: log, AccessLog: access})
	if err != nil {
		t.Fatalf("instance.New: %v", err)
	}
	if err := in.Start(); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		in.Shutdown(ctx)
	})
	roots := x509.NewCertPool()
	roots.AddCert(in.CA().Cert)
	var dnsAddr string
	if a := in.DNSAddrs(); len(a) > 0 {
		dnsAddr = a[0]
	}
	return &Gatehouse{DNS: dnsAddr,
		Instance: in, Config: cfg, Logs: logs, DataDir: data, Roots: roots,
		HTTP:  in.HTTPAddrs()[0].String(),
		HTTPS: in.HTTPSAddrs()[0].String(),
	}
}

// AdminAddr is the admin API's address, when the config has one.
func (g *Gatehouse) AdminAddr() string {
	for _, l := range g.Status()["listeners"].([]map[string]string) {
		if l["kind"] == "admin" {
			return l["addr"]
		}
	}
	return ""
}

// Dialer connects to the instance whatever address is asked: https://
// (port 443 or the HTTPS listener's port) goes to HTTPS, the rest to HTTP.
func (g *Gatehouse) Dialer() func(ctx context.Context, network, addr string) (net.Conn, error) {
	_, httpsPort, _ := net.SplitHostPort(g.HTTPS)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, port, _ := net.SplitHostPort(addr)
		target := g.HTTP
		if port == "443" || port == httpsPort {
			target = g.HTTPS
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", target)
	}
}

// Client returns an HTTP client that trusts the local CA, reaches the
// instance for any host, and does not follow redirects.
func (g *Gatehouse) Client() *http.Client {
	tr := &http.Transport{
		DialContext:       g.Dialer(),
		TLSClientConfig:   &tls.Config{RootCAs: g.Roots},
		ForceAttemptHTTP2: true,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// ClientHTTP1 is Client limited to HTTP/1.1, for what HTTP/2 forbids
// (connection-specific headers, Upgrade).
func (g *Gatehouse) ClientHTTP1() *http.Client {
	c := g.Client()
	tr := c.Transport.(*http.Transport)
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return c
}

// URL returns https://host:port/path for the instance's HTTPS listener.
func (g *Gatehouse) URL(host, path string) string {
	_, port, _ := net.SplitHostPort(g.HTTPS)
	return "https://" + host + ":" + port + path
}

// HTTPURL returns http://host:port/path for the HTTP listener.
func (g *Gatehouse) HTTPURL(host, path string) string {
	_, port, _ := net.SplitHostPort(g.HTTP)
	return "http://" + host + ":" + port + path
}

// EncodePair returns a certificate chain and its key as PEM, as certbot
// writes fullchain.pem and privkey.pem.
func EncodePair(t testing.TB, pair *tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	for _, der := range pair.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(pair.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return certPEM, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}
