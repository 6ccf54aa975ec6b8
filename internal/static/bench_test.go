package static

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"gatehouse/internal/config"
)

// sink is a ResponseWriter that keeps nothing, so a benchmark measures the
// handler and not a recorder.
type sink struct {
	h http.Header
	n int64
}

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) WriteHeader(int)             {}
func (s *sink) Write(p []byte) (int, error) { s.n += int64(len(p)); return len(p), nil }

func benchRoot(b *testing.B) string {
	dir := b.TempDir()
	for name, size := range map[string]int{"1k.js": 1 << 10, "1m.bin": 1 << 20} {
		if err := os.WriteFile(filepath.Join(dir, name), make([]byte, size), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

// BenchmarkHandler is the handler's own cost per request, in process.
func BenchmarkHandler(b *testing.B) {
	dir := benchRoot(b)
	h, err := New(config.Static{Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for _, c := range []struct {
		name, path string
		size       int64
		hdr        map[string]string
	}{
		{"1KiB", "/1k.js", 1 << 10, nil},
		{"1KiB-accept-encoding", "/1k.js", 1 << 10, map[string]string{"Accept-Encoding": "gzip, deflate, br"}},
		{"1KiB-304", "/1k.js", 0, map[string]string{"If-None-Match": "etag"}},
		{"1KiB-range", "/1k.js", 100, map[string]string{"Range": "bytes=0-99"}},
		{"1MiB", "/1m.bin", 1 << 20, nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", c.path, nil)
			for k, v := range c.hdr {
				req.Header.Set(k, v)
			}
			w := &sink{h: http.Header{}}
			if c.name == "1KiB-304" {
				h.ServeHTTP(w, httptest.NewRequest("GET", c.path, nil))
				req.Header.Set("If-None-Match", w.h.Get("ETag"))
			}
			b.SetBytes(c.size)
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				w.n = 0
				h.ServeHTTP(w, req)
			}
			if w.n != c.size {
				b.Fatalf("wrote %d bytes, want %d", w.n, c.size)
			}
		})
	}
}

// BenchmarkLoopback serves over real loopback sockets to a keep-alive
// client, beside http.FileServer on the same files, so the ratio between
// the two can be read from one run. Both ends share the machine, so the
// absolute numbers include the client's work.
func BenchmarkLoopback(b *testing.B) {
	dir := benchRoot(b)
	h, err := New(config.Static{Root: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close()
	for _, srv := range []struct {
		name string
		h    http.Handler
	}{
		{"gatehouse", h},
		{"http.FileServer", http.FileServer(http.Dir(dir))},
	} {
		s := httptest.NewServer(srv.h)
		tr := &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4}
		cl := &http.Client{Transport: tr}
		for _, f := range []struct {
			name, path string
			size       int64
		}{{"1KiB", "/1k.js", 1 << 10}, {"1MiB", "/1m.bin", 1 << 20}} {
			b.Run(srv.name+"/"+f.name, func(b *testing.B) {
				b.SetBytes(f.size)
				b.ReportAllocs()
				for b.Loop() {
					resp, err := cl.Get(s.URL + f.path)
					if err != nil {
						b.Fatal(err)
					}
					n, _ := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 || n != f.size {
						b.Fatalf("%d, %d bytes", resp.StatusCode, n)
					}
				}
			})
		}
		tr.CloseIdleConnections()
		s.Close()
	}
}
