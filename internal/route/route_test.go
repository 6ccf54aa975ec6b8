package route

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func named(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Route", name)
		w.Header().Set("X-Path", r.URL.Path)
	})
}

func testTable(t testing.TB) *Table {
	t.Helper()
	tb, err := New([]SiteSpec{
		{Hosts: []string{"example.org", "*.example.org"}, TLS: true, Routes: []RouteSpec{
			{Path: "/", Handler: named("root")},
			{Path: "/api", Handler: named("api")},
			{Path: "/api/v2/", Handler: named("v2"), StripPrefix: true},
			{Path: "/api/v2/health", Exact: true, Handler: named("exact")},
			{Regex: `(?i)\.php$`, Handler: named("php")},
			{Path: "/assets", Final: true, Handler: named("assets")},
		}},
		{Hosts: []string{"plain.example"}, TLS: false, Routes: []RouteSpec{{Path: "/", Handler: named("plain")}}},
	}, Options{HTTPSPort: 8443})
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func TestMatch(t *testing.T) {
	tb := testTable(t)
	for _, tc := range []struct{ host, path, route, seenPath string }{
		{"example.org", "/", "root", "/"},
		{"EXAMPLE.org:8443", "/x", "root", "/x"},
		{"a.example.org", "/api", "api", "/api"},
		{"a.b.example.org", "/api", "", ""}, // a wildcard is one label
		{"example.org", "/apiary", "root", "/apiary"},
		{"example.org", "/api/", "api", "/api/"},
		{"example.org", "/api/v2/x", "v2", "/x"},
		{"example.org", "/api/v2", "api", "/api/v2"},
		{"example.org", "/api/v2/health", "exact", "/api/v2/health"},
		{"example.org", "/api/v2/INDEX.PHP", "php", "/api/v2/INDEX.PHP"},
		{"example.org", "/assets/x.php", "assets", "/assets/x.php"},
		{"example.org", "/assets/../api/x", "api", "/api/x"},
		{"example.org", "/a//b/./c/", "root", "/a/b/c/"},
		{"example.org.", "/", "root", "/"},
		{"nothing.example", "/", "", ""},
	} {
		req := httptest.NewRequest("GET", "https://x"+tc.path, nil)
		req.Host = tc.host
		w := httptest.NewRecorder()
		tb.ServeHTTP(w, req)
		if got := w.Header().Get("X-Route"); got != tc.route {
			t.Errorf("%s%s: route %q, want %q", tc.host, tc.path, got, tc.route)
		}
		if tc.route == "" && w.Code != 404 {
			t.Errorf("%s%s: status %d, want 404", tc.host, tc.path, w.Code)
		}
		if got := w.Header().Get("X-Path"); got != tc.seenPath {
			t.Errorf("%s%s: handler saw path %q, want %q", tc.host, tc.path, got, tc.seenPath)
		}
	}
}

func TestPlainHTTPAndRedirect(t *testing.T) {
	tb := testTable(t)
	for _, tc := range []struct {
		url, method string
		tls         bool
		code        int
		loc, route  string
	}{
		{"http://example.org/a?b=c", "GET", false, 301, "https://example.org:8443/a?b=c", ""},
		{"http://example.org/a", "POST", false, 308, "https://example.org:8443/a", ""},
		{"http://[::1]/", "GET", false, 404, "", ""},
		{"http://plain.example/x", "GET", false, 200, "", "plain"},
		{"https://plain.example/x", "GET", true, 404, "", ""},
	} {
		req := httptest.NewRequest(tc.method, tc.url, nil)
		if !tc.tls {
			req.TLS = nil
		}
		w := httptest.NewRecorder()
		tb.ServeHTTP(w, req)
		if w.Code != tc.code || w.Header().Get("Location") != tc.loc || w.Header().Get("X-Route") != tc.route {
			t.Errorf("%s %s: %d %q %q, want %d %q %q", tc.method, tc.url, w.Code, w.Header().Get("Location"), w.Header().Get("X-Route"), tc.code, tc.loc, tc.route)
		}
	}
}

func TestHostOnly(t *testing.T) {
	for in, want := range map[string]string{
		"example.org": "example.org", "Example.ORG:443": "example.org", "[::1]:8443": "::1",
		"[::1]": "::1", "127.0.0.1:80": "127.0.0.1", "example.org.": "example.org", "": "",
	} {
		if got := HostOnly(in); got != want {
			t.Errorf("HostOnly(%q) = %q, want %q", in, got, want)
		}
	}
}

func BenchmarkServeHTTP(b *testing.B) {
	tb := testTable(b)
	nop := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	for _, s := range []*Site{tb.exact["example.org"]} {
		for _, r := range s.prefix {
			r.Handler = nop
		}
	}
	req := httptest.NewRequest("GET", "https://example.org/api/users/42", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		tb.ServeHTTP(w, req)
	}
}

// FuzzMatch checks that any host and path are routed without a panic and
// that a matched path is always clean.
func FuzzMatch(f *testing.F) {
	tb := testTable(f)
	for _, s := range []string{"/", "/api/../x", "//", "/a/./b", `\..\`, "/assets/%2e%2e/x", ""} {
		f.Add("example.org", s)
	}
	f.Fuzz(func(t *testing.T, host, p string) {
		req := httptest.NewRequest("GET", "https://example.org/", nil)
		req.Host, req.URL.Path = host, p
		w := httptest.NewRecorder()
		tb.ServeHTTP(w, req)
		if seen := w.Header().Get("X-Path"); seen != "" && (needsClean(seen) && seen != "/") {
			t.Fatalf("handler saw unclean path %q from %q", seen, p)
		}
	})
}
