// Package static owns serving files from a folder: content types from a
// table compiled in (the same on every machine), ETag and Last-Modified with
// 304s, ranges, index files, an optional single-page-app fallback,
// precompressed siblings, and refusal of everything outside the folder:
// traversal, dotfiles, and symlinks that lead out (os.Root confines every
// open to the folder).
//
// Conditional requests and ranges are left to http.ServeContent, which is
// well tested against the RFCs; this package decides which file answers.
package static

import (
	"bytes"
	"fmt"
	"html"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"

	"gatehouse/internal/config"
)

// Handler serves one folder.
type Handler struct {
	root     *os.Root
	cache    *fileCache
	index    []string
	fallback string // "" unless spa
	browse   bool
}

// New opens cfg.Root. The folder stays open for the handler's life, so a
// folder renamed away keeps being served until the next reload.
func New(cfg config.Static) (*Handler, error) {
	root, err := os.OpenRoot(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("opening static root: %w", err)
	}
	h := &Handler{root: root, cache: newFileCache(), index: cfg.Index, browse: cfg.Browse}
	if len(h.index) == 0 {
		h.index = []string{"index.html"}
	}
	if cfg.SPA {
		h.fallback = cfg.Fallback
		if h.fallback == "" {
			h.fallback = "/index.html"
		}
	}
	return h, nil
}

// Close releases the folder.
func (h *Handler) Close() error { return h.root.Close() }

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "405 Method Not Allowed", http.StatusMethodNotAllowed)
		return
	}
	name, ok := cleanName(r.URL.Path)
	if !ok {
		notFound(w)
		return
	}
	fi, err := h.root.Stat(name)
	if err == nil && fi.IsDir() {
		if !strings.HasSuffix(r.URL.Path, "/") {
			// As nginx does: /docs → /docs/, so relative links work. The
			// target is relative: under strip_prefix the handler does not
			// know the path the client used.
			target := (&url.URL{Path: path.Base(r.URL.Path) + "/", RawQuery: r.URL.RawQuery}).String()
			w.Header().Set("Location", target)
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
	if err != nil && h.fallback != "" && wantsPage(r, name) {
		name = strings.TrimPrefix(h.fallback, "/")
		fi, err = h.root.Stat(name)
	}
	if err != nil || !fi.Mode().IsRegular() {
		notFound(w)
		return
	}
	hdr := w.Header()
	ctype := contentType(fi.Name())
	hdr.Set("Content-Type", ctype)
	hdr.Set("X-Content-Type-Options", "nosniff")
	if compressible(ctype) {
		hdr.Add("Vary", "Accept-Encoding")
	}
	if enc, ename, efi := h.precompressed(r, name); enc != "" {
		hdr.Set("Content-Encoding", enc)
		name, fi = ename, efi
	}
	body, done, fi, err := h.content(name, fi)
	if err != nil {
		notFound(w)
		return
	}
	defer done()
	hdr.Set("ETag", etag(fi))
	http.ServeContent(w, r, "", fi.ModTime(), body)
}

// content returns the file's bytes to serve. Small files come from a cache
// checked against the file's size and modification time, which saves the
// open, read and close (and Go's poller registration) on every request;
// large ones are opened and go out by sendfile.
func (h *Handler) content(name string, fi fs.FileInfo) (io.ReadSeeker, func(), fs.FileInfo, error) {
	if fi.Size() <= maxCachedFile {
		if c := h.cache.get(name, fi); c != nil {
			return bytes.NewReader(c.data), func() {}, c.fi, nil
		}
	}
	f, err := h.root.Open(name)
	if err != nil {
		return nil, nil, nil, err
	}
	ofi, err := f.Stat()
	if err != nil || !ofi.Mode().IsRegular() {
		f.Close()
		return nil, nil, nil, fs.ErrNotExist
	}
	if ofi.Size() <= maxCachedFile {
		data, err := io.ReadAll(io.LimitReader(f, maxCachedFile+1))
		f.Close()
		if err != nil || int64(len(data)) != ofi.Size() {
			return nil, nil, nil, fs.ErrNotExist
		}
		h.cache.put(name, &cached{data: data, fi: ofi})
		return bytes.NewReader(data), func() {}, ofi, nil
	}
	return f, func() { f.Close() }, ofi, nil
}

// cleanName turns a URL path into a name inside the root, refusing what no
// file may be asked by: dotfiles (but .well-known), NUL, backslashes.
func cleanName(p string) (string, bool) {
	if strings.ContainsAny(p, "\x00\\") {
		return "", false
	}
	name := strings.TrimPrefix(path.Clean("/"+p), "/")
	if name == "" {
		name = "."
	}
	for _, seg := range strings.Split(name, "/") {
		if strings.HasPrefix(seg, ".") && seg != "." && seg != ".well-known" {
			return "", false
		}
	}
	return name, true
}

func (h *Handler) findIndex(dir string) (string, fs.FileInfo, error) {
	for _, idx := range h.index {
		name := path.Join(dir, idx)
		if fi, err := h.root.Stat(name); err == nil && fi.Mode().IsRegular() {
			return name, fi, nil
		}
	}
	return dir, nil, fs.ErrNotExist
}

// wantsPage reports whether a missing path should get the app's page: a
// browser navigating (Accept has text/html) or a path without an extension.
// A missing /app.js stays a 404, so a broken asset is not hidden.
func wantsPage(r *http.Request, name string) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html") || path.Ext(name) == ""
}

// precompressed finds name.br or name.gz when the client accepts them.
func (h *Handler) precompressed(r *http.Request, name string) (string, string, fs.FileInfo) {
	ae := r.Header.Get("Accept-Encoding")
	if ae == "" {
		return "", "", nil
	}
	for _, c := range []struct{ enc, ext string }{{"br", ".br"}, {"gzip", ".gz"}} {
		if !acceptsEncoding(ae, c.enc) {
			continue
		}
		if fi, err := h.root.Stat(name + c.ext); err == nil && fi.Mode().IsRegular() {
			return c.enc, name + c.ext, fi
		}
	}
	return "", "", nil
}

// acceptsEncoding reports whether an Accept-Encoding header allows enc
// with a weight above zero.
func acceptsEncoding(header, enc string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(name), enc) {
			continue
		}
		q := strings.TrimSpace(params)
		if v, ok := strings.CutPrefix(q, "q="); ok {
			f, err := strconv.ParseFloat(v, 64)
			return err == nil && f > 0
		}
		return true
	}
	return false
}

// etag is strong and cheap: size and modification time, as nginx makes it.
func etag(fi fs.FileInfo) string {
	return `"` + strconv.FormatInt(fi.ModTime().UnixNano(), 36) + "-" + strconv.FormatInt(fi.Size(), 36) + `"`
}

// list writes a plain, escaped listing of a directory.
func (h *Handler) list(w http.ResponseWriter, r *http.Request, name string) {
	dir, err := h.root.Open(name)
	if err != nil {
		notFound(w)
		return
	}
	defer dir.Close()
	entries, err := dir.ReadDir(-1)
	if err != nil {
		notFound(w)
		return
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name() < entries[j].Name() })
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var b strings.Builder
	title := html.EscapeString(r.URL.Path)
	fmt.Fprintf(&b, "<!doctype html><meta charset=utf-8><title>%s</title><h1>%s</h1><ul>\n", title, title)
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		if e.IsDir() {
			n += "/"
		}
		fmt.Fprintf(&b, "<li><a href=\"%s\">%s</a></li>\n", html.EscapeString((&url.URL{Path: n}).String()), html.EscapeString(n))
	}
	b.WriteString("</ul>\n")
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}

func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	w.Write([]byte("404 Not Found\n"))
}
