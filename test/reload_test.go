package test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"gatehouse/internal/config"
	"gatehouse/internal/gatetest"
)

// reloadConfig is one of two configs the reload test alternates: each sends
// / to its own backend, has a route only it knows, its own server settings
// (which puts a new server on the same socket) and its own HTTP address.
func reloadConfig(t *testing.T, name, backend, httpAddr string, idle string) *config.Config {
	t.Helper()
	src := fmt.Sprintf(`
listen:
  http: [%q]
  https: ["127.0.0.1:0"]
server:
  idle_timeout: %s
sites:
  - hosts: [example.org]
    routes:
      - {path: /, proxy: %s}
      - {path: /only-%s, respond: %s}
`, httpAddr, idle, backend, name, name)
	cfg, err := config.Parse(name+".yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func namedBackend(t *testing.T, name string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Millisecond) // keep requests in flight across reloads
		io.WriteString(w, name)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestReloadUnderLoad reloads 20 times, alternating two configs, while 16
// clients (HTTP/1.1 and HTTP/2, keep-alive) send requests: no request fails,
// every answer comes from a config that was active while it ran, and a bad
// config pushed mid-load is refused without a failure.
func TestReloadUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	cfgA := reloadConfig(t, "A", namedBackend(t, "A"), "127.0.0.1:0", "60s")
	cfgB := reloadConfig(t, "B", namedBackend(t, "B"), "127.0.0.2:0", "61s")
	g := gatetest.StartConfig(t, cfgA)

	// The timeline of which config was active: active[i] holds from
	// switched[i] on.
	var tlMu sync.Mutex
	type span struct {
		name       string
		start, end time.Time // end: when the next reload began
	}
	spans := []span{{name: "A", start: time.Now()}}

	type result struct {
		body       string
		err        error
		start, end time.Time
	}
	var (
		results []result
		resMu   sync.Mutex
		stop    atomic.Bool
		wg      sync.WaitGroup
	)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := g.Client()
			if i%2 == 1 {
				c = g.ClientHTTP1()
			}
			deadline := time.Now().Add(15 * time.Second)
			for n := 0; !stop.Load() && n < 100000 && time.Now().Before(deadline); n++ {
				r := result{start: time.Now()}
				resp, err := c.Get(g.URL("example.org", "/"))
				if err == nil {
					var b []byte
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
					r.body = string(b)
					if resp.StatusCode != 200 {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					err = fmt.Errorf("client %d (HTTP/2 %v): %w", i, i%2 == 0, err)
				}
				r.err, r.end = err, time.Now()
				resMu.Lock()
				results = append(results, r)
				resMu.Unlock()
			}
		}()
	}

	for i := range 20 {
		time.Sleep(150 * time.Millisecond)
		next, name := cfgB, "B"
		if i%2 == 1 {
			next, name = cfgA, "A"
		}
		if i == 10 {
			bad := *next
			bad.Listen.HTTP = []string{"256.0.0.1:80"} // an address nobody can take
			if err := g.Reload(&bad); err == nil {
				t.Error("a config with an unusable listener was accepted")
			}
		}
		tlMu.Lock()
		spans[len(spans)-1].end = time.Now()
		tlMu.Unlock()
		if err := g.Reload(next); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		tlMu.Lock()
		spans = append(spans, span{name: name, start: time.Now()})
		tlMu.Unlock()
	}
	time.Sleep(150 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	spans[len(spans)-1].end = time.Now().Add(time.Hour)

	if len(results) < 200 {
		t.Fatalf("only %d requests ran", len(results))
	}
	failed, mismatched := 0, 0
	for _, r := range results {
		if r.err != nil {
			failed++
			if failed <= 5 {
				t.Errorf("request failed: %v", r.err)
			}
			continue
		}
		// A request that ran wholly inside one config's span must be
		// answered by that config.
		for _, s := range spans {
			if !r.start.Before(s.start) && !r.end.After(s.end) && r.body != s.name {
				mismatched++
			}
		}
	}
	if failed > 0 {
		for _, line := range strings.Split(g.Logs.String(), "\n") {
			if strings.Contains(line, "handshake") || strings.Contains(line, "error") {
				t.Log(line)
			}
		}
	}
	if failed > 0 || mismatched > 0 {
		t.Fatalf("%d of %d requests failed, %d answered by the wrong config", failed, len(results), mismatched)
	}
	t.Logf("%d requests across 20 reloads, none failed", len(results))

	// The final config (A, after 20 reloads) is what serves now, on its
	// own HTTP address; B's address is closed.
	resp, err := g.Client().Get(g.URL("example.org", "/only-A"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "A" {
		t.Errorf("/only-A after reloads: %q", b)
	}
	if addrs := g.HTTPAddrs(); len(addrs) != 1 || !strings.HasPrefix(addrs[0].String(), "127.0.0.1:") {
		t.Errorf("HTTP listeners after reloads: %v", addrs)
	}
}

// TestReloadKeepsWebSocketOpen: a WebSocket whose route survives a reload
// stays open across it, even when the reload puts a new server on the socket.
func TestReloadKeepsWebSocketOpen(t *testing.T) {
	backend := wsEchoBackend(t).URL
	g := gatetest.Start(t, proxyConfig(backend, ""))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "wss://example.org/ws", &websocket.DialOptions{HTTPClient: g.ClientHTTP1()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	wsRoundTrip(ctx, t, c, "before")
	for i, extra := range []string{"", "server:\n  idle_timeout: 61s\n"} {
		next, err := config.Parse("next.yaml", []byte(proxyConfig(backend, extra)))
		if err != nil {
			t.Fatal(err)
		}
		next.Listen = g.Config.Listen
		if err := g.Reload(next); err != nil {
			t.Fatal(err)
		}
		wsRoundTrip(ctx, t, c, fmt.Sprintf("after reload %d", i))
	}
}
