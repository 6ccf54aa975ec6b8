package test

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/certs"
	"gatehouse/internal/certs/pebbletest"
	"gatehouse/internal/config"
	"gatehouse/internal/instance"
	"gatehouse/internal/syncbuf"
)

// acmeEdge starts an instance on a chosen data directory, with the DNS
// publisher set before Start as the DNS server's wiring does.
func acmeEdge(t *testing.T, cfgText, data string, dns certs.TXTPublisher) (*instance.Instance, *syncbuf.Buffer) {
	t.Helper()
	cfg, err := config.Parse("gatehouse.yaml", []byte(cfgText))
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	logs := &syncbuf.Buffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	in, err := instance.New(cfg, instance.Options{DataDir: data, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if dns != nil {
		in.Certs().DNS = dns
	}
	if err := in.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopEdge(in) })
	return in, logs
}

func stopEdge(in *instance.Instance) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	in.Shutdown(ctx)
}

func addrPort(a net.Addr) int { return a.(*net.TCPAddr).Port }

// httpsClient trusts roots and sends every request to addr.
func httpsClient(addr string, roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// waitGet waits until GET url through c answers 200, and returns the body
// and the certificate served.
func waitGet(t *testing.T, c *http.Client, url string, within time.Duration, logs *syncbuf.Buffer) (string, *x509.Certificate) {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		var resp *http.Response
		if resp, err = c.Get(url); err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return string(body), resp.TLS.PeerCertificates[0]
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("GET %s: no verified answer within %s: %v\nlogs:\n%s", url, within, err, logs.String())
	return "", nil
}

// filePair writes a certificate for name signed by a throwaway CA, as an
// operator's own files would be.
func filePair(t *testing.T, name string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	dir := t.TempDir()
	ca, err := certs.LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.Issue([]string{name}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var certPEM []byte
	for _, der := range c.Certificate {
		certPEM = append(certPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	keyDER, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	roots = x509.NewCertPool()
	roots.AddCert(ca.Cert)
	return certFile, keyFile, roots
}

// TestACMEWildcardFromOwnDNS issues a wildcard certificate by DNS-01 with
// nothing but gatehouse: the challenge's TXT record is published in
// gatehouse's own zone and Pebble asks gatehouse's own DNS server for it.
func TestACMEWildcardFromOwnDNS(t *testing.T) {
	p := pebbletest.Start(t, 0)
	cfgText := fmt.Sprintf(`
listen: {http: ["127.0.0.1:0"], https: ["127.0.0.1:0"]}
dns:
  listen: ["127.0.0.1:0"]
  zones:
    ownzone.org: {records: [{name: "*", type: A, value: 127.0.0.1}]}
tls:
  acme: {ca: %s, ca_root: %s, email: ops@example.com}
sites:
  - hosts: ["*.ownzone.org"]
    routes: [{path: /, respond: "wildcard from our own DNS"}]
`, p.Directory, p.APIRootFile)
	in, logs := acmeEdge(t, cfgText, t.TempDir(), nil)
	p.Target(addrPort(in.HTTPAddrs()[0]), addrPort(in.HTTPSAddrs()[0]), in.DNSAddrs()[0])
	client := httpsClient(in.HTTPSAddrs()[0].String(), p.Roots)
	port := fmt.Sprint(addrPort(in.HTTPSAddrs()[0]))
	body, leaf := waitGet(t, client, "https://anything.ownzone.org:"+port+"/", 30*time.Second, logs)
	if body != "wildcard from our own DNS" || !containsName(leaf.DNSNames, "*.ownzone.org") {
		t.Errorf("got %q from a certificate for %v", body, leaf.DNSNames)
	}
}

// TestACMEMixedSources runs one gatehouse whose sites take certificates
// from ACME (http-01 or tls-alpn-01, and a wildcard by dns-01 through the
// DNS publisher), the local CA and files, then restarts it on the same
// data directory: the stored certificates are served and nothing is
// ordered again.
func TestACMEMixedSources(t *testing.T) {
	p := pebbletest.Start(t, 0)
	dns := pebbletest.StartDNS(t)
	certFile, keyFile, fileRoots := filePair(t, "files.example.org")
	cfgText := fmt.Sprintf(`
listen: {http: ["127.0.0.1:0"], https: ["127.0.0.1:0"]}
dns:
  listen: ["127.0.0.1:0"]
  zones:
    example.net: {}
tls:
  acme:
    ca: %s
    ca_root: %s
    email: ops@example.com
sites:
  - hosts: [www.example.com]
    routes: [{path: /, respond: {status: 200, body: "acme site"}}]
  - hosts: ["*.example.net"]
    routes: [{path: /, respond: {status: 200, body: "wildcard site"}}]
  - hosts: [app.test]
    routes: [{path: /, respond: {status: 200, body: "internal site"}}]
  - hosts: [files.example.org]
    tls: {cert: %s, key: %s}
    routes: [{path: /, respond: {status: 200, body: "files site"}}]
`, p.Directory, p.APIRootFile, certFile, keyFile)
	data := t.TempDir()
	in, logs := acmeEdge(t, cfgText, data, dns)
	httpAddr, httpsAddr := in.HTTPAddrs()[0].String(), in.HTTPSAddrs()[0].String()
	p.Target(addrPort(in.HTTPAddrs()[0]), addrPort(in.HTTPSAddrs()[0]), dns.Addr)

	pebble := httpsClient(httpsAddr, p.Roots)
	port := fmt.Sprint(addrPort(in.HTTPSAddrs()[0]))
	body, www := waitGet(t, pebble, "https://www.example.com:"+port+"/", 30*time.Second, logs)
	if body != "acme site" {
		t.Errorf("www.example.com: got %q", body)
	}
	body, wild := waitGet(t, pebble, "https://any.example.net:"+port+"/", 30*time.Second, logs)
	if body != "wildcard site" || !containsName(wild.DNSNames, "*.example.net") {
		t.Errorf("any.example.net: got %q from a certificate for %v", body, wild.DNSNames)
	}
	local := x509.NewCertPool()
	local.AddCert(in.CA().Cert)
	if body, _ := waitGet(t, httpsClient(httpsAddr, local), "https://app.test:"+port+"/", 5*time.Second, logs); body != "internal site" {
		t.Errorf("app.test: got %q", body)
	}
	if body, _ := waitGet(t, httpsClient(httpsAddr, fileRoots), "https://files.example.org:"+port+"/", 5*time.Second, logs); body != "files site" {
		t.Errorf("files.example.org: got %q", body)
	}

	// On plain HTTP, challenge paths are answered (404 for an unknown
	// token) rather than redirected; everything else is redirected.
	plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for path, want := range map[string]int{"/.well-known/acme-challenge/unknown-token": http.StatusNotFound, "/page": http.StatusMovedPermanently} {
		req, _ := http.NewRequest(http.MethodGet, "http://"+httpAddr+path, nil)
		req.Host = "www.example.com"
		resp, err := plain.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("http %s: got %d, want %d", path, resp.StatusCode, want)
		}
	}

	stopEdge(in)
	orders := p.Orders.Load()
	again, logs2 := acmeEdge(t, cfgText, data, dns)
	p2 := httpsClient(again.HTTPSAddrs()[0].String(), p.Roots)
	port = fmt.Sprint(addrPort(again.HTTPSAddrs()[0]))
	_, www2 := waitGet(t, p2, "https://www.example.com:"+port+"/", 10*time.Second, logs2)
	_, wild2 := waitGet(t, p2, "https://other.example.net:"+port+"/", 10*time.Second, logs2)
	if !www.Equal(www2) || !wild.Equal(wild2) {
		t.Error("restart served new certificates instead of the stored ones")
	}
	if n := p.Orders.Load() - orders; n != 0 {
		t.Errorf("restart placed %d new orders, want none", n)
	}

	infos, err := certs.Inventory(data)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	certs.WriteInventory(&out, infos, time.Now())
	for _, want := range []string{"www.example.com", "*.example.net", "Pebble Intermediate", "internal"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("gatehouse certs output lacks %q:\n%s", want, out.String())
		}
	}
}

func containsName(names []string, want string) bool {
	for _, n := range names {
		if n == want {
			return true
		}
	}
	return false
}

// TestACMEChallengesThroughInstance obtains a certificate with each
// challenge alone, answered by the instance's own listeners, and one more
// for a site added by a reload.
func TestACMEChallengesThroughInstance(t *testing.T) {
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			t.Parallel()
			p := pebbletest.Start(t, 0)
			dns := pebbletest.StartDNS(t)
			cfgText := fmt.Sprintf(`
listen: {http: ["127.0.0.1:0"], https: ["127.0.0.1:0"]}
tls:
  acme: {ca: %s, ca_root: %s, challenges: [%s]}
sites:
  - hosts: [%s.example.com]
    routes: [{path: /, respond: {status: 200, body: first}}]
%%s`, p.Directory, p.APIRootFile, challenge, challenge)
			in, logs := acmeEdge(t, fmt.Sprintf(cfgText, ""), t.TempDir(), nil)
			p.Target(addrPort(in.HTTPAddrs()[0]), addrPort(in.HTTPSAddrs()[0]), dns.Addr)
			c := httpsClient(in.HTTPSAddrs()[0].String(), p.Roots)
			port := fmt.Sprint(addrPort(in.HTTPSAddrs()[0]))
			if body, _ := waitGet(t, c, "https://"+challenge+".example.com:"+port+"/", 30*time.Second, logs); body != "first" {
				t.Errorf("got %q, want first", body)
			}
			if p := in.Certs().Pending(); len(p) != 0 {
				t.Errorf("names still waiting for a certificate: %v", p)
			}

			// Names differ per subtest: certmagic keeps challenges in
			// process-wide memory keyed by name, and a process runs one
			// gatehouse outside tests.
			added := fmt.Sprintf(cfgText, "  - hosts: [added-"+challenge+".example.com]\n    routes: [{path: /, respond: {status: 200, body: added}}]\n")
			cfg, err := config.Parse("gatehouse.yaml", []byte(added))
			if err != nil {
				t.Fatal(err)
			}
			if err := in.Reload(cfg); err != nil {
				t.Fatal(err)
			}
			if body, _ := waitGet(t, c, "https://added-"+challenge+".example.com:"+port+"/", 30*time.Second, logs); body != "added" {
				t.Errorf("got %q, want added", body)
			}
		})
	}
}

// TestACMEOnDemandThroughInstance serves names under a wildcard site with
// certificates obtained during their first handshake, as the default
// policy allows, and never for names outside every site and zone.
func TestACMEOnDemandThroughInstance(t *testing.T) {
	p := pebbletest.Start(t, 0)
	dns := pebbletest.StartDNS(t)
	in, logs := acmeEdge(t, fmt.Sprintf(`
listen: {http: ["127.0.0.1:0"], https: ["127.0.0.1:0"]}
tls:
  acme: {ca: %s, ca_root: %s, on_demand: {}}
sites:
  - hosts: ["*.tenants.example.com"]
    routes: [{path: /, respond: {status: 200, body: tenant}}]
`, p.Directory, p.APIRootFile), t.TempDir(), nil)
	p.Target(addrPort(in.HTTPAddrs()[0]), addrPort(in.HTTPSAddrs()[0]), dns.Addr)
	c := httpsClient(in.HTTPSAddrs()[0].String(), p.Roots)
	port := fmt.Sprint(addrPort(in.HTTPSAddrs()[0]))

	body, leaf := waitGet(t, c, "https://blue.tenants.example.com:"+port+"/", 30*time.Second, logs)
	if body != "tenant" || !containsName(leaf.DNSNames, "blue.tenants.example.com") {
		t.Errorf("got %q from a certificate for %v", body, leaf.DNSNames)
	}
	orders := p.Orders.Load()
	if _, err := c.Get("https://stranger.example.net:" + port + "/"); err == nil {
		t.Error("a name outside every site got a certificate Pebble's root verifies")
	}
	if n := p.Orders.Load() - orders; n != 0 {
		t.Errorf("a refused name caused %d orders", n)
	}
}
