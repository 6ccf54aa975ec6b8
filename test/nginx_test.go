package test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/gatetest"
	"gatehouse/internal/nginx"
)

// TestNginxSeedRunsUnchanged runs gatehouse directly on the nginx + certbot
// config people have (certificate files made here), and expects what nginx
// does: http:// redirects with 301 to https://, HTTPS proxies to the backend
// with the four headers, and an unknown host gets 404.
func TestNginxSeedRunsUnchanged(t *testing.T) {
	backend := echoBackend(t)
	dir := t.TempDir()
	g0 := gatetest.Start(t, "sites: []\n")
	pair, err := g0.CA().Issue([]string{"example-demo.backend.com"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(dir, "letsencrypt", "live", "example-demo.backend.com")
	os.MkdirAll(live, 0o755)
	certPEM, keyPEM := gatetest.EncodePair(t, pair)
	os.WriteFile(filepath.Join(live, "fullchain.pem"), certPEM, 0o644)
	os.WriteFile(filepath.Join(live, "privkey.pem"), keyPEM, 0o600)

	seed, err := os.ReadFile("../internal/nginx/testdata/seed.conf")
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.ReplaceAll(string(seed), "/etc/letsencrypt", filepath.Join(dir, "letsencrypt"))
	conf = strings.ReplaceAll(conf, "http://127.0.0.1:5000", backend.URL)
	path := filepath.Join(dir, "site.conf")
	os.WriteFile(path, []byte(conf), 0o644)
	if !nginx.Detect([]byte(conf)) {
		t.Fatal("the seed is not detected as nginx")
	}
	yaml, _, err := nginx.Convert(path, nginx.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(path, yaml)
	if err != nil {
		t.Fatalf("converted config: %v\n%s", err, yaml)
	}
	g := gatetest.StartConfig(t, cfg)
	// Trust the certbot-style certificate, issued by g0's CA.
	g.Roots.AddCert(g0.CA().Cert)

	c := g.ClientHTTP1()
	resp, err := c.Get(g.HTTPURL("example-demo.backend.com", "/path?q=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	_, httpsPort := splitPort(g.HTTPS)
	if want := "https://example-demo.backend.com:" + httpsPort + "/path?q=1"; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Errorf("http: %d %q, want 301 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	resp, err = c.Get(g.URL("example-demo.backend.com", "/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello from the backend" {
		t.Fatalf("https: %d %q", resp.StatusCode, b)
	}
	for h, want := range map[string]string{
		"X-Seen-Host":              "example-demo.backend.com:" + httpsPort,
		"X-Seen-X-Real-Ip":         "127.0.0.1",
		"X-Seen-X-Forwarded-For":   "127.0.0.1",
		"X-Seen-X-Forwarded-Proto": "https",
	} {
		if got := resp.Header.Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	resp, err = c.Get(g.HTTPURL("unknown.example", "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown host: %d, want 404", resp.StatusCode)
	}
}

func splitPort(hostport string) (string, string) {
	i := strings.LastIndexByte(hostport, ':')
	return hostport[:i], hostport[i+1:]
}
