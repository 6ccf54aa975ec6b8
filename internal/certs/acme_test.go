package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/certs/pebbletest"
	"gatehouse/internal/config"
	"gatehouse/internal/syncbuf"
	"gatehouse/internal/testdir"
	"gatehouse/internal/tlsterm"
)

// edge is a Manager behind real loopback HTTP and HTTPS listeners, wired
// as instance wires it: HTTP-01 answered on HTTP, certificates and
// TLS-ALPN-01 from GetCertificate on HTTPS.
type edge struct {
	m           *Manager
	http, https string
	logs        *syncbuf.Buffer
}

func parseConfig(t testing.TB, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("gatehouse.yaml", []byte(text))
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return cfg
}

// startEdge runs cfgText (with %s replaced by the Pebble settings) against
// pebble, keeping ACME state in dataDir.
func startEdge(t testing.TB, p *pebbletest.Server, dataDir string, dns TXTPublisher, cfgText string) *edge {
	t.Helper()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadOrCreateCA(filepath.Join(dataDir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	m := NewManager(ca)
	m.DataDir, m.DNS = dataDir, dns
	m.Log = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := parseConfig(t, fmt.Sprintf(cfgText, fmt.Sprintf("ca: %s\n    ca_root: %s\n    email: ops@example.com", p.Directory, p.APIRootFile)))
	pol, err := m.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Use(pol)

	challenge := m.HTTPChallenge()
	plain := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			challenge.ServeHTTP(w, r)
			return
		}
		http.Redirect(w, r, "https://"+r.Host+r.URL.Path, http.StatusMovedPermanently)
	})}
	secure := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "hello "+r.Host)
		}),
		TLSConfig: tlsterm.Config(m.GetCertificate),
		ErrorLog:  slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	go plain.Serve(httpLn)
	go secure.ServeTLS(httpsLn, "", "")
	e := &edge{m: m, http: httpLn.Addr().String(), https: httpsLn.Addr().String(), logs: logs}
	t.Cleanup(func() {
		m.Stop()
		plain.Close()
		secure.Close()
	})
	if err := m.Manage(Ports{HTTP: e.http, HTTPS: e.https}); err != nil {
		t.Fatal(err)
	}
	return e
}

func port(addr string) int {
	_, p := splitPort(addr)
	return p
}

// client trusts roots and reaches the edge's HTTPS listener for any name.
func (e *edge) client(roots *x509.CertPool) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", e.https)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			DisableKeepAlives: true,
		},
	}
}

// served returns the leaf the edge serves for name, verified against roots.
func (e *edge) served(name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", e.https, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// peek returns the leaf served for name without verifying it.
func (e *edge) peek(t *testing.T, name string) *x509.Certificate {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", e.https, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

// waitVerified waits until the edge serves a certificate for name that
// roots verify, and returns it.
func (e *edge) waitVerified(t testing.TB, name string, roots *x509.CertPool, within time.Duration) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(within)
	var err error
	for time.Now().Before(deadline) {
		var c *x509.Certificate
		if c, err = e.served(name, roots); err == nil {
			return c
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no verified certificate for %s within %s: %v\nlogs:\n%s", name, within, err, e.logs.String())
	return nil
}

// runs numbers names that must differ between repeated runs.
var runs atomic.Int64

const siteConfig = `
tls:
  acme:
    %s
%s
sites:
  - hosts: [%s]
    tls: acme
    routes: [{path: /, respond: {status: 200, body: ok}}]
`

func TestACMEChallenges(t *testing.T) {
	cases := []struct {
		desc, challenges, host, sni string
		dns                         bool
	}{
		{desc: "http-01", challenges: "challenges: [http-01]", host: "web.example.com", sni: "web.example.com"},
		{desc: "tls-alpn-01", challenges: "challenges: [tls-alpn-01]", host: "alpn.example.com", sni: "alpn.example.com"},
		{desc: "dns-01 wildcard", challenges: "challenges: [dns-01]", host: `"*.wild.example.net"`, sni: "any.wild.example.net", dns: true},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			t.Parallel()
			p := pebbletest.Start(t, 0)
			d := pebbletest.StartDNS(t)
			extra := ""
			var pub TXTPublisher
			if tc.dns {
				extra = "dns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.net: {}\n"
				pub = d
			}
			e := startEdge(t, p, t.TempDir(), pub, fmt.Sprintf(siteConfig, "%s\n    "+tc.challenges, extra, tc.host))
			p.Target(port(e.http), port(e.https), d.Addr)

			leaf := e.waitVerified(t, tc.sni, p.Roots, 30*time.Second)
			if err := leaf.VerifyHostname(tc.sni); err != nil {
				t.Fatal(err)
			}
			resp, err := e.client(p.Roots).Get("https://" + tc.sni + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "hello "+tc.sni {
				t.Fatalf("got %q, want hello %s", body, tc.sni)
			}
			if tc.dns {
				if got := d.TXT("_acme-challenge.wild.example.net"); len(got) != 0 {
					t.Errorf("challenge TXT records left behind: %q", got)
				}
			}
		})
	}
}

// TestACMEStorageAndRestart checks keys are private, that a restart on the
// same data directory serves the stored certificate without a new order,
// and that `gatehouse certs` lists it.
func TestACMEStorageAndRestart(t *testing.T) {
	t.Parallel()
	p := pebbletest.Start(t, 0)
	d := pebbletest.StartDNS(t)
	data := t.TempDir()
	cfg := fmt.Sprintf(siteConfig, "%s", "", "keep.example.com")
	e := startEdge(t, p, data, nil, cfg)
	p.Target(port(e.http), port(e.https), d.Addr)
	first := e.waitVerified(t, "keep.example.com", p.Roots, 30*time.Second)

	var keys []string
	filepath.WalkDir(filepath.Join(data, "acme"), func(path string, de os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".key") {
			keys = append(keys, path)
		}
		return nil
	})
	if len(keys) < 2 { // the account key and the certificate key
		t.Fatalf("got keys %q, want the account's and the certificate's", keys)
	}
	for _, k := range keys {
		fi, err := os.Stat(k)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", k, fi.Mode().Perm())
		}
	}

	e.m.Stop()
	orders := p.Orders.Load()
	again := startEdge(t, p, data, nil, cfg)
	second := again.waitVerified(t, "keep.example.com", p.Roots, 10*time.Second)
	if !first.Equal(second) {
		t.Errorf("restart served a new certificate (serial %s, was %s)", second.SerialNumber, first.SerialNumber)
	}
	if got := p.Orders.Load(); got != orders {
		t.Errorf("restart placed %d new orders, want none", got-orders)
	}

	infos, err := Inventory(data)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	WriteInventory(&out, infos, time.Now())
	if !strings.Contains(out.String(), "keep.example.com") || !strings.Contains(out.String(), "Pebble Intermediate") {
		t.Errorf("certs listing lacks the certificate:\n%s", out.String())
	}
	// Pebble offers ARI: the next renewal is the CA's choice, inside the
	// certificate's life.
	if c := infos[0]; !c.RenewalFromARI || !c.NextRenewal.After(first.NotBefore) || !c.NextRenewal.Before(first.NotAfter) {
		t.Errorf("next renewal %v (ARI %v), want an ARI time within %v – %v", c.NextRenewal, c.RenewalFromARI, first.NotBefore, first.NotAfter)
	}
}

// TestACMERenewalAndOutage renews a short-lived certificate while requests
// flow (none may fail), then stops the CA: the current certificate is still
// served and the status shows the CA's error.
func TestACMERenewalAndOutage(t *testing.T) {
	t.Parallel()
	p := pebbletest.Start(t, 10*time.Second)
	d := pebbletest.StartDNS(t)
	data := t.TempDir()
	// certmagic keeps renewal back-off per name for the whole process, so
	// a repeated run (-count) must not reuse the name an outage failed.
	name := fmt.Sprintf("short-%d.example.com", runs.Add(1))
	renewal := "%s\n    renewal: {window: 0.5, check_interval: 1s}"
	e := startEdge(t, p, data, nil, fmt.Sprintf(siteConfig, renewal, "", name))
	p.Target(port(e.http), port(e.https), d.Addr)
	first := e.waitVerified(t, name, p.Roots, 30*time.Second)

	c := e.client(p.Roots)
	var renewed *x509.Certificate
	deadline := time.Now().Add(20 * time.Second)
	for n := 0; time.Now().Before(deadline); n++ {
		resp, err := c.Get("https://" + name + "/")
		if err != nil {
			t.Fatalf("request %d during renewal failed: %v", n, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if leaf := resp.TLS.PeerCertificates[0]; !leaf.Equal(first) {
			renewed = leaf
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if renewed == nil {
		t.Fatalf("certificate was not renewed within 20s\nlogs:\n%s", e.logs.String())
	}

	p.Stop()
	var info CertInfo
	deadline = time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && info.LastError == "" {
		time.Sleep(200 * time.Millisecond)
		infos, err := Inventory(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, i := range infos {
			if i.Source == "acme" && len(i.Names) > 0 && i.Names[0] == name {
				info = i
			}
		}
	}
	if info.LastError == "" {
		t.Fatalf("no renewal error recorded with the CA down\nlogs:\n%s", e.logs.String())
	}
	if !strings.Contains(info.LastError, "connect") && !strings.Contains(info.LastError, "refused") {
		t.Errorf("last error %q does not say the CA was unreachable", info.LastError)
	}
	leaf, err := e.served(name, p.Roots)
	if err != nil {
		t.Fatalf("with the CA down the current certificate must still be served: %v", err)
	}
	if leaf.NotAfter.Before(renewed.NotAfter) {
		t.Errorf("served an older certificate than the last renewed one")
	}
	if !strings.Contains(e.logs.String(), "still served") {
		t.Errorf("renewal failure not logged as such:\n%s", e.logs.String())
	}
}

// TestACMEOnDemand issues during the handshake for an allowed name and
// never asks the CA for a rejected one.
func TestACMEOnDemand(t *testing.T) {
	t.Parallel()
	p := pebbletest.Start(t, 0)
	d := pebbletest.StartDNS(t)
	onDemand := "%s\n    on_demand: {allow: [shop.customer.example.org]}"
	e := startEdge(t, p, t.TempDir(), nil, fmt.Sprintf(siteConfig, onDemand, "", "known.example.com"))
	p.Target(port(e.http), port(e.https), d.Addr)
	e.waitVerified(t, "known.example.com", p.Roots, 30*time.Second)

	leaf := e.waitVerified(t, "shop.customer.example.org", p.Roots, 30*time.Second)
	if err := leaf.VerifyHostname("shop.customer.example.org"); err != nil {
		t.Fatal(err)
	}
	orders := p.Orders.Load()
	if _, err := e.served("evil.example.org", p.Roots); err == nil {
		t.Fatal("a name the policy rejects got a certificate Pebble's root verifies")
	}
	if leaf := e.peek(t, "evil.example.org"); strings.Contains(leaf.Issuer.CommonName, "Pebble") {
		t.Fatalf("a name the policy rejects got a certificate from the CA: %v", leaf.DNSNames)
	}
	if got := p.Orders.Load(); got != orders {
		t.Errorf("a rejected name caused %d orders", got-orders)
	}
	if !strings.Contains(e.logs.String(), "not allowed by tls.acme.on_demand") {
		t.Errorf("refusal not logged:\n%s", e.logs.String())
	}
}

// TestPendingWithoutACME: names that ACME should manage are pending while
// it does not run (no data folder here), not silently left out.
func TestPendingWithoutACME(t *testing.T) {
	ca, err := LoadOrCreateCA(filepath.Join(t.TempDir(), "ca"))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ca)
	pol, err := m.Compile(parseConfig(t, "tls:\n  acme: {email: ops@example.com}\nsites:\n  - hosts: [b.example.com, a.example.com]\n    routes: [{path: /, respond: hi}]\n  - hosts: [internal.example.com]\n    tls: internal\n    routes: [{path: /, respond: hi}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.Use(pol)
	if got := fmt.Sprint(m.Pending()); got != "[a.example.com b.example.com]" {
		t.Errorf("pending before Manage: %s", got)
	}
	if err := m.Manage(Ports{}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(m.Pending()); got != "[a.example.com b.example.com]" {
		t.Errorf("pending with ACME off for want of a data folder: %s", got)
	}
}

// TestPendingExpired: a name whose only certificate has expired (renewals
// kept failing) is pending again, since clients refuse it.
func TestPendingExpired(t *testing.T) {
	dir := testdir.New(t) // certmagic's attempts may outlive Stop a moment
	ca, err := LoadOrCreateCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ca)
	m.DataDir = dir
	m.Log = slog.New(slog.DiscardHandler)
	// A CA that refuses connections: nothing is issued, nothing leaves
	// this machine.
	pol, err := m.Compile(parseConfig(t, "tls:\n  acme: {email: ops@example.com, ca: \"https://127.0.0.1:1/dir\"}\nsites:\n  - hosts: [old.example.com, new.example.com]\n    routes: [{path: /, respond: hi}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	m.Use(pol)
	t.Cleanup(m.Stop)
	if err := m.Manage(Ports{}); err != nil {
		t.Fatal(err)
	}
	g := m.acme.Load()
	if g == nil {
		t.Fatal("ACME did not start")
	}
	for name, lifetime := range map[string]time.Duration{
		"old.example.com": -time.Hour, // ended an hour ago
		"new.example.com": 30 * 24 * time.Hour,
	} {
		cert, err := ca.Issue([]string{name}, lifetime)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := g.http.CacheUnmanagedTLSCertificate(context.Background(), *cert, nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(m.Pending()); got != "[old.example.com]" {
		t.Errorf("pending: %s, want the name whose certificate expired", got)
	}
}
