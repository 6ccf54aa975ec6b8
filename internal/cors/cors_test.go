package cors

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/config"
)

// serve runs the policy in front of a handler on a loopback server and
// counts what reaches the handler.
func serve(t *testing.T, c config.CORS, backend http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int32
	if backend == nil {
		backend = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") }
	}
	srv := httptest.NewServer(p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		backend(w, r)
	})))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func do(t *testing.T, srv *httptest.Server, method string, hdr map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+"/api", nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

var appPolicy = config.CORS{
	Origins:       []string{"https://app.example.org", "https://*.example.net", "http://localhost:3000"},
	Methods:       []string{"GET", "PUT", "DELETE"},
	Headers:       []string{"Content-Type", "X-Token"},
	ExposeHeaders: []string{"X-Total"},
	Credentials:   true,
	MaxAge:        config.Duration(10 * time.Minute),
}

func TestPreflight(t *testing.T) {
	open := config.CORS{Origins: []string{"*"}, Headers: []string{"*"}}
	for _, tc := range []struct {
		name    string
		policy  config.CORS
		origin  string // "" sends none
		method  string
		headers string
		status  int
		want    map[string]string // "" means absent
	}{
		{"allowed exact origin", appPolicy, "https://app.example.org", "PUT", "content-type,x-token", 204, map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.org",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, PUT, DELETE",
			"Access-Control-Allow-Headers":     "Content-Type, X-Token",
			"Access-Control-Max-Age":           "600",
			"Vary":                             varyPreflight,
		}},
		{"wildcard one label", appPolicy, "https://shop.example.net", "GET", "", 204, map[string]string{"Access-Control-Allow-Origin": "https://shop.example.net"}},
		{"wildcard two labels", appPolicy, "https://a.b.example.net", "GET", "", 403, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"wildcard bare domain", appPolicy, "https://example.net", "GET", "", 403, nil},
		{"wildcard other scheme", appPolicy, "http://shop.example.net", "GET", "", 403, nil},
		{"port must match", appPolicy, "http://localhost:3001", "GET", "", 403, nil},
		{"port matches", appPolicy, "http://localhost:3000", "GET", "", 204, nil},
		{"suffix trick", appPolicy, "https://app.example.org.evil.test", "GET", "", 403, nil},
		{"prefix trick", appPolicy, "https://evilapp.example.org", "GET", "", 403, nil},
		{"case differs from the browser's form", appPolicy, "https://APP.example.org", "GET", "", 403, nil},
		{"null origin with a list", appPolicy, "null", "GET", "", 403, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""}},
		{"null origin with any", open, "null", "GET", "", 204, map[string]string{"Access-Control-Allow-Origin": "*"}},
		{"unknown method", appPolicy, "https://app.example.org", "PATCH", "", 403, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"safelisted method not listed", appPolicy, "https://app.example.org", "POST", "", 204, nil},
		{"extra header", appPolicy, "https://app.example.org", "PUT", "content-type,x-other", 403, map[string]string{"Access-Control-Allow-Headers": ""}},
		{"header list with spaces and case", appPolicy, "https://app.example.org", "PUT", " X-Token , content-type ", 204, nil},
		{"any header without credentials", open, "https://x.test", "GET", "x-anything", 204, map[string]string{
			"Access-Control-Allow-Origin":      "*",
			"Access-Control-Allow-Headers":     "*",
			"Access-Control-Allow-Credentials": "",
			"Access-Control-Allow-Methods":     "GET, HEAD, POST",
		}},
		{"default methods refuse PUT", open, "https://x.test", "PUT", "", 403, nil},
		{"no max age by default", open, "https://x.test", "GET", "", 204, map[string]string{"Access-Control-Max-Age": ""}},
		{"credentials never with star", appPolicy, "https://app.example.org", "GET", "", 204, map[string]string{"Access-Control-Allow-Origin": "https://app.example.org"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hits := serve(t, tc.policy, nil)
			hdr := map[string]string{"Origin": tc.origin, "Access-Control-Request-Method": tc.method}
			if tc.headers != "" {
				hdr["Access-Control-Request-Headers"] = tc.headers
			}
			resp := do(t, srv, "OPTIONS", hdr)
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if hits.Load() != 0 {
				t.Errorf("the preflight reached the handler")
			}
			for k, v := range tc.want {
				if got := strings.Join(resp.Header.Values(k), ","); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			if resp.StatusCode == 403 {
				for k := range resp.Header {
					if strings.HasPrefix(k, "Access-Control-") {
						t.Errorf("refused preflight carries %s", k)
					}
				}
			}
			if tc.policy.Credentials && resp.Header.Get("Access-Control-Allow-Origin") == "*" {
				t.Errorf("credentials with a star origin")
			}
		})
	}
}

func TestNotPreflight(t *testing.T) {
	// OPTIONS without Access-Control-Request-Method, or without Origin, is
	// an ordinary request for the handler.
	srv, hits := serve(t, appPolicy, nil)
	do(t, srv, "OPTIONS", map[string]string{"Origin": "https://app.example.org"})
	do(t, srv, "OPTIONS", map[string]string{"Access-Control-Request-Method": "GET"})
	if hits.Load() != 2 {
		t.Errorf("handler saw %d requests, want 2", hits.Load())
	}
}

func TestActualResponse(t *testing.T) {
	upstreamCORS := func(w http.ResponseWriter, r *http.Request) {
		// A backend that answers CORS itself, too liberally.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Methods", "*")
		w.Header().Add("Vary", "Accept-Encoding")
		w.Header().Set("X-Total", "3")
		w.WriteHeader(201)
	}
	silent := func(w http.ResponseWriter, r *http.Request) {} // writes nothing
	for _, tc := range []struct {
		name    string
		policy  config.CORS
		backend http.HandlerFunc
		origin  string
		status  int
		want    map[string]string
	}{
		{"allowed", appPolicy, upstreamCORS, "https://app.example.org", 201, map[string]string{
			"Access-Control-Allow-Origin":      "https://app.example.org",
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Expose-Headers":    "X-Total",
			"Access-Control-Allow-Methods":     "",
			"Vary":                             "Accept-Encoding,Origin",
		}},
		{"disallowed gets none, not even the backend's", appPolicy, upstreamCORS, "https://evil.test", 201, map[string]string{
			"Access-Control-Allow-Origin":   "",
			"Access-Control-Expose-Headers": "",
			"Access-Control-Allow-Methods":  "",
			"Vary":                          "Accept-Encoding,Origin",
		}},
		{"no origin: the backend's headers, and Vary", appPolicy, nil, "", 200, map[string]string{
			"Access-Control-Allow-Origin": "",
			"Vary":                        "Origin",
		}},
		{"nothing written", appPolicy, silent, "https://app.example.org", 200, map[string]string{
			"Access-Control-Allow-Origin": "https://app.example.org",
			"Vary":                        "Origin",
		}},
		{"any origin is constant", config.CORS{Origins: []string{"*"}}, nil, "https://x.test", 200, map[string]string{
			"Access-Control-Allow-Origin": "*",
			"Vary":                        "",
		}},
		{"null origin with a list", appPolicy, nil, "null", 200, map[string]string{"Access-Control-Allow-Origin": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, hits := serve(t, tc.policy, tc.backend)
			hdr := map[string]string{}
			if tc.origin != "" {
				hdr["Origin"] = tc.origin
			}
			resp := do(t, srv, "GET", hdr)
			if resp.StatusCode != tc.status || hits.Load() != 1 {
				t.Errorf("status %d after %d handler calls, want %d after 1", resp.StatusCode, hits.Load(), tc.status)
			}
			for k, v := range tc.want {
				if got := strings.Join(resp.Header.Values(k), ","); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestVaryNotRepeated(t *testing.T) {
	srv, _ := serve(t, appPolicy, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "origin, Accept")
	})
	resp := do(t, srv, "GET", map[string]string{"Origin": "https://app.example.org"})
	if got := resp.Header.Values("Vary"); len(got) != 1 || got[0] != "origin, Accept" {
		t.Errorf("Vary %q, want the backend's alone", got)
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []config.CORS{
		{},
		{Origins: []string{"*"}, Credentials: true},
		{Origins: []string{"https://a.test"}, Credentials: true, Headers: []string{"*"}},
		{Origins: []string{"https://a.test/path"}},
		{Origins: []string{"null"}},
		{Origins: []string{"ftp://a.test"}},
		{Origins: []string{"https://a.*.test"}},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestParseOriginNormalises(t *testing.T) {
	for in, want := range map[string]string{
		"HTTPS://App.Example.ORG":     "https://app.example.org",
		"https://app.example.org:443": "https://app.example.org",
		"http://localhost:80":         "http://localhost",
		"http://[::1]:8080":           "http://[::1]:8080",
		"https://*.Example.org:8443":  "https://*.example.org:8443",
	} {
		o, err := config.ParseOrigin(in)
		if err != nil || o.String() != want {
			t.Errorf("ParseOrigin(%q) = %q, %v; want %q", in, o, err, want)
		}
	}
}

// FuzzAllows: whatever the Origin header holds, the matcher never panics
// and allows only the listed origins or one label under a wildcard.
func FuzzAllows(f *testing.F) {
	for _, s := range []string{"https://app.example.org", "https://shop.example.net", "https://a.b.example.net",
		"https://.example.net", "null", "", "https://app.example.org.evil", "http://localhost:3000", "https://x/.example.net"} {
		f.Add(s)
	}
	p, err := New(appPolicy)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, origin string) {
		if !p.Allows(origin) {
			return
		}
		if p.exact[origin] {
			return
		}
		label, ok := strings.CutPrefix(origin, "https://")
		label, ok2 := strings.CutSuffix(label, ".example.net")
		if !ok || !ok2 || label == "" || strings.ContainsAny(label, "./:@?#") {
			t.Fatalf("%q allowed", origin)
		}
	})
}

// FuzzParseOrigin: a config origin either is refused or round-trips
// through its browser form, and a policy made of it allows that form.
func FuzzParseOrigin(f *testing.F) {
	for _, s := range []string{"https://app.example.org", "HTTP://LOCALHOST:80", "https://*.example.org:8443",
		"https://[::1]", "https://a/b", "null", "*", "https://*.", "https://a:0", "https://a:99999", "https://@a"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		o, err := config.ParseOrigin(s)
		if err != nil {
			return
		}
		again, err := config.ParseOrigin(o.String())
		if err != nil || again != o {
			t.Fatalf("%q → %q → %+v, %v", s, o, again, err)
		}
		p, err := New(config.CORS{Origins: []string{s}})
		if err != nil {
			t.Fatalf("New refused %q that ParseOrigin took: %v", s, err)
		}
		if !o.Wildcard && !p.Allows(o.String()) {
			t.Fatalf("policy for %q does not allow %q", s, o)
		}
	})
}

// FuzzPreflight: whatever a preflight carries, the answer is 204 only for
// what the policy allows, and never "*" with credentials.
func FuzzPreflight(f *testing.F) {
	f.Add("https://app.example.org", "PUT", "content-type, x-token")
	f.Add("https://shop.example.net", "DELETE", "")
	f.Add("null", "GET", ",,")
	f.Add("https://app.example.org", "put", "X-TOKEN,")
	f.Add("https://app.example.org", "GET", "x-token, x-other")
	p, err := New(appPolicy)
	if err != nil {
		f.Fatal(err)
	}
	h := p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic("a preflight reached the handler")
	}))
	f.Fuzz(func(t *testing.T, origin, method, headers string) {
		req := httptest.NewRequest("OPTIONS", "/", nil)
		req.Header["Origin"] = []string{origin}
		req.Header["Access-Control-Request-Method"] = []string{method}
		req.Header["Access-Control-Request-Headers"] = []string{headers}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case 204:
			if !p.Allows(origin) || !(p.methods[method] || safeMethods[method]) {
				t.Fatalf("allowed origin %q method %q", origin, method)
			}
			for _, name := range strings.Split(headers, ",") {
				if n := strings.ToLower(strings.TrimSpace(name)); n != "" && !p.headers[n] {
					t.Fatalf("allowed header %q", n)
				}
			}
			if got := rec.Header().Get("Access-Control-Allow-Origin"); got != origin {
				t.Fatalf("Allow-Origin %q for %q", got, origin)
			}
		case 403:
			for k := range rec.Header() {
				if strings.HasPrefix(k, "Access-Control-") {
					t.Fatalf("refused preflight carries %s", k)
				}
			}
		default:
			t.Fatalf("status %d", rec.Code)
		}
	})
}

func BenchmarkPreflight(b *testing.B) {
	p, _ := New(appPolicy)
	h := p.Wrap(http.NotFoundHandler())
	req := httptest.NewRequest("OPTIONS", "/", nil)
	req.Header.Set("Origin", "https://shop.example.net")
	req.Header.Set("Access-Control-Request-Method", "PUT")
	req.Header.Set("Access-Control-Request-Headers", "content-type,x-token")
	w := &discard{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

func BenchmarkActual(b *testing.B) {
	p, _ := New(appPolicy)
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	h := p.Wrap(ok)
	for _, origin := range []string{"https://app.example.org", "https://evil.test", ""} {
		b.Run("origin="+origin, func(b *testing.B) {
			req := httptest.NewRequest("GET", "/", nil)
			if origin != "" {
				req.Header.Set("Origin", origin)
			}
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

// discard is a ResponseWriter that keeps headers and drops the rest, so
// benchmarks measure the policy and not a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}
