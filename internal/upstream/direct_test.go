package upstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gatehouse/internal/testserve"
)

// backend is an httptest server that counts the connections it accepted.
func backend(t *testing.T, h http.HandlerFunc) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var conns atomic.Int32
	s := httptest.NewUnstartedServer(h)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s, &conns
}

func pool(t *testing.T, url string, o Options) *Pool {
	t.Helper()
	if o.DialTimeout == 0 {
		o.DialTimeout = time.Second
	}
	o.MaxIdle = 8
	p, err := New([]string{url}, o)
	if err != nil {
		t.Fatal(err)
	}
	if p.Hosts[0].direct == nil {
		t.Fatal("a plain http:// host has no direct client")
	}
	return p
}

// get sends a bodiless request through p and returns the body read to its
// end.
func get(t *testing.T, p *Pool, method, path string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, "http://site.test"+path, nil)
	req.RequestURI = ""
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("%s %s: body: %v", method, path, err)
	}
	return resp, string(b)
}

func TestDirectReusesConnections(t *testing.T) {
	s, conns := backend(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/chunked":
			w.Header().Set("Trailer", "X-Sum")
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush()
			w.Write([]byte("part two"))
			w.Header().Set("X-Sum", "42")
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
		default:
			io.WriteString(w, "hello "+r.Method+" "+r.Host)
		}
	})
	p := pool(t, s.URL, Options{})
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/", "hello GET site.test"},
		{"HEAD", "/", ""},
		{"GET", "/not-modified", ""},
		{"GET", "/chunked", "part one, part two"},
		{"DELETE", "/", "hello DELETE site.test"},
		{"GET", "/", "hello GET site.test"},
	} {
		resp, body := get(t, p, tc.method, tc.path)
		if body != tc.body {
			t.Errorf("%s %s: body %q, want %q", tc.method, tc.path, body, tc.body)
		}
		if tc.path == "/chunked" && resp.Trailer.Get("X-Sum") != "42" {
			t.Errorf("trailer %v", resp.Trailer)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections for six requests in a row, want 1", n)
	}
}

func TestDirectClosesWhatCannotBeReused(t *testing.T) {
	s, conns := backend(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/close" {
			w.Header().Set("Connection", "close")
		}
		io.WriteString(w, strings.Repeat("x", 64<<10))
	})
	p := pool(t, s.URL, Options{})
	get(t, p, "GET", "/close")
	get(t, p, "GET", "/")
	// A body closed before its end leaves the rest on the connection.
	req := httptest.NewRequest("GET", "http://site.test/", nil)
	req.RequestURI = ""
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Read(make([]byte, 100))
	resp.Body.Close()
	get(t, p, "GET", "/")
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections, want 3: one closed by the upstream, one left mid-body, one reused", n)
	}
}

// rawBackend serves each connection with serve, on a listener of its own.
func rawBackend(t *testing.T, serve func(c net.Conn, br *bufio.Reader, n int)) string {
	t.Helper()
	return "http://" + testserve.Listen(t, func(c net.Conn, n int) {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		serve(c, bufio.NewReader(c), n)
	})
}

const okAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

// An idle connection the upstream closed, or wrote to unasked, is not
// used for the next request.
func TestDirectSkipsSpoiledIdleConnections(t *testing.T) {
	for _, after := range []string{"", "HTTP/1.1 408 Request Timeout\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"} {
		url := rawBackend(t, func(c net.Conn, br *bufio.Reader, n int) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, okAnswer)
			if n == 0 {
				time.Sleep(50 * time.Millisecond)
				if after != "" {
					io.WriteString(c, after)
					time.Sleep(time.Second) // left waiting, unread
				}
				return // closed
			}
		})
		p := pool(t, url, Options{})
		get(t, p, "GET", "/")
		time.Sleep(200 * time.Millisecond)
		req := httptest.NewRequest("POST", "http://site.test/", nil) // not repeatable: no retry hides it
		req.RequestURI = ""
		resp, err := p.RoundTrip(req)
		if err != nil {
			t.Errorf("after %q: %v", after, err)
			continue
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("after %q: %d %q", after, resp.StatusCode, body)
		}
	}
}

// An upstream that closes a pooled connection as the request arrives: a
// GET goes again on a new connection, a bodiless POST does not (it may
// have been acted on).
func TestDirectRetriesOnlyRepeatableRequests(t *testing.T) {
	url := rawBackend(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, okAnswer)
		if n == 0 {
			http.ReadRequest(br) // read the second request, and close unanswered
		}
	})
	p := pool(t, url, Options{})
	get(t, p, "GET", "/")
	if _, body := get(t, p, "GET", "/"); body != "ok" {
		t.Errorf("retried GET: %q", body)
	}

	url = rawBackend(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, okAnswer)
		if n == 0 {
			http.ReadRequest(br)
		}
	})
	p = pool(t, url, Options{})
	get(t, p, "GET", "/")
	req := httptest.NewRequest("POST", "http://site.test/", nil)
	req.RequestURI = ""
	if _, err := p.RoundTrip(req); !errors.Is(err, errNoAnswer) {
		t.Errorf("POST on a connection closed unanswered: %v, want %v", err, errNoAnswer)
	}
}

func TestDirectEarlyHints(t *testing.T) {
	s, _ := backend(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "page")
	})
	p := pool(t, s.URL, Options{})
	var hints []string
	req := httptest.NewRequest("GET", "http://site.test/", nil)
	req.RequestURI = ""
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			hints = append(hints, h.Get("Link"))
			return nil
		},
	}))
	resp, err := p.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "page" || len(hints) != 1 || hints[0] != "</app.css>; rel=preload" {
		t.Errorf("%d %q, hints %q", resp.StatusCode, b, hints)
	}
}

func TestDirectTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	s, _ := backend(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	defer close(release)

	p := pool(t, s.URL, Options{HeaderTimeout: 100 * time.Millisecond})
	req := httptest.NewRequest("GET", "http://site.test/", nil)
	req.RequestURI = ""
	start := time.Now()
	_, err := p.RoundTrip(req)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || time.Since(start) > 3*time.Second {
		t.Errorf("header timeout: %v after %v", err, time.Since(start))
	}

	p = pool(t, s.URL, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	req = httptest.NewRequestWithContext(ctx, "GET", "http://site.test/", nil)
	req.RequestURI = ""
	start = time.Now()
	if _, err := p.RoundTrip(req); !errors.Is(err, context.Canceled) || time.Since(start) > 3*time.Second {
		t.Errorf("cancelled: %v after %v", err, time.Since(start))
	}
}

func TestDirectOnlyForBodilessRequests(t *testing.T) {
	for _, tc := range []struct {
		req  *http.Request
		want bool
	}{
		{httptest.NewRequest("GET", "/", nil), true},
		{httptest.NewRequest("POST", "/", strings.NewReader("x")), false},
		{func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Header.Set("Upgrade", "websocket")
			return r
		}(), false},
		{func() *http.Request {
			r := httptest.NewRequest("GET", "/", nil)
			r.Body = http.NoBody
			return r
		}(), true},
	} {
		if got := directable(tc.req); got != tc.want {
			t.Errorf("%s %v: directable %v", tc.req.Method, tc.req.Header, got)
		}
	}
}

// cancelOnWrite cancels the request once the request has gone out, and
// gives the cancel time to act before the head is awaited. It is not a
// socket, so sockio serves it with its own Read and Write.
type cancelOnWrite struct {
	net.Conn
	cancel func()
}

func (c *cancelOnWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.cancel()
	time.Sleep(50 * time.Millisecond)
	return n, err
}

// A cancel that lands before the header timeout is set is not undone by
// it: the exchange ends, and no answer is returned.
func TestDirectCancelOutlivesHeaderDeadline(t *testing.T) {
	url := rawBackend(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello")
		time.Sleep(3 * time.Second) // the rest never comes
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var nd net.Dialer
	d := newDirect(func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &cancelOnWrite{Conn: c, cancel: cancel}, nil
	}, Options{HeaderTimeout: 10 * time.Second})
	req := httptest.NewRequestWithContext(ctx, "GET", url+"/", nil)
	req.URL.Scheme, req.URL.Host, req.RequestURI = "http", strings.TrimPrefix(url, "http://"), ""
	start := time.Now()
	resp, err := d.roundTrip(req)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
	}
	if !errors.Is(err, context.Canceled) || time.Since(start) > 2*time.Second {
		t.Errorf("cancelled request: %v after %v", err, time.Since(start))
	}
}

// A client that leaves while the upstream's name is being looked up marks
// no host down, on either client.
func TestCancelledDialBlamesNoHost(t *testing.T) {
	stall := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	}}
	for _, body := range []bool{false, true} { // false: direct, true: net/http's Transport
		p, err := New([]string{"http://one.test:80", "http://two.test:80"},
			Options{Policy: "first", DialTimeout: 5 * time.Second, Resolver: stall})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(100*time.Millisecond, cancel)
		var req *http.Request
		if body {
			req = httptest.NewRequestWithContext(ctx, "PUT", "http://site.test/", strings.NewReader("x"))
		} else {
			req = httptest.NewRequestWithContext(ctx, "GET", "http://site.test/", nil)
		}
		req.RequestURI = ""
		if _, err := p.RoundTrip(req); !errors.Is(err, context.Canceled) {
			t.Errorf("body %v: %v, want context.Canceled", body, err)
		}
		for _, st := range p.Status() {
			if st.Down {
				t.Errorf("body %v: a client that left marked %s down", body, st.URL)
			}
		}
	}
}

// An answer head larger than MaxHeadBytes fails the request, on both
// clients.
func TestAnswerHeadBounded(t *testing.T) {
	url := rawBackend(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", MaxHeadBytes)+"\r\nContent-Length: 2\r\n\r\nok")
	})
	p := pool(t, url, Options{})
	for _, body := range []bool{false, true} {
		var req *http.Request
		if body {
			req = httptest.NewRequest("PUT", "http://site.test/", strings.NewReader("x"))
		} else {
			req = httptest.NewRequest("GET", "http://site.test/", nil)
		}
		req.RequestURI = ""
		if resp, err := p.RoundTrip(req); err == nil {
			t.Errorf("body %v: a %d-byte header field was taken", body, len(resp.Header.Get("X-Big")))
			resp.Body.Close()
		}
	}
	// One just under the bound passes.
	url = rawBackend(t, func(c net.Conn, br *bufio.Reader, n int) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", MaxHeadBytes-200)+"\r\nContent-Length: 2\r\n\r\nok")
	})
	if _, body := get(t, pool(t, url, Options{}), "GET", "/"); body != "ok" {
		t.Errorf("body %q", body)
	}
}
