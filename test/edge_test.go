// Package test holds end-to-end tests: a real gatehouse on loopback ports,
// real backends (httptest, grpc-go, WebSocket) and real clients.
package test

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/gatetest"
)

// echoBackend answers with what it received, as the demo app would.
func echoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Host", r.Host)
		w.Header().Set("X-Seen-Path", r.URL.RequestURI())
		for _, h := range []string{"X-Real-Ip", "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host", "Connection", "X-Hop", "Keep-Alive", "X-Custom"} {
			w.Header().Set("X-Seen-"+h, strings.Join(r.Header.Values(h), "|"))
		}
		w.Header().Set("Connection", "X-Drop-Me")
		w.Header().Set("X-Drop-Me", "hop-by-hop")
		io.WriteString(w, "hello from the backend")
	}))
	t.Cleanup(srv.Close)
	return srv
}

func proxyConfig(upstream string, extra string) string {
	return fmt.Sprintf(`
sites:
  - hosts: [example.org, "*.apps.example.org"]
    tls: internal
    routes:
      - path: /
        proxy: %s
%s`, upstream, extra)
}

func TestRedirectHTTPToHTTPS(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, ""))
	c := g.Client()
	_, httpsPort, _ := net.SplitHostPort(g.HTTPS)
	for _, tc := range []struct {
		method string
		path   string
		want   int
	}{
		{"GET", "/a/b?x=1&y=2", http.StatusMovedPermanently},
		{"HEAD", "/", http.StatusMovedPermanently},
		{"POST", "/form?q=1", http.StatusPermanentRedirect},
		{"PUT", "/x", http.StatusPermanentRedirect},
	} {
		req, _ := http.NewRequest(tc.method, g.HTTPURL("example.org", tc.path), nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
		want := "https://example.org:" + httpsPort + tc.path
		if got := resp.Header.Get("Location"); got != want {
			t.Errorf("%s %s: Location %q, want %q", tc.method, tc.path, got, want)
		}
	}
}

func TestForwardedHeaders(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, ""))
	req, _ := http.NewRequest("GET", g.URL("example.org", "/p?q=1"), nil)
	req.Header.Set("X-Forwarded-For", "203.0.113.9") // a client's claim: not trusted
	req.Header.Set("X-Real-IP", "203.0.113.9")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "must not pass")
	req.Header.Set("X-Custom", "passes")
	resp, err := g.ClientHTTP1().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from the backend" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}
	_, port, _ := net.SplitHostPort(g.HTTPS)
	want := map[string]string{
		"X-Seen-Host":              "example.org:" + port,
		"X-Seen-Path":              "/p?q=1",
		"X-Seen-X-Real-Ip":         "127.0.0.1",
		"X-Seen-X-Forwarded-For":   "127.0.0.1",
		"X-Seen-X-Forwarded-Proto": "https",
		"X-Seen-X-Forwarded-Host":  "example.org:" + port,
		"X-Seen-X-Hop":             "",
		"X-Seen-Connection":        "",
		"X-Seen-X-Custom":          "passes",
		"X-Drop-Me":                "",
	}
	for k, v := range want {
		if got := resp.Header.Get(k); got != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestTrustedProxyXFF(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, "server:\n  trusted_proxies: [127.0.0.0/8]\n"))
	req, _ := http.NewRequest("GET", g.URL("example.org", "/"), nil)
	req.Header.Set("X-Forwarded-For", "198.51.100.7, 127.0.0.5")
	req.Header.Set("X-Forwarded-Proto", "https")
	resp, err := g.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got, want := resp.Header.Get("X-Seen-X-Forwarded-For"), "198.51.100.7, 127.0.0.5, 127.0.0.1"; got != want {
		t.Errorf("X-Forwarded-For %q, want %q", got, want)
	}
	if got, want := resp.Header.Get("X-Seen-X-Real-Ip"), "198.51.100.7"; got != want {
		t.Errorf("X-Real-IP %q, want %q", got, want)
	}
}

func TestUnknownHost404(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, ""))
	c := g.Client()
	c.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true // the fallback cert names no unknown host
	for _, u := range []string{g.HTTPURL("unknown.example", "/"), g.URL("unknown.example", "/x"), g.HTTPURL("apps.example.org", "/")} {
		resp, err := c.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || string(body) != "404 Not Found\n" {
			t.Errorf("%s: %d %q, want a bare 404", u, resp.StatusCode, body)
		}
	}
	// A wildcard host matches one label.
	resp, err := g.Client().Get(g.URL("a.apps.example.org", "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("wildcard host: status %d", resp.StatusCode)
	}
}

func TestTLSVerifiedAndHTTP2(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, ""))
	conn, err := tls.Dial("tcp", g.HTTPS, &tls.Config{ServerName: "example.org", RootCAs: g.Roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatalf("TLS verified against the local root: %v", err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Errorf("got version %x ALPN %q, want TLS 1.3 and h2", st.Version, st.NegotiatedProtocol)
	}
	if st.PeerCertificates[0].Subject.CommonName != "example.org" {
		t.Errorf("leaf CN %q", st.PeerCertificates[0].Subject.CommonName)
	}
	resp, err := g.Client().Get(g.URL("example.org", "/"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Errorf("proto %s, want HTTP/2", resp.Proto)
	}
	// TLS 1.1 is refused.
	if c, err := tls.Dial("tcp", g.HTTPS, &tls.Config{ServerName: "example.org", RootCAs: g.Roots, MaxVersion: tls.VersionTLS11}); err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
}

func TestUpstreamDown502AndTimeout504(t *testing.T) {
	// A port that was just free: nothing listens there.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	g := gatetest.Start(t, fmt.Sprintf(`
sites:
  - hosts: [example.org]
    routes:
      - {path: /dead, proxy: %s}
      - path: /slow
        proxy: {to: %s, header_timeout: 200ms}
`, dead, slow.URL))
	for _, tc := range []struct {
		path string
		want int
		log  string
	}{
		{"/dead", 502, "refused the connection"},
		{"/slow", 504, "did not answer in time"},
	} {
		resp, err := g.Client().Get(g.URL("example.org", tc.path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.path, resp.StatusCode, tc.want)
		}
		if !strings.Contains(g.Logs.String(), tc.log) {
			t.Errorf("%s: log lacks %q:\n%s", tc.path, tc.log, g.Logs)
		}
	}
	if !strings.Contains(g.Logs.String(), `"upstream":"`+dead) {
		t.Errorf("the 502 log line does not name the upstream %s", dead)
	}
}

func TestStreamingNotBuffered(t *testing.T) {
	next := make(chan struct{})
	sse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "data: first\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-next:
		case <-time.After(5 * time.Second):
		}
		io.WriteString(w, "data: second\n\n")
	}))
	defer sse.Close()
	g := gatetest.Start(t, proxyConfig(sse.URL, ""))
	resp, err := g.Client().Get(g.URL("example.org", "/events"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "data: first\n" {
		t.Fatalf("first event %q, %v: the stream was buffered", line, err)
	}
	close(next)
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: second") {
		t.Errorf("second event missing: %q", rest)
	}
}

func TestRequestBodyStreamsAndMaxBody(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	}))
	defer backend.Close()
	g := gatetest.Start(t, fmt.Sprintf(`
sites:
  - hosts: [example.org]
    routes:
      - {path: /, proxy: %s}
      - {path: /small, proxy: %s, max_body: 1KB}
`, backend.URL, backend.URL))
	c := g.Client()
	resp, err := c.Post(g.URL("example.org", "/upload"), "application/octet-stream", strings.NewReader(strings.Repeat("x", 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "1048576" {
		t.Errorf("backend got %s bytes", b)
	}
	resp, err = c.Post(g.URL("example.org", "/small"), "text/plain", strings.NewReader(strings.Repeat("x", 2048)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("over max_body: status %d, want 413", resp.StatusCode)
	}
}

func TestHeaderLimits431(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, "server:\n  max_header_bytes: 8KB\n"))
	conn, err := net.Dial("tcp", g.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: example.org\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 16<<10))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("status %d, want 431", resp.StatusCode)
	}
}

func TestSlowClientCannotPin(t *testing.T) {
	g := gatetest.Start(t, proxyConfig(echoBackend(t).URL, "server:\n  read_header_timeout: 300ms\n"))
	conn, err := net.Dial("tcp", g.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET / HTTP/1.1\r\nHost: exa") // and then nothing
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("the server did not close a stalled client: %v", err)
	}
}

func TestRespondRedirectAndRoutePrecedence(t *testing.T) {
	g := gatetest.Start(t, `
sites:
  - hosts: [example.org]
    routes:
      - {path: /, respond: root}
      - {path: /api, respond: api}
      - {path: /api/v2/, respond: v2}
      - {path: /api/v2/status, exact: true, respond: {body: exact, status: 201}}
      - {regex: '\.php$', respond: {body: php, status: 403}}
      - {path: /static, final: true, respond: static}
      - {path: /old, redirect: {to: "https://new.example.org{uri}", status: 301}}
`)
	c := g.Client()
	for _, tc := range []struct {
		path, body string
		status     int
	}{
		{"/", "root", 200},
		{"/apiary", "root", 200},
		{"/api", "api", 200},
		{"/api/x", "api", 200},
		{"/api/v2/x", "v2", 200},
		{"/api/v2/status", "exact", 201},
		{"/api/index.php", "php", 403},
		{"/static/x.php", "static", 200},
		{"/static/../api/x", "api", 200},
		{"//api//x", "api", 200},
	} {
		resp, err := c.Get(g.URL("example.org", "/") + strings.TrimPrefix(tc.path, "/"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != tc.body || resp.StatusCode != tc.status {
			t.Errorf("%s: %d %q, want %d %q", tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
	}
	resp, err := c.Get(g.URL("example.org", "/old/page?a=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || resp.Header.Get("Location") != "https://new.example.org/old/page?a=1" {
		t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		time.Sleep(500 * time.Millisecond)
		io.WriteString(w, "finished")
	}))
	defer backend.Close()
	g := gatetest.Start(t, proxyConfig(backend.URL, ""))
	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := g.Client().Get(g.URL("example.org", "/"))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	r := <-done
	if r.err != nil || r.body != "finished" {
		t.Fatalf("in-flight request: %q, %v", r.body, r.err)
	}
	if _, err := net.DialTimeout("tcp", g.HTTPS, time.Second); err == nil {
		t.Error("still accepting after shutdown")
	}
}

func TestAccessLog(t *testing.T) {
	backend := echoBackend(t)
	g := gatetest.Start(t, proxyConfig(backend.URL, ""))
	resp, err := g.Client().Get(g.URL("example.org", "/logged?secret=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	logs := g.Logs.String()
	for _, want := range []string{`"msg":"request"`, `"client":"127.0.0.1"`, `"method":"GET"`, `"path":"/logged"`, `"status":200`, `"route":"/"`, `"upstream":"` + backend.URL, `"site":"example.org"`, `"bytes":22`} {
		if !strings.Contains(logs, want) {
			t.Errorf("access log lacks %s:\n%s", want, logs)
		}
	}
}

// Shutdown closes the instance's idle upstream connections, whichever
// client opened them: the backend sees every connection end.
func TestShutdownClosesIdleUpstreamConnections(t *testing.T) {
	var open atomic.Int32
	backend := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	}))
	backend.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	backend.Start()
	t.Cleanup(backend.Close)
	g := gatetest.Start(t, proxyConfig(backend.URL, ""))
	for _, c := range []*http.Client{g.Client(), g.ClientHTTP1()} { // HTTP/2 (net/http), HTTP/1.1 (the loops)
		for _, body := range []io.Reader{nil, strings.NewReader("upload")} {
			req, _ := http.NewRequest("POST", g.URL("example.org", "/"), body)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	if open.Load() == 0 {
		t.Fatal("no upstream connection is open")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for open.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := open.Load(); n != 0 {
		t.Errorf("%d upstream connections still open after shutdown", n)
	}
}

// TestAccessLogOffForRoute: a route with access_log: false writes no
// access-log line, on the event loops (proxy, static) and on the full
// server (respond) alike, while its requests still count in the metrics.
func TestAccessLogOffForRoute(t *testing.T) {
	backend := echoBackend(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644)
	g := gatetest.Start(t, `
admin: {listen: 127.0.0.1:0, token: tok}
sites:
  - hosts: [example.org]
    tls: off
    routes:
      - {path: /healthz, access_log: false, proxy: "`+backend.URL+`"}
      - {path: /files, access_log: false, strip_prefix: true, static: "`+dir+`"}
      - {path: /ping, access_log: false, respond: pong}
      - {path: /, proxy: "`+backend.URL+`"}
`)
	onLoops := func() float64 {
		return metricSum(scrapeMetrics(t, g, "tok"), "gatehouse_http_loop_requests_total", nil)
	}
	for i, path := range []string{"/healthz", "/files/a.txt", "/ping", "/logged"} {
		before := onLoops()
		resp, err := g.ClientHTTP1().Get(g.HTTPURL("example.org", path))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %s", path, resp.Status)
		}
		if i < 2 && onLoops() != before+1 {
			t.Errorf("%s was not served on the event loops", path)
		}
	}
	m := scrapeMetrics(t, g, "tok")
	for _, route := range []string{"/healthz", "/files", "/ping", "/"} {
		if got := metricSum(m, "gatehouse_http_requests_total", map[string]string{"site": "example.org", "route": route}); got != 1 {
			t.Errorf("requests_total for %s = %v, want 1", route, got)
		}
	}
	logs := g.Logs.String()
	if !strings.Contains(logs, `"path":"/logged"`) {
		t.Errorf("the logged route has no line:\n%s", logs)
	}
	for _, path := range []string{"/healthz", "/files/a.txt", "/ping"} {
		if strings.Contains(logs, `"path":"`+path+`"`) {
			t.Errorf("%s has an access-log line despite access_log: false:\n%s", path, logs)
		}
	}
}
