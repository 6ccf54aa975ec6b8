package hotpath

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"gatehouse/internal/clientip"
	"gatehouse/internal/placeholder"
	"gatehouse/internal/proxy"
	"gatehouse/internal/route"
	"gatehouse/internal/upstream"
)

// discard is a ResponseWriter that keeps nothing, so a benchmark measures
// the handler and not a recorder's buffer.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func (d *discard) reset() {
	clear(d.h)
	d.code = 0
}

// BenchmarkProxy measures the proxy handler for one request with a 1 KB
// answer from a real backend on loopback: header rewrite, the upstream
// pool's round trip over a kept-alive connection, and copying the answer.
func BenchmarkProxy(b *testing.B) {
	for _, size := range []int{1 << 10, 100 << 10} {
		b.Run(fmt.Sprintf("body=%dKB", size>>10), func(b *testing.B) {
			payload := []byte(strings.Repeat("x", size))
			backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("X-Real-Ip") != "192.0.2.7" || r.Header.Get("X-Forwarded-Proto") != "http" {
					w.WriteHeader(http.StatusBadRequest)
					return
				}
				w.Write(payload)
			}))
			defer backend.Close()
			ts := upstream.NewTransports()
			defer ts.CloseIdle()
			pool, err := upstream.New([]string{backend.URL}, upstream.Options{MaxIdle: 64, Transports: ts})
			if err != nil {
				b.Fatal(err)
			}
			h := proxy.New(pool, proxy.Options{ClientIP: clientip.New(nil)})
			req := httptest.NewRequest("GET", "http://bench.test/1k", nil)
			req.RemoteAddr = "192.0.2.7:40000"
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				w.reset()
				h.ServeHTTP(w, req)
				if w.code != 0 && w.code != http.StatusOK {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

// BenchmarkRouteLookup measures the route table from Host to handler with
// requests spread over every site, for a few table sizes.
func BenchmarkRouteLookup(b *testing.B) {
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, n := range []int{1, 100, 10000} {
		b.Run(fmt.Sprintf("sites=%d", n), func(b *testing.B) {
			specs := make([]route.SiteSpec, n)
			for i := range specs {
				specs[i] = route.SiteSpec{
					Hosts: []string{fmt.Sprintf("s%d.example.org", i)},
					Routes: []route.RouteSpec{
						{Path: "/", Kind: "proxy", Handler: nop},
						{Path: "/static", StripPrefix: true, Kind: "static", Handler: nop},
					},
				}
			}
			t, err := route.New(specs, route.Options{})
			if err != nil {
				b.Fatal(err)
			}
			reqs := make([]*http.Request, min(n, 1024))
			for i := range reqs {
				reqs[i] = httptest.NewRequest("GET", "/api/users/42", nil)
				reqs[i].Host = fmt.Sprintf("s%d.example.org:8080", (i*7919)%n)
			}
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				t.ServeHTTP(w, reqs[i%len(reqs)])
				i++
			}
			if w.code != 0 {
				b.Fatalf("a request was not routed: status %d", w.code)
			}
		})
	}
}

// BenchmarkPlaceholderFill measures a header value with placeholders, as
// a `headers: {set: …}` edit fills it on every request.
func BenchmarkPlaceholderFill(b *testing.B) {
	t := placeholder.MustCompile("{scheme}://{host}{uri} from {client_ip}")
	req := httptest.NewRequest("GET", "http://bench.test/a/b?c=d", nil)
	req.RemoteAddr = "192.0.2.7:40000"
	b.ReportAllocs()
	for b.Loop() {
		if t.Fill(req) == "" {
			b.Fatal("empty")
		}
	}
}

// BenchmarkClientIP measures finding the client behind a trusted proxy
// from X-Forwarded-For.
func BenchmarkClientIP(b *testing.B) {
	res := clientip.New([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	req := httptest.NewRequest("GET", "http://bench.test/", nil)
	req.RemoteAddr = "10.0.0.2:40000"
	req.Header.Set("X-Forwarded-For", "198.51.100.9, 203.0.113.7, 10.0.0.3")
	want := netip.MustParseAddr("203.0.113.7")
	b.ReportAllocs()
	for b.Loop() {
		got, _ := res.Client(req, clientip.Peer(req).Addr())
		if got != want {
			b.Fatalf("client %v, want %v", got, want)
		}
	}
}
