package static

import (
	"path"
	"strings"
)

// types is compiled in, not read from /etc/mime.types, so a file gets the
// same Content-Type on every machine. Text types say their charset, so a
// browser never guesses it.
var types = map[string]string{
	".html":        "text/html; charset=utf-8",
	".htm":         "text/html; charset=utf-8",
	".css":         "text/css; charset=utf-8",
	".js":          "text/javascript; charset=utf-8",
	".mjs":         "text/javascript; charset=utf-8",
	".json":        "application/json",
	".map":         "application/json",
	".webmanifest": "application/manifest+json",
	".txt":         "text/plain; charset=utf-8",
	".md":          "text/markdown; charset=utf-8",
	".csv":         "text/csv; charset=utf-8",
	".xml":         "text/xml; charset=utf-8",
	".rss":         "application/rss+xml",
	".atom":        "application/atom+xml",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/x-icon",
	".bmp":         "image/bmp",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".eot":         "application/vnd.ms-fontobject",
	".wasm":        "application/wasm",
	".pdf":         "application/pdf",
	".zip":         "application/zip",
	".gz":          "application/gzip",
	".tar":         "application/x-tar",
	".mp4":         "video/mp4",
	".webm":        "video/webm",
	".mp3":         "audio/mpeg",
	".ogg":         "audio/ogg",
	".wav":         "audio/wav",
}

// ctype is a Content-Type ready to be put in a header map as is, and
// whether precompressed siblings are looked for (the type compresses).
type ctype struct {
	value        []string
	compressible bool
}

// ctypes holds the table's header values built once, so serving a file
// allocates nothing to name its type. The slices are shared by every
// response and must never be written through.
var ctypes = func() map[string]ctype {
	m := make(map[string]ctype, len(types))
	for ext, t := range types {
		m[ext] = ctype{value: []string{t}, compressible: compressible(t)}
	}
	return m
}()

var octetStream = ctype{value: []string{"application/octet-stream"}}

func contentType(name string) ctype {
	ext := path.Ext(name)
	if c, ok := ctypes[ext]; ok {
		return c
	}
	if c, ok := ctypes[strings.ToLower(ext)]; ok {
		return c
	}
	return octetStream
}

// compressible types are worth a precompressed sibling: text, JSON, XML,
// JavaScript, SVG and wasm. Images, fonts (woff/woff2 are compressed
// already), archives and media are not.
func compressible(t string) bool {
	return strings.HasPrefix(t, "text/") || strings.Contains(t, "json") ||
		strings.Contains(t, "xml") || strings.Contains(t, "javascript") ||
		t == "application/wasm" || t == "font/ttf" || t == "font/otf"
}
