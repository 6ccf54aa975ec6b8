package test

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"gatehouse/internal/config"
	"gatehouse/internal/gatetest"
)

// The event loops answer plain proxy requests over HTTP and HTTPS and hand
// HTTP/2 to net/http; disable_event_loops puts every request on net/http
// without a request failing.
func TestEventLoopsAndTheirSwitch(t *testing.T) {
	backend := echoBackend(t).URL
	cfg := func(disable bool) string {
		return fmt.Sprintf(`
admin: {listen: 127.0.0.1:0, token: tok}
server: {disable_event_loops: %v}
sites:
  - hosts: [plain.test]
    tls: off
    routes: [{path: /, proxy: %q}]
  - hosts: [secure.test]
    routes: [{path: /, proxy: %q}]
`, disable, backend, backend)
	}
	g := gatetest.Start(t, cfg(false))
	get := func(c *http.Client, url string, proto int) {
		t.Helper()
		resp, err := c.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != proto {
			t.Fatalf("%s: %s %s", url, resp.Status, resp.Proto)
		}
	}
	requests := func() {
		for range 3 {
			get(g.ClientHTTP1(), g.HTTPURL("plain.test", "/"), 1)
			get(g.ClientHTTP1(), g.URL("secure.test", "/"), 1)
		}
		get(g.Client(), g.URL("secure.test", "/"), 2)
	}
	requests()
	m := scrapeMetrics(t, g, "tok")
	if got := metricSum(m, "gatehouse_http_loop_requests_total", map[string]string{"listener": "http *"}); got != 3 {
		t.Errorf("HTTP requests on the loops = %v, want 3", got)
	}
	if got := metricSum(m, "gatehouse_http_loop_requests_total", map[string]string{"listener": "https *"}); got != 3 {
		t.Errorf("HTTPS requests on the loops = %v, want 3", got)
	}
	if got := metricSum(m, "gatehouse_http_handoffs_total", map[string]string{"listener": "https *"}); got < 1 {
		t.Errorf("HTTP/2 connections handed to net/http = %v, want at least 1", got)
	}

	off, err := config.Parse("off.yaml", []byte(cfg(true)))
	if err != nil {
		t.Fatal(err)
	}
	off.Listen, off.Admin.Listen = g.Config.Listen, g.Config.Admin.Listen // the same sockets
	if err := g.Reload(off); err != nil {
		t.Fatal(err)
	}
	requests()
	if got := metricSum(scrapeMetrics(t, g, "tok"), "gatehouse_http_loop_requests_total", nil); got != 6 {
		t.Errorf("requests on the loops after they were turned off = %v, want still 6", got)
	}
}
