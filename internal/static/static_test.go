package static

import (
	"bufio"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/config"
)

func site(t testing.TB, cfg config.Static) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"index.html":        "<h1>home</h1>",
		"app.js":            "console.log(1)",
		"style.css":         "body{}",
		"data.json":         `{"a":1}`,
		"logo.svg":          "<svg/>",
		"img.png":           "\x89PNG",
		"font.woff2":        "wOF2",
		"mod.wasm":          "\x00asm",
		"big.txt":           strings.Repeat("0123456789", 100),
		"docs/index.html":   "<h1>docs</h1>",
		"empty/.keep":       "",
		"list/a.txt":        "a",
		"list/<b>.txt":      "b",
		".env":              "SECRET=1",
		".git/config":       "[core]",
		".well-known/x.txt": "known",
		"pre.js":            "plain",
		"pre.js.gz":         "gzipped",
		"unknown.bin-thing": "?",
	}
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(body), 0o644)
	}
	outside := filepath.Join(t.TempDir(), "secret.txt")
	os.WriteFile(outside, []byte("outside"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "escape.txt"))
	os.Symlink(filepath.Dir(outside), filepath.Join(dir, "escapedir"))
	cfg.Root = dir
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, dir
}

func get(t *testing.T, srv *httptest.Server, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestContentTypes(t *testing.T) {
	srv, _ := site(t, config.Static{})
	for path, want := range map[string]string{
		"/":                  "text/html; charset=utf-8",
		"/app.js":            "text/javascript; charset=utf-8",
		"/style.css":         "text/css; charset=utf-8",
		"/data.json":         "application/json",
		"/logo.svg":          "image/svg+xml",
		"/img.png":           "image/png",
		"/font.woff2":        "font/woff2",
		"/mod.wasm":          "application/wasm",
		"/unknown.bin-thing": "application/octet-stream",
	} {
		resp, _ := get(t, srv, path, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != want {
			t.Errorf("%s: %d %q, want %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), want)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
}

func TestConditionalAndRange(t *testing.T) {
	srv, _ := site(t, config.Static{})
	resp, body := get(t, srv, "/big.txt", nil)
	etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
	if etag == "" || lm == "" || len(body) != 1000 {
		t.Fatalf("etag %q last-modified %q len %d", etag, lm, len(body))
	}
	if r, _ := get(t, srv, "/big.txt", map[string]string{"If-None-Match": etag}); r.StatusCode != 304 {
		t.Errorf("If-None-Match: %d, want 304", r.StatusCode)
	}
	if r, _ := get(t, srv, "/big.txt", map[string]string{"If-Modified-Since": lm}); r.StatusCode != 304 {
		t.Errorf("If-Modified-Since: %d, want 304", r.StatusCode)
	}
	if r, b := get(t, srv, "/big.txt", map[string]string{"Range": "bytes=10-19"}); r.StatusCode != 206 || b != "0123456789" || r.Header.Get("Content-Range") != "bytes 10-19/1000" {
		t.Errorf("range: %d %q %q", r.StatusCode, b, r.Header.Get("Content-Range"))
	}
	r, b := get(t, srv, "/big.txt", map[string]string{"Range": "bytes=0-1,5-6"})
	if r.StatusCode != 206 || !strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/byteranges") {
		t.Fatalf("multi-range: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	_, params, _ := strings.Cut(r.Header.Get("Content-Type"), "boundary=")
	mr := multipart.NewReader(strings.NewReader(b), params)
	var parts []string
	for p, err := mr.NextPart(); err == nil; p, err = mr.NextPart() {
		pb, _ := io.ReadAll(p)
		parts = append(parts, string(pb))
	}
	if strings.Join(parts, ",") != "01,56" {
		t.Errorf("multi-range parts %v", parts)
	}
	if r, _ := get(t, srv, "/big.txt", map[string]string{"Range": "bytes=5000-6000"}); r.StatusCode != 416 {
		t.Errorf("unsatisfiable range: %d, want 416", r.StatusCode)
	}
	req, _ := http.NewRequest("HEAD", srv.URL+"/big.txt", nil)
	hr, err := http.DefaultClient.Do(req)
	if err != nil || hr.StatusCode != 200 || hr.ContentLength != 1000 {
		t.Errorf("HEAD: %v %v", hr, err)
	}
}

func TestIndexRedirectSPAAndListing(t *testing.T) {
	srv, _ := site(t, config.Static{})
	if r, b := get(t, srv, "/docs/", nil); r.StatusCode != 200 || b != "<h1>docs</h1>" {
		t.Errorf("/docs/: %d %q", r.StatusCode, b)
	}
	if r, _ := get(t, srv, "/docs?x=1", nil); r.StatusCode != 301 || r.Header.Get("Location") != "docs/?x=1" {
		t.Errorf("/docs: %d %q", r.StatusCode, r.Header.Get("Location"))
	}
	if r, _ := get(t, srv, "/list/", nil); r.StatusCode != 404 {
		t.Errorf("listing off: %d, want 404", r.StatusCode)
	}
	if r, _ := get(t, srv, "/app/route", nil); r.StatusCode != 404 {
		t.Errorf("no SPA: %d, want 404", r.StatusCode)
	}

	spa, _ := site(t, config.Static{SPA: true, Browse: true})
	if r, b := get(t, spa, "/app/route", nil); r.StatusCode != 200 || b != "<h1>home</h1>" {
		t.Errorf("SPA route: %d %q", r.StatusCode, b)
	}
	if r, _ := get(t, spa, "/missing.js", nil); r.StatusCode != 404 {
		t.Errorf("SPA missing asset: %d, want 404", r.StatusCode)
	}
	if r, b := get(t, spa, "/missing.js", map[string]string{"Accept": "text/html"}); r.StatusCode != 200 || b != "<h1>home</h1>" {
		t.Errorf("SPA navigation: %d %q", r.StatusCode, b)
	}
	r, b := get(t, spa, "/list/", nil)
	if r.StatusCode != 200 || !strings.Contains(b, `<a href="a.txt">a.txt</a>`) || !strings.Contains(b, "&lt;b&gt;.txt") || strings.Contains(b, "<b>") {
		t.Errorf("listing: %d %s", r.StatusCode, b)
	}
}

func TestRefusesWhatIsNotServed(t *testing.T) {
	srv, _ := site(t, config.Static{Browse: true})
	for _, p := range []string{"/.env", "/.git/config", "/docs/../.env", "/escape.txt", "/escapedir/secret.txt", "/nothing"} {
		if r, b := get(t, srv, p, nil); r.StatusCode != 404 || strings.Contains(b, "SECRET") || strings.Contains(b, "outside") {
			t.Errorf("%s: %d %q", p, r.StatusCode, b)
		}
	}
	if r, b := get(t, srv, "/.well-known/x.txt", nil); r.StatusCode != 200 || b != "known" {
		t.Errorf(".well-known: %d %q", r.StatusCode, b)
	}
	// Raw request lines that a client library would clean.
	for _, line := range []string{"/../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/docs/%2e%2e/.env", "/..%5c..%5cetc/passwd", "/%00.env"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", line)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			conn.Close()
			t.Fatalf("%s: %v", line, err)
		}
		b, _ := io.ReadAll(resp.Body)
		conn.Close()
		if resp.StatusCode == 200 || strings.Contains(string(b), "root:") || strings.Contains(string(b), "SECRET") {
			t.Errorf("%s: %d %q", line, resp.StatusCode, b)
		}
	}
	req, _ := http.NewRequest("POST", srv.URL+"/index.html", nil)
	r, err := http.DefaultClient.Do(req)
	if err != nil || r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %v %v", r, err)
	}
}

func TestPrecompressed(t *testing.T) {
	srv, _ := site(t, config.Static{})
	if r, b := get(t, srv, "/pre.js", map[string]string{"Accept-Encoding": "gzip, br;q=0"}); b != "gzipped" || r.Header.Get("Content-Encoding") != "gzip" || r.Header.Get("Vary") != "Accept-Encoding" {
		t.Errorf("gzip: %q %q %q", b, r.Header.Get("Content-Encoding"), r.Header.Get("Vary"))
	}
	if r, b := get(t, srv, "/pre.js", map[string]string{"Accept-Encoding": "gzip;q=0"}); b != "plain" || r.Header.Get("Content-Encoding") != "" {
		t.Errorf("gzip refused: %q %q", b, r.Header.Get("Content-Encoding"))
	}
	if r, b := get(t, srv, "/pre.js", nil); b != "plain" || r.Header.Get("Content-Type") != "text/javascript; charset=utf-8" {
		t.Errorf("plain: %q %q", b, r.Header.Get("Content-Type"))
	}
}

// FuzzCleanName: whatever the path, the name stays inside the root and
// names no dotfile.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"/", "/../x", "/a/./b", "/.env", "/.well-known/acme", `\..\`, "/%2e", "//a//b", "/a\x00b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := cleanName(p)
		if !ok {
			return
		}
		if strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") {
			t.Fatalf("%q escapes as %q", p, name)
		}
		for _, seg := range strings.Split(name, "/") {
			if strings.HasPrefix(seg, ".") && seg != "." && seg != ".well-known" {
				t.Fatalf("%q names dotfile %q", p, name)
			}
		}
	})
}

func BenchmarkServe(b *testing.B) {
	for _, size := range []int{1 << 10, 1 << 20} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			dir := b.TempDir()
			os.WriteFile(filepath.Join(dir, "f.bin"), make([]byte, size), 0o644)
			h, err := New(config.Static{Root: dir})
			if err != nil {
				b.Fatal(err)
			}
			req := httptest.NewRequest("GET", "/f.bin", nil)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
			}
		})
	}
}

// TestEditedFileServedFresh: the small-file cache never serves what the
// file no longer holds.
func TestEditedFileServedFresh(t *testing.T) {
	srv, dir := site(t, config.Static{})
	if _, b := get(t, srv, "/app.js", nil); b != "console.log(1)" {
		t.Fatalf("first: %q", b)
	}
	p := filepath.Join(dir, "app.js")
	os.WriteFile(p, []byte("console.log(2)"), 0o644)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(p, later, later)
	if _, b := get(t, srv, "/app.js", nil); b != "console.log(2)" {
		t.Errorf("after an edit: %q", b)
	}
	os.Remove(p)
	if r, _ := get(t, srv, "/app.js", nil); r.StatusCode != 404 {
		t.Errorf("after removal: %d", r.StatusCode)
	}
}
