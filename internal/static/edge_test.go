package static_test

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/gatetest"
)

// TestThroughTheEdge serves a folder through a whole gatehouse: TLS,
// HTTP/2 and HTTP/1.1, the router's prefix stripping and path cleaning.
func TestThroughTheEdge(t *testing.T) {
	dir := t.TempDir()
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB, from disk
	for name, body := range map[string][]byte{
		"app/index.html":       []byte("<h1>app</h1>"),
		"app/app.js":           []byte("run()"),
		"app/app.js.br":        []byte("brotli"),
		"files/big.bin":        big,
		"files/sub/index.html": []byte("<h1>sub</h1>"),
		"files/.env":           []byte("SECRET"),
		"secret.txt":           []byte("SECRET"),
	} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	g := gatetest.Start(t, `
sites:
  - hosts: [static.test]
    tls: internal
    routes:
      - path: /files
        strip_prefix: true
        static: {root: `+filepath.Join(dir, "files")+`, browse: true}
      - path: /
        static: {root: `+filepath.Join(dir, "app")+`, spa: true}
`)
	for _, c := range []struct {
		name   string
		client *http.Client
	}{{"h2", g.Client()}, {"http/1.1", g.ClientHTTP1()}} {
		t.Run(c.name, func(t *testing.T) {
			for _, r := range []struct {
				path, ae string
				status   int
				body     string
				location string
				enc      string
			}{
				{"/", "", 200, "<h1>app</h1>", "", ""},
				{"/users/42", "", 200, "<h1>app</h1>", "", ""},
				{"/app.js", "br", 200, "brotli", "", "br"},
				{"/missing.js", "", 404, "", "", ""},
				{"/files", "", 301, "", "files/", ""},
				{"/files/", "", 200, `<a href="big.bin">`, "", ""},
				{"/files/sub", "", 301, "", "sub/", ""},
				{"/files/sub/", "", 200, "<h1>sub</h1>", "", ""},
				{"/files/big.bin", "", 200, string(big), "", ""},
				{"/files/.env", "", 404, "", "", ""},
				{"/files/%2e%2e/secret.txt", "", 404, "", "", ""}, // cleaned to /secret.txt by the router: no such file in app/
			} {
				req, _ := http.NewRequest("GET", g.URL("static.test", r.path), nil)
				if r.ae != "" {
					req.Header.Set("Accept-Encoding", r.ae)
				}
				resp, err := c.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != r.status || !strings.Contains(string(b), r.body) ||
					resp.Header.Get("Location") != r.location || resp.Header.Get("Content-Encoding") != r.enc {
					t.Errorf("%s: %d %q Location %q encoding %q", r.path, resp.StatusCode, trim(b), resp.Header.Get("Location"), resp.Header.Get("Content-Encoding"))
				}
				if strings.Contains(string(b), "SECRET") {
					t.Errorf("%s: leaked a secret", r.path)
				}
			}
		})
	}
}

func trim(b []byte) string {
	if len(b) > 60 {
		return string(b[:60]) + "…"
	}
	return string(b)
}
