package static

import (
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// list writes a plain listing of a directory, for routes with browse on.
// Names come from the disk and are escaped both as URL paths and as HTML;
// dotfiles are left out as they are refused when asked for.
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
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, ".") {
			continue
		}
		if e.IsDir() {
			n += "/"
		}
		names = append(names, n)
	}
	slices.Sort(names)
	title := html.EscapeString(r.URL.Path)
	var b strings.Builder
	b.WriteString("<!doctype html>\n<meta charset=utf-8>\n<title>")
	b.WriteString(title)
	b.WriteString("</title>\n<h1>")
	b.WriteString(title)
	b.WriteString("</h1>\n<ul>\n")
	for _, n := range names {
		// url.URL writes ./a:b for a name with a colon, so it is never
		// read as a scheme.
		b.WriteString(`<li><a href="`)
		b.WriteString(html.EscapeString((&url.URL{Path: n}).String()))
		b.WriteString(`">`)
		b.WriteString(html.EscapeString(n))
		b.WriteString("</a></li>\n")
	}
	b.WriteString("</ul>\n")
	hdr := w.Header()
	hdr["Content-Type"] = htmlType
	hdr["X-Content-Type-Options"] = nosniff
	hdr["Cache-Control"] = []string{"no-cache"}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write([]byte(b.String()))
	}
}
