package certs

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/internal/config"
)

func TestLocalCAPersistsAndSigns(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.Equal(again.Cert) {
		t.Fatal("a second start made a new root")
	}
	fi, err := os.Stat(filepath.Join(dir, "root.key"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("root key mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if !ca.Cert.IsCA || ca.Cert.PublicKeyAlgorithm != x509.ECDSA {
		t.Errorf("root is not an ECDSA CA")
	}
	leaf, err := ca.Issue([]string{"demo.gatehouse.test", "127.0.0.1"}, LeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, name := range []string{"demo.gatehouse.test", "127.0.0.1"} {
		if _, err := leaf.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("leaf does not verify for %s: %v", name, err)
		}
	}
}

func TestDamagedCAIsReported(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "root.crt"), []byte("garbage"), 0o644)
	os.WriteFile(filepath.Join(dir, "root.key"), []byte("garbage"), 0o600)
	if _, err := LoadOrCreateCA(dir); err == nil {
		t.Fatal("a damaged CA loaded")
	}
}

func TestManagerPicksSource(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A certificate file pair, as certbot leaves them.
	pair, _ := ca.Issue([]string{"files.example.org"}, time.Hour)
	dir := t.TempDir()
	certFile, keyFile := writePair(t, dir, pair)

	cfg, err := config.Parse("t.yaml", []byte(`
tls: {acme: {email: a@example.org}}
sites:
  - hosts: [app.localhost, "*.apps.test"]
    routes: [{path: /, respond: hi}]
  - hosts: [files.example.org]
    tls: {cert: `+certFile+`, key: `+keyFile+`}
    routes: [{path: /, respond: hi}]
  - hosts: [public.example.org]
    routes: [{path: /, respond: hi}]
  - hosts: [plain.example.org]
    tls: off
    routes: [{path: /, respond: hi}]
`))
	if err != nil {
		t.Fatal(err)
	}
	m := NewManager(ca)
	p, err := m.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.Use(p)
	for name, want := range map[string]Source{
		"app.localhost": Internal, "x.apps.test": Internal, "files.example.org": Files,
		"public.example.org": ACME, "plain.example.org": 0, "unknown.example": 0,
	} {
		if got := m.Lookup(name); got != want {
			t.Errorf("%s: source %v, want %v", name, got, want)
		}
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, name := range []string{"app.localhost", "x.apps.test", "files.example.org"} {
		c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := x509.ParseCertificate(c.Certificate[0])
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// Unknown names and no SNI get the fallback, never a leaf for the name.
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: "evil.example"})
	if err != nil {
		t.Fatal(err)
	}
	if leaf, _ := x509.ParseCertificate(c.Certificate[0]); leaf.VerifyHostname("evil.example") == nil {
		t.Error("issued a certificate for an unknown name")
	}
}

func writePair(t *testing.T, dir string, c *tls.Certificate) (string, string) {
	t.Helper()
	certPEM, keyPEM := encodePair(t, c)
	cf, kf := filepath.Join(dir, "fullchain.pem"), filepath.Join(dir, "privkey.pem")
	os.WriteFile(cf, certPEM, 0o644)
	os.WriteFile(kf, keyPEM, 0o600)
	return cf, kf
}
