package test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"gatehouse/internal/gatetest"
)

// TestCORSAtTheEdge: preflights are answered by gatehouse and never reach
// the backend; the route's policy wins over the site's; actual answers
// carry the headers for allowed origins only.
func TestCORSAtTheEdge(t *testing.T) {
	var hits atomic.Int32
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Vary", "Accept-Encoding")
		io.WriteString(w, "data")
	}))
	defer backend.Close()
	g := gatetest.Start(t, fmt.Sprintf(`
sites:
  - hosts: [api.example.org]
    tls: internal
    cors: {origins: ["https://*.example.org"], methods: [GET, PUT], max_age: 1h}
    routes:
      - path: /
        proxy: %[1]s
      - path: /account
        proxy: %[1]s
        cors:
          origins: [https://app.example.org]
          credentials: true
          headers: [Content-Type]
`, backend.URL))
	c := g.Client()
	for _, tc := range []struct {
		method, path, origin, reqMethod string
		status                          int
		allowOrigin, credentials, vary  string
		reachesBackend                  bool
	}{
		{"OPTIONS", "/items", "https://shop.example.org", "PUT", 204, "https://shop.example.org", "", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers", false},
		{"OPTIONS", "/items", "https://evil.test", "PUT", 403, "", "", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers", false},
		{"OPTIONS", "/account", "https://shop.example.org", "GET", 403, "", "", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers", false},
		{"OPTIONS", "/account", "https://app.example.org", "POST", 204, "https://app.example.org", "true", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers", false},
		{"GET", "/items", "https://shop.example.org", "", 200, "https://shop.example.org", "", "Accept-Encoding, Origin", true},
		{"GET", "/items", "https://evil.test", "", 200, "", "", "Accept-Encoding, Origin", true},
		{"GET", "/account", "https://app.example.org", "", 200, "https://app.example.org", "true", "Accept-Encoding, Origin", true},
	} {
		before := hits.Load()
		req, _ := http.NewRequest(tc.method, g.URL("api.example.org", tc.path), nil)
		req.Header.Set("Origin", tc.origin)
		if tc.reqMethod != "" {
			req.Header.Set("Access-Control-Request-Method", tc.reqMethod)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		name := tc.method + " " + tc.path + " from " + tc.origin
		if resp.StatusCode != tc.status {
			t.Errorf("%s: status %d, want %d", name, resp.StatusCode, tc.status)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != tc.allowOrigin {
			t.Errorf("%s: Allow-Origin %q, want %q", name, got, tc.allowOrigin)
		}
		if got := resp.Header.Get("Access-Control-Allow-Credentials"); got != tc.credentials {
			t.Errorf("%s: Allow-Credentials %q, want %q", name, got, tc.credentials)
		}
		if got := joinValues(resp.Header["Vary"]); got != tc.vary {
			t.Errorf("%s: Vary %q, want %q", name, got, tc.vary)
		}
		if reached := hits.Load() != before; reached != tc.reachesBackend {
			t.Errorf("%s: reached the backend: %v", name, reached)
		}
	}
}

func joinValues(v []string) string {
	s := ""
	for i, x := range v {
		if i > 0 {
			s += ", "
		}
		s += x
	}
	return s
}
