package static

import (
	"bufio"
	"bytes"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// Markers that must never reach a client: the content of a file outside the
// root and of dotfiles inside it.
const (
	outsideMarker = "OUTSIDE-THE-ROOT"
	dotMarker     = "DOTFILE-SECRET"
)

// large is above maxCachedFile, so it is sent from disk.
var large = bytes.Repeat([]byte("abcdefghijklmnopqrstuvwxyz012345"), 4<<10) // 128 KiB

// tree writes a site under dir/public with a secret beside it (dir/secret.txt)
// and returns the public folder.
func tree(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	pub := filepath.Join(dir, "public")
	files := map[string]string{
		"index.html":          "<h1>home</h1>",
		"app.js":              "console.log(1)",
		"style.css":           "body{}",
		"big.txt":             strings.Repeat("0123456789", 100),
		"large.bin":           string(large),
		"docs/index.html":     "<h1>docs</h1>",
		"htm/index.htm":       "<h1>htm</h1>",
		"a b/index.html":      "<h1>space</h1>",
		"a:b/index.html":      "<h1>colon</h1>",
		"deep/er/index.html":  "<h1>deeper</h1>",
		"list/a.txt":          "a",
		"list/<b>.txt":        "b",
		"list/sub/x.txt":      "x",
		"list/.hidden":        dotMarker,
		".env":                dotMarker,
		".git/config":         dotMarker,
		"docs/.secret":        dotMarker,
		"docs/.well-known/x":  dotMarker,
		".well-known/x.txt":   "known",
		"pre.js":              "plain",
		"pre.js.gz":           "gzipped",
		"pre.js.br":           "brotli",
		"onlygz.css":          "plain css",
		"onlygz.css.gz":       "gzipped css",
		"pic.png":             "\x89PNG",
		"pic.png.gz":          "never sent",
		"unknown.bin-thing":   "?",
		"UPPER.PNG":           "\x89PNG",
		"inside/target.txt":   "inside",
		"shop/product/x.json": `{"x":1}`,
	}
	for name, body := range files {
		p := filepath.Join(pub, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	secret := filepath.Join(dir, "secret.txt")
	if err := os.WriteFile(secret, []byte(outsideMarker), 0o644); err != nil {
		t.Fatal(err)
	}
	for link, target := range map[string]string{
		"escape.txt":      secret,                       // absolute, outside
		"escapedir":       dir,                          // a directory outside
		"relescape.txt":   "../secret.txt",              // relative, outside
		"inside/link.txt": "target.txt",                 // stays inside: served
		"inside/up.txt":   "../index.html",              // climbs but stays inside: served
		"inside/deep.txt": "../../public/../secret.txt", // climbs out through the root's parent
	} {
		if err := os.Symlink(target, filepath.Join(pub, link)); err != nil {
			t.Fatal(err)
		}
	}
	return pub
}

// site serves a fresh tree over a real socket.
func site(t testing.TB, cfg config.Static) (*httptest.Server, string) {
	t.Helper()
	pub := tree(t)
	cfg.Root = pub
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, pub
}

// client does not decompress, so Content-Encoding stays visible.
var client = &http.Client{
	Transport:     &http.Transport{DisableCompression: true},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       10 * time.Second,
}

func do(t *testing.T, method, url string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func get(t *testing.T, srv *httptest.Server, path string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	return do(t, "GET", srv.URL+path, hdr)
}

// raw sends request lines that http.Client would clean or refuse, and reads
// the answers in order from one connection.
func raw(t *testing.T, srv *httptest.Server, requests ...string) []*http.Response {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	for _, req := range requests {
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
	}
	br := bufio.NewReader(conn)
	var out []*http.Response
	for _, req := range requests {
		resp, err := http.ReadResponse(br, &http.Request{Method: strings.Fields(req)[0]})
		if err != nil {
			t.Fatalf("%q: %v", req, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
		out = append(out, resp)
	}
	return out
}

func TestTableSaysCharsetForText(t *testing.T) {
	for ext, v := range types {
		if strings.HasPrefix(v, "text/") && !strings.HasSuffix(v, "; charset=utf-8") {
			t.Errorf("%s: %q has no charset", ext, v)
		}
	}
}

func TestContentTypes(t *testing.T) {
	want := map[string]string{
		".html":  "text/html; charset=utf-8",
		".css":   "text/css; charset=utf-8",
		".js":    "text/javascript; charset=utf-8",
		".mjs":   "text/javascript; charset=utf-8",
		".json":  "application/json",
		".svg":   "image/svg+xml",
		".png":   "image/png",
		".jpg":   "image/jpeg",
		".jpeg":  "image/jpeg",
		".gif":   "image/gif",
		".webp":  "image/webp",
		".avif":  "image/avif",
		".ico":   "image/x-icon",
		".woff":  "font/woff",
		".woff2": "font/woff2",
		".ttf":   "font/ttf",
		".otf":   "font/otf",
		".wasm":  "application/wasm",
		".txt":   "text/plain; charset=utf-8",
		".xml":   "text/xml; charset=utf-8",
		".pdf":   "application/pdf",
		".mp4":   "video/mp4",
		".webm":  "video/webm",
		".map":   "application/json",
	}
	// Every entry of the table is served, not only the ones named above.
	for ext, v := range types {
		if _, ok := want[ext]; !ok {
			want[ext] = v
		}
	}
	dir := t.TempDir()
	for ext := range want {
		os.WriteFile(filepath.Join(dir, "f"+ext), []byte("x"), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "SHOUT.PNG"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "noext"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "odd.bin-thing"), []byte("x"), 0o644)
	want["SHOUT.PNG"] = "image/png"
	want["noext"] = "application/octet-stream"
	want["odd.bin-thing"] = "application/octet-stream"
	h, err := New(config.Static{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	srv := httptest.NewServer(h)
	defer srv.Close()
	for key, ct := range want {
		p := "/" + key
		if strings.HasPrefix(key, ".") {
			p = "/f" + key
		}
		resp, body := get(t, srv, p, nil)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ct || body != "x" {
			t.Errorf("%s: %d %q %q, want 200 %q", p, resp.StatusCode, resp.Header.Get("Content-Type"), body, ct)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no X-Content-Type-Options: nosniff", p)
		}
	}
}

func TestValidators(t *testing.T) {
	srv, pub := site(t, config.Static{})
	for _, path := range []string{"/big.txt", "/large.bin"} {
		t.Run(path, func(t *testing.T) {
			resp, _ := get(t, srv, path, nil)
			etag, lm := resp.Header.Get("ETag"), resp.Header.Get("Last-Modified")
			if !strings.HasPrefix(etag, `"`) || lm == "" {
				t.Fatalf("ETag %q (want strong) Last-Modified %q", etag, lm)
			}
			if again, _ := get(t, srv, path, nil); again.Header.Get("ETag") != etag {
				t.Errorf("ETag changed between requests: %q then %q", etag, again.Header.Get("ETag"))
			}
			for _, c := range []struct {
				name string
				hdr  map[string]string
				want int
			}{
				{"If-None-Match", map[string]string{"If-None-Match": etag}, 304},
				{"If-None-Match list", map[string]string{"If-None-Match": `"nope", ` + etag}, 304},
				{"If-None-Match weak", map[string]string{"If-None-Match": "W/" + etag}, 304},
				{"If-None-Match *", map[string]string{"If-None-Match": "*"}, 304},
				{"If-None-Match other", map[string]string{"If-None-Match": `"other"`}, 200},
				{"If-Modified-Since", map[string]string{"If-Modified-Since": lm}, 304},
				{"If-Modified-Since earlier", map[string]string{"If-Modified-Since": "Mon, 02 Jan 2006 15:04:05 GMT"}, 200},
				{"If-None-Match wins over If-Modified-Since", map[string]string{"If-None-Match": `"other"`, "If-Modified-Since": lm}, 200},
				{"If-Match other", map[string]string{"If-Match": `"other"`}, 412},
				{"If-Match", map[string]string{"If-Match": etag}, 200},
			} {
				r, body := get(t, srv, path, c.hdr)
				if r.StatusCode != c.want {
					t.Errorf("%s: %d, want %d", c.name, r.StatusCode, c.want)
				}
				if r.StatusCode == 304 && (body != "" || r.Header.Get("ETag") != etag) {
					t.Errorf("%s: 304 with body %d bytes, ETag %q", c.name, len(body), r.Header.Get("ETag"))
				}
			}
		})
	}
	// An edit gives a new tag, so a client holding the old one gets the
	// new bytes.
	resp, _ := get(t, srv, "/big.txt", nil)
	old := resp.Header.Get("ETag")
	p := filepath.Join(pub, "big.txt")
	os.WriteFile(p, []byte("changed"), 0o644)
	later := time.Now().Add(3 * time.Second)
	os.Chtimes(p, later, later)
	r, body := get(t, srv, "/big.txt", map[string]string{"If-None-Match": old})
	if r.StatusCode != 200 || body != "changed" || r.Header.Get("ETag") == old {
		t.Errorf("after an edit: %d %q ETag %q (old %q)", r.StatusCode, body, r.Header.Get("ETag"), old)
	}
}

func TestRanges(t *testing.T) {
	srv, _ := site(t, config.Static{})
	etag := func(p string) string { r, _ := get(t, srv, p, nil); return r.Header.Get("ETag") }
	for _, c := range []struct {
		path, rng   string
		ifRange     string
		status      int
		body, crang string
	}{
		{"/big.txt", "bytes=10-19", "", 206, "0123456789", "bytes 10-19/1000"},
		{"/big.txt", "bytes=-5", "", 206, "56789", "bytes 995-999/1000"},
		{"/big.txt", "bytes=998-", "", 206, "89", "bytes 998-999/1000"},
		{"/big.txt", "bytes=5000-6000", "", 416, "", "bytes */1000"},
		{"/big.txt", "bytes=10-19", `"stale"`, 200, strings.Repeat("0123456789", 100), ""},
		{"/big.txt", "bytes=10-19", etag("/big.txt"), 206, "0123456789", "bytes 10-19/1000"},
		{"/large.bin", "bytes=32-57", "", 206, "abcdefghijklmnopqrstuvwxyz", "bytes 32-57/131072"},
		{"/large.bin", "bytes=131070-", "", 206, "45", "bytes 131070-131071/131072"},
	} {
		hdr := map[string]string{"Range": c.rng}
		if c.ifRange != "" {
			hdr["If-Range"] = c.ifRange
		}
		r, body := get(t, srv, c.path, hdr)
		if r.StatusCode != c.status || (c.status != 416 && body != c.body) || r.Header.Get("Content-Range") != c.crang {
			t.Errorf("%s %s: %d %q %q, want %d %q %q", c.path, c.rng, r.StatusCode, trim(body), r.Header.Get("Content-Range"), c.status, trim(c.body), c.crang)
		}
	}
	for _, path := range []string{"/big.txt", "/large.bin"} {
		r, b := get(t, srv, path, map[string]string{"Range": "bytes=0-1,5-6"})
		mt, params, _ := strings.Cut(r.Header.Get("Content-Type"), "; boundary=")
		if r.StatusCode != 206 || mt != "multipart/byteranges" {
			t.Fatalf("%s multi-range: %d %q", path, r.StatusCode, r.Header.Get("Content-Type"))
		}
		mr := multipart.NewReader(strings.NewReader(b), params)
		var parts []string
		for p, err := mr.NextPart(); err == nil; p, err = mr.NextPart() {
			pb, _ := io.ReadAll(p)
			parts = append(parts, p.Header.Get("Content-Range")+"="+string(pb))
		}
		size := "1000"
		if path == "/large.bin" {
			size = "131072"
		}
		want := []string{"bytes 0-1/" + size + "=" + path2prefix(path, 0, 2), "bytes 5-6/" + size + "=" + path2prefix(path, 5, 7)}
		if strings.Join(parts, "|") != strings.Join(want, "|") {
			t.Errorf("%s multi-range parts %q, want %q", path, parts, want)
		}
	}
}

func path2prefix(path string, from, to int) string {
	if path == "/large.bin" {
		return string(large[from:to])
	}
	return strings.Repeat("0123456789", 100)[from:to]
}

func trim(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}

// TestLargeFile: a file above the in-memory limit comes whole from disk.
func TestLargeFile(t *testing.T) {
	srv, _ := site(t, config.Static{})
	r, body := get(t, srv, "/large.bin", nil)
	if r.StatusCode != 200 || body != string(large) || r.ContentLength != int64(len(large)) || r.Header.Get("Accept-Ranges") != "bytes" {
		t.Errorf("large: %d len %d Content-Length %d Accept-Ranges %q", r.StatusCode, len(body), r.ContentLength, r.Header.Get("Accept-Ranges"))
	}
}

// TestHead: HEAD answers the headers GET would, and no body: a GET
// pipelined behind it on the same connection is read intact.
func TestHead(t *testing.T) {
	srv, _ := site(t, config.Static{})
	for _, c := range []struct {
		path, size, ctype string
		body              string
	}{
		{"/big.txt", "1000", "text/plain; charset=utf-8", strings.Repeat("0123456789", 100)},
		{"/large.bin", "131072", "application/octet-stream", string(large)},
		{"/docs/", "13", "text/html; charset=utf-8", "<h1>docs</h1>"},
	} {
		rs := raw(t, srv,
			"HEAD "+c.path+" HTTP/1.1\r\nHost: x\r\n\r\n",
			"GET "+c.path+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		head, getr := rs[0], rs[1]
		if head.StatusCode != 200 || head.Header.Get("Content-Length") != c.size || head.Header.Get("Content-Type") != c.ctype || head.Header.Get("ETag") == "" {
			t.Errorf("HEAD %s: %d %v", c.path, head.StatusCode, head.Header)
		}
		b, _ := io.ReadAll(getr.Body)
		if getr.StatusCode != 200 || string(b) != c.body {
			t.Errorf("GET after HEAD %s: %d %q", c.path, getr.StatusCode, trim(string(b)))
		}
	}
}

func TestMethods(t *testing.T) {
	srv, _ := site(t, config.Static{})
	for _, m := range []string{"POST", "PUT", "DELETE", "PATCH", "OPTIONS"} {
		r, _ := do(t, m, srv.URL+"/index.html", nil)
		if r.StatusCode != 405 || r.Header.Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: %d Allow %q", m, r.StatusCode, r.Header.Get("Allow"))
		}
	}
}

func TestIndexAndRedirect(t *testing.T) {
	srv, _ := site(t, config.Static{})
	for _, c := range []struct {
		path     string
		status   int
		body     string
		location string
	}{
		{"/", 200, "<h1>home</h1>", ""},
		{"/docs/", 200, "<h1>docs</h1>", ""},
		{"/docs", 301, "", "docs/"},
		{"/docs?x=1&y=2", 301, "", "docs/?x=1&y=2"},
		{"/deep/er", 301, "", "er/"},
		{"/deep/er/", 200, "<h1>deeper</h1>", ""},
		{"/a%20b", 301, "", "a%20b/"},
		{"/a%20b/", 200, "<h1>space</h1>", ""},
		{"/a:b", 301, "", "./a:b/"}, // never read as a scheme
		{"/a:b/", 200, "<h1>colon</h1>", ""},
		{"/htm/", 404, "", ""},  // index.htm is not in the default index list
		{"/list/", 404, "", ""}, // no index, browse off
		{"/nothing", 404, "", ""},
		{"/index.html/", 404, "", ""},
	} {
		r, body := get(t, srv, c.path, nil)
		if r.StatusCode != c.status || (c.body != "" && body != c.body) || r.Header.Get("Location") != c.location {
			t.Errorf("%s: %d %q Location %q, want %d %q %q", c.path, r.StatusCode, body, r.Header.Get("Location"), c.status, c.body, c.location)
		}
	}
	// A client following the redirect lands on the index.
	r, err := http.Get(srv.URL + "/deep/er")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.Request.URL.Path != "/deep/er/" || string(b) != "<h1>deeper</h1>" {
		t.Errorf("followed to %s: %q", r.Request.URL.Path, b)
	}

	// Behind a route that strips its prefix, as the router does: the
	// folder's root arrives as / for /files and /files/ alike.
	h, err := New(config.Static{Root: tree(t), Browse: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	stripped := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r2 := *r
		u := *r.URL
		u.Path = strings.TrimPrefix(u.Path, "/files")
		if u.Path == "" {
			u.Path = "/"
		}
		r2.URL = &u
		h.ServeHTTP(w, &r2)
	}))
	defer stripped.Close()
	for _, c := range []struct {
		path     string
		status   int
		body     string
		location string
	}{
		{"/files", 301, "", "files/"},
		{"/files?q=1", 301, "", "files/?q=1"},
		{"/files/", 200, "<h1>home</h1>", ""},
		{"/files/docs", 301, "", "docs/"},
		{"/files/docs/", 200, "<h1>docs</h1>", ""},
	} {
		r, body := get(t, stripped, c.path, nil)
		if r.StatusCode != c.status || (c.body != "" && body != c.body) || r.Header.Get("Location") != c.location {
			t.Errorf("stripped %s: %d %q Location %q, want %d %q %q", c.path, r.StatusCode, body, r.Header.Get("Location"), c.status, c.body, c.location)
		}
	}
	for _, target := range []string{"/files/..", "/files%2F..", "/a:b"} {
		resp := raw(t, stripped, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]
		if loc := resp.Header.Get("Location"); strings.HasPrefix(loc, "..") || strings.HasPrefix(loc, "a:") {
			t.Errorf("%s: redirected to %q", target, loc)
		}
	}

	custom, _ := site(t, config.Static{Index: []string{"index.htm", "index.html"}})
	if r, body := get(t, custom, "/htm/", nil); r.StatusCode != 200 || body != "<h1>htm</h1>" {
		t.Errorf("index.htm: %d %q", r.StatusCode, body)
	}
	if r, body := get(t, custom, "/docs/", nil); r.StatusCode != 200 || body != "<h1>docs</h1>" {
		t.Errorf("second index name: %d %q", r.StatusCode, body)
	}
}

func TestSPAFallback(t *testing.T) {
	plain, _ := site(t, config.Static{})
	if r, _ := get(t, plain, "/app/route", nil); r.StatusCode != 404 {
		t.Errorf("without spa: %d, want 404", r.StatusCode)
	}
	spa, _ := site(t, config.Static{SPA: true})
	shop, _ := site(t, config.Static{SPA: true, Fallback: "/docs/index.html"})
	html := map[string]string{"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
	for _, c := range []struct {
		srv        *httptest.Server
		path       string
		hdr        map[string]string
		status     int
		body       string
		varyAccept bool
	}{
		{spa, "/app/route", nil, 200, "<h1>home</h1>", false},
		{spa, "/app/route", html, 200, "<h1>home</h1>", false},
		{spa, "/user/42.5", html, 200, "<h1>home</h1>", true}, // a navigation with a dot
		{spa, "/missing.js", nil, 404, "", true},              // an asset stays missing
		{spa, "/missing.js", map[string]string{"Accept": "*/*"}, 404, "", true},
		{spa, "/app.js", html, 200, "console.log(1)", false}, // files win over the fallback
		{spa, "/list/", nil, 200, "<h1>home</h1>", false},    // a folder without index
		{spa, "/.env", html, 404, "", false},                 // refused paths are not rescued
		{shop, "/shop/cart", nil, 200, "<h1>docs</h1>", false},
	} {
		r, body := get(t, c.srv, c.path, c.hdr)
		if r.StatusCode != c.status || (c.body != "" && body != c.body) {
			t.Errorf("%s %v: %d %q, want %d %q", c.path, c.hdr, r.StatusCode, body, c.status, c.body)
		}
		// A missing path with an extension is a page or a 404 by Accept,
		// and caches must know.
		if got := slices.Contains(strings.Split(strings.ReplaceAll(strings.Join(r.Header.Values("Vary"), ","), " ", ""), ","), "Accept"); got != c.varyAccept {
			t.Errorf("%s: Vary %q", c.path, r.Header.Values("Vary"))
		}
		if c.status == 200 && strings.HasPrefix(c.body, "<h1>") && r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
			t.Errorf("%s: fallback served as %q", c.path, r.Header.Get("Content-Type"))
		}
	}
}

func TestListing(t *testing.T) {
	srv, _ := site(t, config.Static{Browse: true})
	r, b := get(t, srv, "/list/", nil)
	if r.StatusCode != 200 || r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("listing: %d %q", r.StatusCode, r.Header.Get("Content-Type"))
	}
	for _, want := range []string{`<a href="a.txt">a.txt</a>`, `<a href="%3Cb%3E.txt">&lt;b&gt;.txt</a>`, `<a href="sub/">sub/</a>`} {
		if !strings.Contains(b, want) {
			t.Errorf("listing lacks %s:\n%s", want, b)
		}
	}
	if strings.Contains(b, "<b>") || strings.Contains(b, "hidden") {
		t.Errorf("listing shows raw HTML or a dotfile:\n%s", b)
	}
	if r, _ := get(t, srv, "/docs/", nil); r.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("an index still wins over the listing")
	}
	if r, body := do(t, "HEAD", srv.URL+"/list/", nil); r.StatusCode != 200 || body != "" {
		t.Errorf("HEAD listing: %d %q", r.StatusCode, body)
	}
	if r, _ := get(t, srv, "/list", nil); r.StatusCode != 301 {
		t.Errorf("/list: %d, want 301", r.StatusCode)
	}
}

func TestRefusesWhatIsNotServed(t *testing.T) {
	srv, _ := site(t, config.Static{Browse: true})
	spa, _ := site(t, config.Static{SPA: true})
	refused := []string{
		"/.env", "/.git/config", "/.git/", "/docs/.secret", "/docs/.well-known/x", "/list/.hidden",
		"/escape.txt", "/escapedir/secret.txt", "/escapedir/", "/relescape.txt", "/inside/deep.txt",
	}
	for _, p := range refused {
		// Under spa a path that is not a file may get the app's page, but
		// never what it names.
		if _, body := get(t, spa, p, nil); strings.Contains(body, outsideMarker) || strings.Contains(body, dotMarker) {
			t.Errorf("spa %s: %q", p, body)
		}
		r, body := get(t, srv, p, nil)
		if r.StatusCode != 404 || strings.Contains(body, outsideMarker) || strings.Contains(body, dotMarker) {
			t.Errorf("%s: %d %q", p, r.StatusCode, body)
		}
		if strings.Contains(body, "/tmp") || strings.Contains(body, "public") {
			t.Errorf("%s: the answer names the filesystem: %q", p, body)
		}
	}
	for p, want := range map[string]string{
		"/.well-known/x.txt": "known",
		"/inside/link.txt":   "inside",
		"/inside/up.txt":     "<h1>home</h1>",
	} {
		if r, body := get(t, srv, p, nil); r.StatusCode != 200 || body != want {
			t.Errorf("%s: %d %q, want %q", p, r.StatusCode, body, want)
		}
	}
}

// TestTraversalOnTheWire sends request targets as an attacker would type
// them, which http.Client would clean or refuse.
func TestTraversalOnTheWire(t *testing.T) {
	srv, _ := site(t, config.Static{Browse: true})
	for _, target := range []string{
		"/../secret.txt",
		"/../../../../etc/passwd",
		"/docs/../../secret.txt",
		"/%2e%2e/secret.txt",
		"/%2e%2e%2fsecret.txt",
		"/%2E%2E/%2E%2E/etc/passwd",
		"/docs/%2e%2e/%2e%2e/secret.txt",
		"/..%2f..%2fsecret.txt",
		"/..%5csecret.txt",
		"/..\\secret.txt",
		"/docs\\..\\..\\secret.txt",
		"/%5c..%5c..%5csecret.txt",
		"/.%2e/secret.txt",
		"/%00../secret.txt",
		"/index.html%00.txt",
		"/%2e%65nv",
		"/.env%00",
		"//../secret.txt",
		"http://x/../secret.txt",
		"/escape.txt",
		"/escapedir/secret.txt",
	} {
		resp := raw(t, srv, "GET "+target+" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")[0]
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 404 && resp.StatusCode != 400 {
			t.Errorf("%s: %d, want 404 or 400", target, resp.StatusCode)
		}
		if strings.Contains(string(b), outsideMarker) || strings.Contains(string(b), dotMarker) || strings.Contains(string(b), "root:") {
			t.Errorf("%s: leaked %q", target, b)
		}
	}
}

func TestPrecompressed(t *testing.T) {
	srv, _ := site(t, config.Static{})
	for _, c := range []struct {
		path, ae  string
		body, enc string
		wantVary  bool
		wantCtype string
	}{
		{"/pre.js", "gzip, deflate, br", "brotli", "br", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "gzip", "gzipped", "gzip", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "gzip, br;q=0", "gzipped", "gzip", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "br;q=0.0, gzip;q=0", "plain", "", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "*", "brotli", "br", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "br;q=0, *", "gzipped", "gzip", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "identity", "plain", "", true, "text/javascript; charset=utf-8"},
		{"/pre.js", "", "plain", "", true, "text/javascript; charset=utf-8"},
		{"/onlygz.css", "br, gzip", "gzipped css", "gzip", true, "text/css; charset=utf-8"},
		{"/pic.png", "gzip", "\x89PNG", "", false, "image/png"}, // images are not looked up
	} {
		hdr := map[string]string{}
		if c.ae != "" {
			hdr["Accept-Encoding"] = c.ae
		}
		r, b := get(t, srv, c.path, hdr)
		gotVary := r.Header.Get("Vary") == "Accept-Encoding"
		if b != c.body || r.Header.Get("Content-Encoding") != c.enc || gotVary != c.wantVary || r.Header.Get("Content-Type") != c.wantCtype {
			t.Errorf("%s %q: %q enc %q vary %v type %q", c.path, c.ae, b, r.Header.Get("Content-Encoding"), r.Header.Get("Vary"), r.Header.Get("Content-Type"))
		}
	}
	// Each encoding is its own representation: its own tag, its own ranges.
	plain, _ := get(t, srv, "/pre.js", nil)
	gz, _ := get(t, srv, "/pre.js", map[string]string{"Accept-Encoding": "gzip"})
	if plain.Header.Get("ETag") == gz.Header.Get("ETag") {
		t.Errorf("plain and gzip share ETag %q", gz.Header.Get("ETag"))
	}
	if r, b := get(t, srv, "/pre.js", map[string]string{"Accept-Encoding": "gzip", "Range": "bytes=0-3"}); r.StatusCode != 206 || b != "gzip" || r.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("range over gzip: %d %q %q", r.StatusCode, b, r.Header.Get("Content-Encoding"))
	}
	if r, _ := get(t, srv, "/pre.js", map[string]string{"Accept-Encoding": "gzip", "If-None-Match": gz.Header.Get("ETag")}); r.StatusCode != 304 {
		t.Errorf("304 for the gzip tag: %d", r.StatusCode)
	}
	// The sibling itself is a plain file when asked for by name.
	if r, _ := get(t, srv, "/pre.js.gz", nil); r.Header.Get("Content-Type") != "application/gzip" || r.Header.Get("Content-Encoding") != "" {
		t.Errorf("/pre.js.gz: %q %q", r.Header.Get("Content-Type"), r.Header.Get("Content-Encoding"))
	}
}

// TestSiblingAddedLater: a missing sibling is remembered for a moment, then
// looked for again; one that disappears is never served.
func TestSiblingAddedLater(t *testing.T) {
	pub := tree(t)
	h, err := New(config.Static{Root: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.cache.recheck = 50 * time.Millisecond
	srv := httptest.NewServer(h)
	defer srv.Close()
	gzip := map[string]string{"Accept-Encoding": "gzip"}
	if _, b := get(t, srv, "/app.js", gzip); b != "console.log(1)" {
		t.Fatalf("before: %q", b)
	}
	os.WriteFile(filepath.Join(pub, "app.js.gz"), []byte("gz"), 0o644)
	if r, b := get(t, srv, "/app.js", gzip); b != "console.log(1)" || r.Header.Get("Content-Encoding") != "" {
		t.Errorf("within the recheck time: %q %q", b, r.Header.Get("Content-Encoding"))
	}
	time.Sleep(60 * time.Millisecond)
	if r, b := get(t, srv, "/app.js", gzip); b != "gz" || r.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("after the recheck time: %q %q", b, r.Header.Get("Content-Encoding"))
	}
	os.Remove(filepath.Join(pub, "app.js.gz"))
	if r, b := get(t, srv, "/app.js", gzip); b != "console.log(1)" || r.Header.Get("Content-Encoding") != "" {
		t.Errorf("after removal: %q %q", b, r.Header.Get("Content-Encoding"))
	}
}

func TestAcceptsEncoding(t *testing.T) {
	for _, c := range []struct {
		values []string
		enc    string
		want   bool
	}{
		{[]string{"gzip"}, "gzip", true},
		{[]string{"GZIP"}, "gzip", true},
		{[]string{"deflate, gzip;q=0.5"}, "gzip", true},
		{[]string{"gzip;q=0"}, "gzip", false},
		{[]string{"gzip; q=0.000"}, "gzip", false},
		{[]string{"gzip;q=0.001"}, "gzip", true},
		{[]string{"gzip;q=bogus"}, "gzip", false},
		{[]string{"br"}, "gzip", false},
		{[]string{"*"}, "gzip", true},
		{[]string{"*;q=0"}, "gzip", false},
		{[]string{"gzip;q=0, *"}, "gzip", false},
		{[]string{"deflate", "gzip"}, "gzip", true},
		{[]string{""}, "gzip", false},
		{[]string{",,;;,"}, "gzip", false},
	} {
		if got := acceptsEncoding(c.values, c.enc); got != c.want {
			t.Errorf("%q %s: %v, want %v", c.values, c.enc, got, c.want)
		}
	}
}

// TestEditedFileServedFresh: the cache never serves what the file no
// longer holds.
func TestEditedFileServedFresh(t *testing.T) {
	srv, pub := site(t, config.Static{})
	if _, b := get(t, srv, "/app.js", nil); b != "console.log(1)" {
		t.Fatalf("first: %q", b)
	}
	p := filepath.Join(pub, "app.js")
	os.WriteFile(p, []byte("console.log(2)"), 0o644)
	later := time.Now().Add(2 * time.Second)
	os.Chtimes(p, later, later)
	if _, b := get(t, srv, "/app.js", nil); b != "console.log(2)" {
		t.Errorf("after an edit: %q", b)
	}
	// Grown past the in-memory limit: now sent from disk.
	os.WriteFile(p, large, 0o644)
	if r, b := get(t, srv, "/app.js", nil); b != string(large) || r.ContentLength != int64(len(large)) {
		t.Errorf("after growing: %d bytes, Content-Length %d", len(b), r.ContentLength)
	}
	os.Remove(p)
	if r, _ := get(t, srv, "/app.js", nil); r.StatusCode != 404 {
		t.Errorf("after removal: %d", r.StatusCode)
	}
}

func TestNewRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		name string
		cfg  config.Static
		want string
	}{
		{"missing root", config.Static{Root: filepath.Join(dir, "nope")}, "opening static root"},
		{"index with a slash", config.Static{Root: dir, Index: []string{"a/index.html"}}, "plain file name"},
		{"dotfile index", config.Static{Root: dir, Index: []string{".index"}}, "plain file name"},
		{"fallback outside", config.Static{Root: dir, SPA: true, Fallback: `\..\x`}, "inside the root"},
		{"fallback dotfile", config.Static{Root: dir, SPA: true, Fallback: "/.env"}, "inside the root"},
		{"fallback the root", config.Static{Root: dir, SPA: true, Fallback: "/"}, "inside the root"},
	} {
		h, err := New(c.cfg)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		}
		if h != nil {
			h.Close()
		}
	}
}

// FuzzCleanName: whatever the path, the name stays inside the root and
// names no dotfile.
func FuzzCleanName(f *testing.F) {
	for _, s := range []string{"/", "", "/../x", "/a/./b", "/.env", "/.well-known/acme", "/.well-knownx", `\..\`, "/%2e", "//a//b", "/a\x00b", "a/../../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		name, ok := cleanName(p)
		if !ok {
			return
		}
		if name == "" || strings.HasPrefix(name, "/") || name == ".." || strings.HasPrefix(name, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/..") {
			t.Fatalf("%q escapes as %q", p, name)
		}
		for i, seg := range strings.Split(name, "/") {
			if strings.HasPrefix(seg, ".") && name != "." && !(i == 0 && seg == ".well-known") {
				t.Fatalf("%q names dotfile %q", p, name)
			}
		}
	})
}

// FuzzServePath: any request path, decoded or not, gets an answer that
// never holds a byte from outside the root or from a dotfile, and never a
// panic or a server error.
func FuzzServePath(f *testing.F) {
	for _, s := range []string{
		"/", "/index.html", "/docs", "/../secret.txt", "/escape.txt", "/escapedir/secret.txt",
		"/inside/deep.txt", "/relescape.txt", "/.env", "/list/", "/.git/config", "/a%20b",
		"/..\\secret.txt", "/docs/../../secret.txt", "/\x00", "/.well-known/../.env", "/pre.js",
		"/a:b", "/a%20b", "/docs/..", "http://x/docs", "/inside/up.txt",
	} {
		f.Add(s, "gzip, br")
		f.Add(s, "br;q=0, *")
	}
	pub := tree(f)
	h, err := New(config.Static{Root: pub, SPA: true, Browse: true})
	if err != nil {
		f.Fatal(err)
	}
	defer h.Close()
	f.Fuzz(func(t *testing.T, p, ae string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.URL.Path = p
		r.RequestURI = p // what a stripped prefix leaves the redirect to read
		r.Header.Set("Accept-Encoding", ae)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		body := w.Body.String()
		if strings.Contains(body, outsideMarker) || strings.Contains(body, dotMarker) {
			t.Fatalf("%q: leaked %q", p, body)
		}
		if w.Code >= 500 {
			t.Fatalf("%q: %d", p, w.Code)
		}
		// A redirect stays on this site and never climbs out of the folder.
		if loc := w.Header().Get("Location"); loc != "" {
			u, err := url.Parse(loc)
			if err != nil || u.Scheme != "" || u.Host != "" || strings.HasPrefix(loc, "/") || strings.HasPrefix(loc, "..") {
				t.Fatalf("%q: redirected to %q", p, loc)
			}
		}
	})
}
