// Package static owns serving files from a folder: content types from a
// table compiled in (the same on every machine), ETag and Last-Modified with
// 304s, ranges, index files, an optional single-page-app fallback,
// precompressed siblings, an optional directory listing, and refusal of
// everything outside the folder: traversal, dotfiles, and symlinks that lead
// out (os.Root confines every open to the folder).
//
// A plain GET is answered here from header values built once per version of
// a file. Requests with conditions or ranges go to http.ServeContent, which
// is well tested against RFC 9110 (weak and strong comparison, If-Range,
// multipart/byteranges, 416): this package decides which file answers and
// leaves that arithmetic to it.
package static

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/config"
)

// Handler serves one folder. It is built per config generation; Close it
// when the generation is retired.
type Handler struct {
	root     *os.Root
	cache    *fileCache
	index    []string
	fallback string // a name inside the root; "" unless spa
	browse   bool
}

// New opens cfg.Root. The folder stays open for the handler's life, so a
// folder renamed away keeps being served until the next reload.
func New(cfg config.Static) (*Handler, error) {
	h := &Handler{cache: newFileCache(), index: cfg.Index, browse: cfg.Browse}
	if len(h.index) == 0 {
		h.index = []string{"index.html"}
	}
	for _, idx := range h.index {
		if idx == "" || strings.ContainsAny(idx, "/\\\x00") || idx[0] == '.' {
			return nil, fmt.Errorf("static index %q must be a plain file name such as index.html", idx)
		}
	}
	if cfg.SPA {
		fb := cfg.Fallback
		if fb == "" {
			fb = "/index.html"
		}
		name, ok := cleanName(fb)
		if !ok || name == "." {
			return nil, fmt.Errorf("static fallback %q must name a file inside the root, such as /index.html", fb)
		}
		h.fallback = name
	}
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("opening static root: %w", err)
	}
	h.root = root
	return h, nil
}

// Close releases the folder.
func (h *Handler) Close() error { return h.root.Close() }

// Header values shared by every response; never written through.
var (
	allowGetHead = []string{"GET, HEAD"}
	nosniff      = []string{"nosniff"}
	bytesUnit    = []string{"bytes"}
	varyEncoding = []string{"Accept-Encoding"}
	varyAccept   = []string{"Accept"}
	htmlType     = []string{"text/html; charset=utf-8"}
)

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = allowGetHead
		http.Error(w, "405 Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := cleanName(r.URL.Path)
	if !ok {
		notFound(w)
		return
	}
	fi, err := h.root.Stat(name)
	if err == nil && trailingSlashOnFile(r.URL.Path, fi) {
		notFound(w)
		return
	}
	if err == nil && fi.IsDir() {
		if target, ok := dirRedirect(r); ok {
			w.Header()["Location"] = []string{target}
			w.WriteHeader(http.StatusMovedPermanently)
			return
		}
		dir := name
		name, fi, err = h.findIndex(dir)
		if err != nil && h.browse {
			h.list(w, r, dir)
			return
		}
	}
	if err != nil && h.fallback != "" {
		if path.Ext(name) != "" {
			// Whether this gets the page or a 404 depends on Accept.
			addVary(w.Header(), varyAccept)
		}
		if wantsPage(r, name) {
			name = h.fallback
			fi, err = h.root.Stat(name)
		}
	}
	if err != nil || !fi.Mode().IsRegular() {
		notFound(w)
		return
	}
	h.serveFile(w, r, name, fi)
}

// trailingSlashOnFile: /index.html/ names a folder that a file is not, and
// answering it would make the page's relative links resolve wrongly; nginx
// answers 404 too.
func trailingSlashOnFile(p string, fi fs.FileInfo) bool {
	return strings.HasSuffix(p, "/") && !fi.IsDir()
}

// dirRedirect says where to send a folder asked for without its trailing
// slash, as nginx does (/docs → /docs/), so relative links in its page
// work. The target is relative (docs/): under strip_prefix the handler
// does not know the path the client used, and a relative reference
// resolves against it.
func dirRedirect(r *http.Request) (string, bool) {
	p := r.URL.Path
	if p == "" || p == "/" {
		// The folder's own root. A route that strips its prefix hands
		// /downloads and /downloads/ over alike as /, and only the request
		// line tells them apart; without the redirect, links in the index
		// page of /downloads would resolve against / instead.
		reqPath, _, _ := strings.Cut(r.RequestURI, "?")
		if !strings.HasPrefix(reqPath, "/") || strings.HasSuffix(reqPath, "/") {
			return "", false
		}
		var err error
		if p, err = url.PathUnescape(path.Base(reqPath)); err != nil || strings.ContainsAny(p, "/\\") {
			return "", false
		}
	} else if strings.HasSuffix(p, "/") {
		return "", false
	}
	base := path.Base(p)
	if base == "" || base[0] == '.' {
		// A path ending in . or .. that was not cleaned on the way here:
		// it already names this folder, and ../ would name another.
		return "", false
	}
	return (&url.URL{Path: base + "/", RawQuery: r.URL.RawQuery}).String(), true
}

func (h *Handler) serveFile(w http.ResponseWriter, r *http.Request, name string, fi fs.FileInfo) {
	ct := contentType(name)
	var enc []string
	if ct.compressible {
		var ename string
		var efi fs.FileInfo
		if enc, ename, efi = h.precompressed(r.Header["Accept-Encoding"], name); enc != nil {
			name, fi = ename, efi
		}
	}
	e, f, err := h.load(name, fi)
	if err != nil {
		notFound(w)
		return
	}
	if f != nil {
		defer f.Close()
	}
	hdr := w.Header()
	hdr["Content-Type"] = ct.value
	hdr["X-Content-Type-Options"] = nosniff
	if ct.compressible {
		// Whether or not a sibling exists now, the answer depends on
		// Accept-Encoding, and caches must know it.
		addVary(hdr, varyEncoding)
	}
	if enc != nil {
		hdr["Content-Encoding"] = enc
	}
	hdr["Etag"] = e.etag
	if conditional(r) {
		var body io.ReadSeeker = f
		if f == nil {
			body = bytes.NewReader(e.data)
		}
		http.ServeContent(w, r, "", e.mtime, body)
		return
	}
	hdr["Last-Modified"] = e.lastMod
	hdr["Content-Length"] = e.length
	hdr["Accept-Ranges"] = bytesUnit
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if f == nil {
		w.Write(e.data)
		return
	}
	// The ResponseWriter's ReadFrom turns this into sendfile on plain TCP.
	// CopyN keeps to the length announced if the file grows meanwhile.
	io.CopyN(w, f, e.size)
}

// Plain answers a plain GET or HEAD for urlPath (no conditions, no ranges;
// acceptEncoding is the request's Accept-Encoding, if any) when a file
// answers it: it returns the response's header fields as wire bytes, built
// once per version of the file (no status line, no Date), and the body:
// the bytes of a small file, or for a larger one the open file to send
// size bytes from (the caller closes it). ok is false for every other
// answer, which ServeHTTP gives: a folder, a missing file, the page of a
// single-page app. It is for servers that answer before building an
// http.Request.
func (h *Handler) Plain(urlPath, acceptEncoding string) (fields, body []byte, f *os.File, size int64, ok bool) {
	name, ok := cleanName(urlPath)
	if !ok || strings.HasSuffix(urlPath, "/") {
		return nil, nil, nil, 0, false
	}
	fi, err := h.root.Stat(name)
	if err != nil || !fi.Mode().IsRegular() {
		return nil, nil, nil, 0, false
	}
	ct := contentType(name)
	var enc []string
	if ct.compressible && acceptEncoding != "" {
		ae := [1]string{acceptEncoding}
		var ename string
		var efi fs.FileInfo
		if enc, ename, efi = h.precompressed(ae[:], name); enc != nil {
			name, fi = ename, efi
		}
	}
	e, f, err := h.load(name, fi)
	if err != nil {
		return nil, nil, nil, 0, false
	}
	var encoding string
	if enc != nil {
		encoding = enc[0]
	}
	if p := e.plain.Load(); p != nil && p.contentType == ct.value[0] && p.encoding == encoding {
		return p.fields, e.data, f, e.size, true
	}
	b := make([]byte, 0, 256)
	b = append(append(append(b, "Content-Type: "...), ct.value[0]...), "\r\nX-Content-Type-Options: nosniff\r\n"...)
	if ct.compressible {
		b = append(b, "Vary: Accept-Encoding\r\n"...)
	}
	if encoding != "" {
		b = append(append(append(b, "Content-Encoding: "...), encoding...), "\r\n"...)
	}
	b = append(append(append(b, "Etag: "...), e.etag[0]...), "\r\nLast-Modified: "...)
	b = append(append(append(b, e.lastMod[0]...), "\r\nContent-Length: "...), e.length[0]...)
	b = append(b, "\r\nAccept-Ranges: bytes\r\n"...)
	e.plain.Store(&plainFields{contentType: ct.value[0], encoding: encoding, fields: b})
	return b, e.data, f, e.size, true
}

// addVary adds a shared Vary value, copying rather than appending into a
// slice that may be shared.
func addVary(hdr http.Header, v []string) {
	if old := hdr["Vary"]; len(old) == 0 {
		hdr["Vary"] = v
	} else {
		hdr["Vary"] = append(old[:len(old):len(old)], v[0])
	}
}

// conditional reports whether the request has headers that http.ServeContent
// must weigh. Header keys arrive canonical, so plain map lookups do.
func conditional(r *http.Request) bool {
	h := r.Header
	return h["Range"] != nil || h["If-None-Match"] != nil || h["If-Modified-Since"] != nil ||
		h["If-Match"] != nil || h["If-Unmodified-Since"] != nil
}

// load returns the entry for name and, for a file too large to keep in
// memory, the open file to send from. Small files come from the cache,
// which saves the open, read and close on every request.
func (h *Handler) load(name string, fi fs.FileInfo) (*entry, *os.File, error) {
	if fi.Size() <= maxCachedFile {
		if e := h.cache.get(name, fi); e != nil {
			return e, nil, nil
		}
	}
	f, err := h.root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	ofi, err := f.Stat()
	if err != nil || !ofi.Mode().IsRegular() {
		f.Close()
		return nil, nil, fs.ErrNotExist
	}
	if ofi.Size() > maxCachedFile {
		e := h.cache.get(name, ofi)
		if e == nil {
			e = newEntry(ofi, nil)
			h.cache.put(name, e)
		}
		return e, f, nil
	}
	data := make([]byte, ofi.Size())
	_, err = io.ReadFull(f, data)
	f.Close()
	if err != nil {
		return nil, nil, fs.ErrNotExist // shrank while read: it is being rewritten
	}
	e := newEntry(ofi, data)
	h.cache.put(name, e)
	return e, nil, nil
}

// cleanName turns a URL path into a name inside the root, refusing what no
// file may be asked by: NUL, backslashes (a path separator to some tools
// and never one here), and dotfiles, except a leading .well-known. Cleaning
// a rooted path can never climb above it, so .. and its encodings (which
// net/http has already decoded) end inside the root.
func cleanName(p string) (string, bool) {
	if strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	name := path.Clean(p)[1:]
	if name == "" {
		return ".", true
	}
	if name[0] != '.' && !strings.Contains(name, "/.") {
		return name, true
	}
	rest := name
	if r, ok := strings.CutPrefix(name, ".well-known"); ok && (r == "" || r[0] == '/') {
		rest = r
	}
	if (rest != "" && rest[0] == '.') || strings.Contains(rest, "/.") {
		return "", false
	}
	return name, true
}

func (h *Handler) findIndex(dir string) (string, fs.FileInfo, error) {
	for _, idx := range h.index {
		name := idx
		if dir != "." {
			name = dir + "/" + idx
		}
		if fi, err := h.root.Stat(name); err == nil && fi.Mode().IsRegular() {
			return name, fi, nil
		}
	}
	return dir, nil, fs.ErrNotExist
}

// wantsPage reports whether a missing path should get the app's page: a
// browser navigating (its Accept names text/html) or a path without an
// extension (a client-side route). A missing /app.js fetched by a script
// stays a 404, so a broken deploy is not hidden behind an HTML page that
// the browser then refuses to run.
func wantsPage(r *http.Request, name string) bool {
	return path.Ext(name) == "" || strings.Contains(r.Header.Get("Accept"), "text/html")
}

// encodings are the precompressed siblings looked for, best first: brotli
// is smaller than gzip for the same text.
var encodings = []struct {
	token, ext string
	header     []string
}{
	{"br", ".br", []string{"br"}},
	{"gzip", ".gz", []string{"gzip"}},
}

// precompressed finds name.br or name.gz when the client accepts them (ae
// are its Accept-Encoding values), as nginx's gzip_static and Caddy's
// precompressed do.
func (h *Handler) precompressed(ae []string, name string) ([]string, string, fs.FileInfo) {
	if len(ae) == 0 {
		return nil, "", nil
	}
	var now time.Time
	for i, c := range encodings {
		if !acceptsEncoding(ae, c.token) {
			continue
		}
		if now.IsZero() {
			now = time.Now()
		}
		key := sibling{name, i}
		if h.cache.knownAbsent(key, now) {
			continue
		}
		sib := name + c.ext
		if fi, err := h.root.Stat(sib); err == nil && fi.Mode().IsRegular() {
			return c.header, sib, fi
		}
		h.cache.markAbsent(key, now)
	}
	return nil, "", nil
}

// acceptsEncoding reports whether Accept-Encoding values allow enc with a
// weight above zero, by name or through "*".
func acceptsEncoding(values []string, enc string) bool {
	star := false
	for _, v := range values {
		for v != "" {
			var part string
			part, v, _ = strings.Cut(v, ",")
			coding, params, _ := strings.Cut(part, ";")
			coding = strings.TrimSpace(coding)
			switch {
			case strings.EqualFold(coding, enc):
				return positiveWeight(params)
			case coding == "*":
				star = positiveWeight(params)
			}
		}
	}
	return star
}

// positiveWeight reads q= among parameters; no q means 1.
func positiveWeight(params string) bool {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			q, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return err == nil && q > 0
		}
	}
	return true
}

// notFound says nothing about why: a missing file, a refused path and a
// symlink leading out all look the same, and no filesystem path leaks.
func notFound(w http.ResponseWriter) {
	hdr := w.Header()
	delete(hdr, "Content-Encoding")
	delete(hdr, "Etag")
	hdr["Content-Type"] = []string{"text/plain; charset=utf-8"}
	hdr["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, "404 Not Found\n")
}
