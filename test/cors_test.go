package test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/gatetest"
	"gatehouse/internal/systest"
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

// TestCORSInBrowser: Chromium loads a page from origin A whose script
// calls fetch() on origin B, both through gatehouse over plain HTTP. What
// B's policies allow, the script reads; what they do not, the browser
// itself blocks, even where B's backend answered.
func TestCORSInBrowser(t *testing.T) {
	systest.Program(t, "chromium", "chromium")
	var mu sync.Mutex
	var seen []string // method and path of every request B's backend got
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		w.Header().Set("X-Total", "3")
		w.Header().Set("X-Hidden", "no")
		io.WriteString(w, "data-from-B")
	}))
	defer backend.Close()

	g := gatetest.Start(t, "sites: []\n")
	_, port, _ := net.SplitHostPort(g.HTTP)
	originA, originB := "http://a.localhost:"+port, "http://b.localhost:"+port
	pages := t.TempDir()
	page := `<!doctype html><html><body><pre id="out">pending</pre><script>
const B = "` + originB + `";
async function probe(name, path, init, hdr) {
  try {
    const r = await fetch(B + path, init);
    const body = await r.text();
    return name + ": ok " + r.status + " " + body + (hdr ? " " + hdr + "=" + r.headers.get(hdr) : "");
  } catch (e) {
    return name + ": blocked " + e.name;
  }
}
(async () => {
  const put = {method: "PUT", headers: {"X-Token": "t"}};
  const lines = [
    await probe("simple-allowed", "/allowed/get", {}, "X-Total"),
    await probe("hidden-header", "/allowed/get2", {}, "X-Hidden"),
    await probe("simple-denied", "/denied/get"),
    await probe("preflight-allowed", "/allowed/put", put),
    await probe("preflight-denied", "/denied/put", put),
    await probe("preflight-extra-header", "/allowed/put2", {method: "PUT", headers: {"X-Other": "t"}}),
    await probe("credentials-allowed", "/creds/get", {credentials: "include"}),
    await probe("credentials-on-any", "/any/get", {credentials: "include"}),
    await probe("any-origin", "/any/get2"),
  ];
  document.getElementById("out").textContent = lines.join("\n");
})();
</script></body></html>`
	os.WriteFile(filepath.Join(pages, "index.html"), []byte(page), 0o644)

	cfg, err := config.Parse("cors.yaml", []byte(fmt.Sprintf(`
sites:
  - hosts: [a.localhost]
    tls: off
    routes:
      - {path: /, static: %[1]s}
  - hosts: [b.localhost]
    tls: off
    routes:
      - path: /allowed
        proxy: %[2]s
        cors: {origins: [%[3]s], methods: [GET, PUT], headers: [X-Token], expose_headers: [X-Total]}
      - path: /denied
        proxy: %[2]s
        cors: {origins: ["http://c.localhost:%[4]s"], methods: [GET, PUT], headers: [X-Token]}
      - path: /creds
        proxy: %[2]s
        cors: {origins: [%[3]s], credentials: true}
      - path: /any
        proxy: %[2]s
        cors: "*"
`, pages, backend.URL, originA, port)))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = g.Config.Listen // the same sockets, now that the port is known
	if err := g.Reload(cfg); err != nil {
		t.Fatal(err)
	}

	dom := chromiumDOM(t, originA+"/")
	for _, want := range []string{
		"simple-allowed: ok 200 data-from-B X-Total=3",
		"hidden-header: ok 200 data-from-B X-Hidden=null", // not exposed
		"simple-denied: blocked TypeError",
		"preflight-allowed: ok 200 data-from-B",
		"preflight-denied: blocked TypeError",
		"preflight-extra-header: blocked TypeError",
		"credentials-allowed: ok 200 data-from-B",
		"credentials-on-any: blocked TypeError", // why credentials with "*" is a config error
		"any-origin: ok 200 data-from-B",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q; DOM:\n%s", want, dom)
		}
	}
	mu.Lock()
	got := strings.Join(seen, ", ")
	mu.Unlock()
	// The denied GET reached the backend: the browser, not the edge, kept
	// its answer from the script. Preflights never reach it, and refused
	// ones stop the PUT from being sent at all.
	for _, want := range []string{"GET /denied/get", "PUT /allowed/put", "GET /creds/get", "GET /any/get"} {
		if !strings.Contains(got, want) {
			t.Errorf("backend did not get %s; it got %s", want, got)
		}
	}
	for _, never := range []string{"OPTIONS", "PUT /denied/put", "PUT /allowed/put2"} {
		if strings.Contains(got, never) {
			t.Errorf("backend got %s; it got %s", never, got)
		}
	}
	// The browser did send the preflights: gatehouse answered them.
	logs := g.Logs.String()
	for _, want := range []string{
		`"method":"OPTIONS","path":"/allowed/put","status":204`,
		`"method":"OPTIONS","path":"/denied/put","status":403`,
		`"method":"OPTIONS","path":"/allowed/put2","status":403`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s", want)
		}
	}
}

// chromiumDOM loads url in headless Chromium with a fresh profile and
// returns the DOM once the page's scripts have run.
func chromiumDOM(t *testing.T, url string) string {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(home, "profile"), "--virtual-time-budget=5000", "--dump-dom", url)
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return string(out)
}
