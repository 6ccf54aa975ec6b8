package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/accesslog"
	"gatehouse/internal/clientip"
	"gatehouse/internal/config"
	"gatehouse/internal/journey"
	"gatehouse/internal/placeholder"
	"gatehouse/internal/proxy"
	"gatehouse/internal/route"
	"gatehouse/internal/static"
	"gatehouse/internal/syncbuf"
	"gatehouse/internal/testserve"
	"gatehouse/internal/upstream"
)

// rig is an engine in front of a full server, proxying app.test to a
// backend, as the instance wires them.
type rig struct {
	eng           *Engine
	pool          *upstream.Pool
	addr          string
	backend       *httptest.Server
	mu            sync.Mutex
	recs          []journey.Record
	handshakeErrs []error
	logs          *syncbuf.Buffer
}

type rigOptions struct {
	tls           *tls.Config // terminate TLS
	upstreams     []string    // default: the backend
	headerTimeout time.Duration
	readHeader    time.Duration
	idle          time.Duration
	resolver      *net.Resolver
	proxy         proxy.Options // the proxy route's options (header edits)
	full          bool          // every request to the full server
}

func newRig(t *testing.T, backend http.Handler, o rigOptions) *rig {
	t.Helper()
	r := &rig{logs: &syncbuf.Buffer{}}
	r.backend = httptest.NewServer(backend)
	t.Cleanup(r.backend.Close)
	log := slog.New(slog.NewTextHandler(r.logs, nil))
	ups := o.upstreams
	if ups == nil {
		ups = []string{r.backend.URL}
	}
	pool, err := upstream.New(ups, upstream.Options{DialTimeout: time.Second, HeaderTimeout: o.headerTimeout, IdleTimeout: time.Minute, MaxIdle: 8, Resolver: o.resolver})
	if err != nil {
		t.Fatal(err)
	}
	r.pool = pool
	ips := clientip.New(nil)
	po := o.proxy
	po.ClientIP, po.Log = ips, log
	ph := proxy.New(pool, po)
	full := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("X-Served-By", "full")
		io.WriteString(w, "full server\n")
	})
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.css"), []byte("body { color: red }\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "a.css.gz"), []byte("pretend gzip"), 0o644)
	os.WriteFile(filepath.Join(dir, "big.bin"), bytes.Repeat([]byte("b"), 100<<10), 0o644)
	os.WriteFile(filepath.Join(dir, "huge.bin"), nil, 0o644)
	os.Truncate(filepath.Join(dir, "huge.bin"), 16<<20) // more than a socket buffer holds; sparse, so cheap
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	os.WriteFile(filepath.Join(dir, "sub", "index.html"), []byte("<p>sub</p>"), 0o644)
	files, err := static.New(config.Static{Root: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { files.Close() })
	table, err := route.New([]route.SiteSpec{
		{Hosts: []string{"app.test"}, Routes: []route.RouteSpec{
			{Path: "/", Kind: "proxy", Handler: ph},
			{Path: "/full", Kind: "respond", Handler: full},
			{Path: "/strip", StripPrefix: true, Kind: "proxy", Handler: ph},
			{Path: "/small", MaxBody: 10, Kind: "proxy", Handler: ph},
			{Path: "/files", StripPrefix: true, Kind: "static", Handler: files},
		}},
		{Hosts: []string{"secure.test"}, TLS: true, Routes: []route.RouteSpec{
			{Path: "/", Kind: "proxy", Handler: ph},
			{Path: "/full", Kind: "respond", Handler: full},
			{Path: "/files", StripPrefix: true, Kind: "static", Handler: files},
		}},
	}, route.Options{HTTPSPort: 8443})
	if err != nil {
		t.Fatal(err)
	}
	mw := &accesslog.Middleware{Next: table, ClientIP: ips, Observe: func(rec *journey.Record) {
		r.mu.Lock()
		r.recs = append(r.recs, *rec)
		r.mu.Unlock()
	}}
	gen := &Gen{Table: table, Finish: mw.Finish}
	if o.full {
		gen.Full = func() bool { return true }
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if o.readHeader == 0 {
		o.readHeader = 2 * time.Second
	}
	if o.idle == 0 {
		o.idle = 5 * time.Second
	}
	r.eng, err = New(ln.Addr(), Options{
		Gen: func() *Gen { return gen }, ReadHeaderTimeout: o.readHeader, IdleTimeout: o.idle, MaxHeaderBytes: 8 << 10, Log: log,
		TLS: o.tls,
		HandshakeFailed: func(remote net.Addr, err error) {
			r.mu.Lock()
			r.handshakeErrs = append(r.handshakeErrs, err)
			r.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mw, ReadHeaderTimeout: o.readHeader, MaxHeaderBytes: 4 << 10, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if o.tls != nil {
		srv.TLSConfig, srv.ConnContext, srv.Handler = o.tls, ConnContext, RestoreTLS(mw)
	}
	go r.eng.Serve(ln)
	go srv.Serve(r.eng.Fallback())
	r.addr = ln.Addr().String()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := r.eng.Shutdown(ctx); err != nil {
			t.Errorf("engine shutdown: %v", err)
		}
		srv.Shutdown(ctx)
	})
	return r
}

func (r *rig) records() []journey.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]journey.Record(nil), r.recs...)
}

// waitRecords waits for n records: a record is finished just after the
// response is written.
func (r *rig) waitRecords(t *testing.T, n int) []journey.Record {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		recs := r.records()
		if len(recs) >= n || time.Now().After(deadline) {
			if len(recs) != n {
				t.Fatalf("%d records, want %d: %+v", len(recs), n, recs)
			}
			return recs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// client is a raw connection that reads responses with net/http's parser,
// so every answer the loop writes is checked against it.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (r *rig) dial(t *testing.T) *client {
	t.Helper()
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func (c *client) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, s); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) read(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("reading response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("reading body: %v", err)
	}
	return resp, string(b)
}

func (c *client) roundTrip(req string) (*http.Response, string) {
	c.t.Helper()
	c.send(req)
	method, _, _ := strings.Cut(req, " ")
	return c.read(method)
}

// echo answers with what it received, as headers the test can read.
func echo(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := w.Header()
	h.Set("X-Method", r.Method)
	h.Set("X-URI", r.RequestURI)
	h.Set("X-Host", r.Host)
	h.Set("X-Got-XFF", r.Header.Get("X-Forwarded-For"))
	h.Set("X-Got-XFH", r.Header.Get("X-Forwarded-Host"))
	h.Set("X-Got-XFP", r.Header.Get("X-Forwarded-Proto"))
	h.Set("X-Got-Real-IP", r.Header.Get("X-Real-Ip"))
	h.Set("X-Got-Custom", r.Header.Get("X-Custom"))
	h.Set("X-Got-TE", r.Header.Get("Te"))
	h.Set("X-Got-Keep-Alive", r.Header.Get("Keep-Alive"))
	h.Set("X-Got-Forwarded", r.Header.Get("Forwarded"))
	h.Set("X-Got-Proxy-Auth", r.Header.Get("Proxy-Authorization"))
	h.Set("X-Body-Len", strconv.Itoa(len(body)))
	sum := sha256.Sum256(body)
	h.Set("X-Body-Sum", hex.EncodeToString(sum[:]))
	h.Set("Keep-Alive", "timeout=5") // hop-by-hop: never reaches the client
	io.WriteString(w, "hello from the backend\n")
}

func TestProxiesOnTheLoop(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	c := r.dial(t)
	for i := range 3 {
		resp, body := c.roundTrip("GET /a/b?x=1&y=%2F HTTP/1.1\r\nHost: app.test:8080\r\nX-Custom: v1\r\n" +
			"X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Host: evil\r\nX-Real-IP: 6.6.6.6\r\nForwarded: for=6.6.6.6\r\nKeep-Alive: 300\r\nConnection: keep-alive\r\n" +
			"Proxy-Authorization: Basic c2VjcmV0\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello from the backend\n" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		want := map[string]string{
			"X-Method": "GET", "X-Uri": "/a/b?x=1&y=%2F", "X-Host": "app.test:8080",
			"X-Got-Xff": "127.0.0.1", "X-Got-Xfh": "app.test:8080", "X-Got-Xfp": "http", "X-Got-Real-Ip": "127.0.0.1",
			"X-Got-Custom": "v1", "X-Got-Keep-Alive": "", "X-Got-Forwarded": "", "X-Got-Proxy-Auth": "",
			"Keep-Alive": "", "Content-Length": "23",
		}
		for k, v := range want {
			if got := resp.Header.Get(k); got != v {
				t.Errorf("request %d: %s = %q, want %q", i, k, got, v)
			}
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("no Date")
		}
	}
	if served, handed := r.eng.Counts(); served != 3 || handed != 0 {
		t.Fatalf("served %d, handed %d; want 3 on the loop", served, handed)
	}
	rec := r.waitRecords(t, 3)[0]
	if rec.Site != "app.test" || rec.Route != "/" || rec.Handler != "proxy" || rec.Status != 200 || rec.UpstreamStatus != 200 ||
		rec.Upstream != r.backend.URL || rec.Host != "app.test:8080" || rec.Path != "/a/b" || rec.Method != "GET" ||
		rec.Bytes != 23 || rec.Tries != 1 || rec.Client.String() != "127.0.0.1" || rec.Duration <= 0 {
		t.Fatalf("record: %+v", rec)
	}
}

func TestStripPrefixAndPipelining(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	c := r.dial(t)
	c.send("GET /strip/x HTTP/1.1\r\nHost: app.test\r\n\r\nGET /strip HTTP/1.1\r\nHost: app.test\r\n\r\nHEAD /q HTTP/1.1\r\nHost: app.test\r\n\r\n")
	for _, want := range []string{"/x", "/", "/q"} {
		method := "GET"
		if want == "/q" {
			method = "HEAD"
		}
		resp, body := c.read(method)
		if got := resp.Header.Get("X-Uri"); got != want {
			t.Errorf("upstream got %q, want %q", got, want)
		}
		if method == "HEAD" && body != "" {
			t.Errorf("HEAD answered with a body %q", body)
		}
	}
	if served, _ := r.eng.Counts(); served != 3 {
		t.Fatalf("served %d", served)
	}
}

func TestBodiesBothWays(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	r := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch req.URL.Path {
		case "/chunked":
			for i := range 50 {
				fmt.Fprintf(w, "line %d\n", i)
				w.(http.Flusher).Flush()
			}
			w.Header().Set("X-Trailer", "t") // too late: ignored
		case "/big":
			w.Write(big)
		case "/big-length":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			w.Write(big)
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
		default:
			echo(w, req)
		}
	}), rigOptions{})
	c := r.dial(t)
	resp, body := c.roundTrip("GET /chunked HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if len(resp.TransferEncoding) != 1 || !strings.HasPrefix(body, "line 0\n") || !strings.HasSuffix(body, "line 49\n") {
		t.Fatalf("chunked: %v %q", resp.TransferEncoding, body)
	}
	// The record counts the body, not its chunk framing, as net/http does.
	if recs := r.waitRecords(t, 1); recs[0].Bytes != int64(len(body)) {
		t.Fatalf("chunked body of %d bytes recorded as %d", len(body), recs[0].Bytes)
	}
	for _, p := range []string{"/big", "/big-length", "/big-length"} { // chunked; by length (spliced), twice on one pooled upstream connection
		resp, body = c.roundTrip("GET " + p + " HTTP/1.1\r\nHost: app.test\r\n\r\n")
		if body != string(big) {
			t.Fatalf("%s: %d bytes", p, len(body))
		}
	}
	resp, _ = c.roundTrip("GET /nocontent HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp.StatusCode != 204 {
		t.Fatal(resp.Status)
	}
	// A body larger than any buffer, sent while the backend reads it.
	c.send("POST /upload HTTP/1.1\r\nHost: app.test\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n")
	go c.c.Write(big)
	resp, _ = c.read("POST")
	sum := sha256.Sum256(big)
	if resp.Header.Get("X-Body-Len") != strconv.Itoa(len(big)) || resp.Header.Get("X-Body-Sum") != hex.EncodeToString(sum[:]) {
		t.Fatalf("upload: %s %s", resp.Header.Get("X-Body-Len"), resp.Header.Get("X-Body-Sum"))
	}
	// A small body in the same packet as the head, then another request.
	c.send("POST /form HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhelloGET /after HTTP/1.1\r\nHost: app.test\r\n\r\n")
	resp, _ = c.read("POST")
	if resp.Header.Get("X-Body-Len") != "5" {
		t.Fatalf("form body: %s", resp.Header.Get("X-Body-Len"))
	}
	resp, _ = c.read("GET")
	if resp.Header.Get("X-Uri") != "/after" {
		t.Fatalf("after: %q", resp.Header.Get("X-Uri"))
	}
	if served, handed := r.eng.Counts(); served != 8 || handed != 0 {
		t.Fatalf("served %d handed %d", served, handed)
	}
}

// A slow reader: the loop must not read the upstream faster than the
// client takes the body, and must deliver every byte.
func TestBackpressure(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 8<<20)
	r := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/length" {
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
		}
		w.Write(big)
	}), rigOptions{})
	c := r.dial(t)
	for _, p := range []string{"/chunked", "/length"} {
		c.send("GET " + p + " HTTP/1.1\r\nHost: app.test\r\n\r\n")
		time.Sleep(200 * time.Millisecond) // let the socket buffers fill
		resp, body := c.read("GET")
		if resp.StatusCode != 200 || body != string(big) {
			t.Fatalf("%s: %d, %d bytes", p, resp.StatusCode, len(body))
		}
	}
}

// An upstream that answers before it has read the whole body (a 413, a
// 401) is heard at once, and its answer reaches the client, which is still
// sending: the connection closes after the answer, reading and dropping
// the rest of the body so that no reset destroys the answer.
func TestEarlyAnswerDuringUpload(t *testing.T) {
	cfg, pool := selfSigned(t)
	backend := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/limit" {
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, "too large\n")
			return
		}
		echo(w, req)
	})
	big := bytes.Repeat([]byte("u"), 8<<20)
	for _, secure := range []bool{false, true} {
		o, host := rigOptions{}, "app.test"
		if secure {
			o.tls, host = cfg, "secure.test"
		}
		r := newRig(t, backend, o)
		t.Run(host+"/raw", func(t *testing.T) {
			var c *client
			if secure {
				c = r.dialTLS(t, pool, "http/1.1")
			} else {
				c = r.dial(t)
			}
			start := time.Now()
			c.send("POST /limit HTTP/1.1\r\nHost: " + host + "\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n")
			c.send(string(big[:64<<10]))
			// The client goes on sending while it waits for the answer.
			sent := make(chan error, 1)
			go func() { _, err := c.c.Write(big[64<<10:]); sent <- err }()
			resp, body := c.read("POST")
			if resp.StatusCode != 413 || body != "too large\n" || !resp.Close {
				t.Fatalf("%d %q close=%v", resp.StatusCode, body, resp.Close)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("the answer took %v", d)
			}
			// The rest of the body is taken and dropped, then the connection ends.
			if err := <-sent; err != nil {
				t.Fatalf("the rest of the body: %v", err)
			}
			if n, err := c.br.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Fatalf("after the answer: %d %v", n, err)
			}
		})
		t.Run(host+"/client", func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", r.addr)
			}}
			defer tr.CloseIdleConnections()
			scheme := "http"
			if secure {
				scheme = "https"
			}
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(scheme+"://"+host+"/limit", "application/octet-stream", bytes.NewReader(big))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 413 || string(body) != "too large\n" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			// An upload the backend reads whole still works after it.
			resp, err = (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Post(scheme+"://"+host+"/up", "application/octet-stream", bytes.NewReader(big))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.Header.Get("X-Body-Len") != strconv.Itoa(len(big)) {
				t.Fatalf("upload after: %s", resp.Header.Get("X-Body-Len"))
			}
		})
		recs := r.waitRecords(t, 3)
		if recs[0].Status != 413 || recs[1].Status != 413 || recs[2].Status != 200 {
			t.Fatalf("records: %+v", recs)
		}
		if served, handed := r.eng.Counts(); served != 3 || handed != 0 {
			t.Fatalf("served %d handed %d", served, handed)
		}
	}
}

func TestUpstreamCloseDelimited(t *testing.T) {
	up := rawUpstream(t, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		io.WriteString(c, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end")
	})
	r := newRig(t, http.NotFoundHandler(), rigOptions{upstreams: []string{up}})
	c := r.dial(t)
	start := time.Now()
	resp, body := c.roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if body != "until the end" || !resp.Close {
		t.Fatalf("%q close=%v", body, resp.Close)
	}
	// The upstream's close often arrives with its last bytes, in one
	// readiness edge: it must be noticed then, not at the idle timeout.
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the end of the body was noticed after %v", d)
	}
}

func TestUpstreamFailures(t *testing.T) {
	deadAddr := refusingAddr(t)
	r := newRig(t, http.NotFoundHandler(), rigOptions{upstreams: []string{"http://" + deadAddr}})
	c := r.dial(t)
	resp, body := c.roundTrip("GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp.StatusCode != 502 || body != "502 Bad Gateway\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if !strings.Contains(r.logs.String(), "upstream failed") || !strings.Contains(r.logs.String(), "refused") {
		t.Fatalf("log: %s", r.logs)
	}
	recs := r.waitRecords(t, 1)
	if recs[0].Status != 502 || recs[0].UpstreamErr == "" {
		t.Fatalf("records: %+v", recs)
	}

	slow := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		time.Sleep(time.Second)
	}), rigOptions{headerTimeout: 200 * time.Millisecond})
	c = slow.dial(t)
	resp, body = c.roundTrip("GET /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp.StatusCode != 504 || body != "504 Gateway Timeout\n" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	// The connection goes on.
	resp, _ = c.roundTrip("HEAD /x HTTP/1.1\r\nHost: app.test\r\n\r\n")
	if resp.StatusCode != 504 {
		t.Fatalf("%d", resp.StatusCode)
	}
}

// A pooled upstream connection the backend closed while idle is not a
// failure the client sees.
func TestStalePooledConnection(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	c := r.dial(t)
	for i := range 5 {
		resp, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
		r.backend.CloseClientConnections()
		if i%2 == 0 {
			time.Sleep(20 * time.Millisecond) // sometimes the close is seen first, sometimes not
		}
	}
}

// What the loop does not serve itself reaches the full server with every
// byte, on the same connection.
func TestHandedToTheFullServer(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	cases := []struct {
		req    string
		status int
		full   bool // answered by the full server's handler
	}{
		{"GET /full HTTP/1.1\r\nHost: app.test\r\n\r\n", 200, true},
		{"GET / HTTP/1.1\r\nHost: unknown.test\r\n\r\n", 404, false},
		{"GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n", 301, false},
		{"GET /%66ull HTTP/1.1\r\nHost: app.test\r\n\r\n", 200, true},
		{"GET /a/../full HTTP/1.1\r\nHost: app.test\r\n\r\n", 200, true},
		{"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n", 200, false},
		{"POST / HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", 200, false},
		{"POST /small HTTP/1.1\r\nHost: app.test\r\nContent-Length: 11\r\n\r\nhello world", 413, false},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nGatehouse-Trace: x\r\n\r\n", 200, false},
		{"GET / HTTP/1.1\r\nhost: app.test\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", 200, false},
		// Malformed: the full server's own errors.
		{"GET / HTTP/1.1\r\nHost: app.test\r\nX: a\r\n b\r\n\r\n", 200, false}, // obs-fold: net/http unfolds it
		{"GET / HTTP/1.1\r\nHost : app.test\r\n\r\n", 400, false},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, false},
		{"POST / HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 200, false}, // net/http drops the length
		{"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, false},
		{"GET / HTTP/1.1\r\n\r\n", 400, false},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nX: \x01\r\n\r\n", 400, false},
		{"GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431, false},
	}
	for i, tc := range cases {
		c := r.dial(t)
		method, _, _ := strings.Cut(tc.req, " ")
		resp, body := c.roundTrip(tc.req)
		if resp.StatusCode != tc.status {
			t.Errorf("case %d: status %d, want %d (%q)", i, resp.StatusCode, tc.status, body)
			continue
		}
		if full := resp.Header.Get("X-Served-By") == "full"; full != tc.full {
			t.Errorf("case %d: full server handler %v, want %v", i, full, tc.full)
		}
		if tc.status < 400 && !resp.Close && method != "POST" {
			// The connection stays with the full server.
			resp, _ = c.roundTrip("GET /full HTTP/1.1\r\nHost: app.test\r\n\r\n")
			if resp.Header.Get("X-Served-By") != "full" {
				t.Errorf("case %d: the next request was not served", i)
			}
		}
	}
	if served, handed := r.eng.Counts(); served != 0 || handed != int64(len(cases)) {
		t.Fatalf("served %d, handed %d, want 0 and %d", served, handed, len(cases))
	}
}

// A keep-alive connection moves to the full server at its first request
// the loop does not serve, after those it did.
func TestHandoffMidConnection(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	c := r.dial(t)
	c.send("GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /full HTTP/1.1\r\nHost: app.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n")
	r1, _ := c.read("GET")
	r2, _ := c.read("GET")
	r3, _ := c.read("GET")
	if r1.Header.Get("X-Uri") != "/1" || r2.Header.Get("X-Served-By") != "full" || r3.Header.Get("X-Uri") != "/2" {
		t.Fatalf("%v / %v / %v", r1.Header, r2.Header, r3.Header)
	}
	if served, handed := r.eng.Counts(); served != 1 || handed != 1 {
		t.Fatalf("served %d handed %d", served, handed)
	}
}

func TestTimeouts(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{readHeader: 200 * time.Millisecond, idle: 300 * time.Millisecond})
	// A head that never ends.
	c := r.dial(t)
	c.send("GET / HTTP/1.1\r\nHost: app.test\r\n")
	if _, err := c.br.ReadByte(); err == nil {
		t.Fatal("a partial head kept the connection open and got an answer")
	}
	// An idle keep-alive connection.
	c = r.dial(t)
	c.roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	start := time.Now()
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection: %v", err)
	}
	if d := time.Since(start); d < 250*time.Millisecond || d > 2*time.Second {
		t.Fatalf("closed after %v, want about 300ms", d)
	}
}

func TestClientLeavesMidResponse(t *testing.T) {
	release := make(chan struct{})
	r := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Write(bytes.Repeat([]byte("x"), 1<<10))
		w.(http.Flusher).Flush()
		<-release
	}), rigOptions{})
	c := r.dial(t)
	c.send("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatal(err)
	}
	c.c.Close()
	deadline := time.Now().Add(3 * time.Second)
	for len(r.records()) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	recs := r.waitRecords(t, 1)
	if recs[0].Status != 200 || recs[0].Bytes == 0 || recs[0].UpstreamErr != "client closed the connection" {
		t.Fatalf("records: %+v", recs)
	}
}

func TestShutdownFinishesInFlight(t *testing.T) {
	started := make(chan struct{})
	r := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/slow" {
			close(started)
			time.Sleep(300 * time.Millisecond)
		}
		io.WriteString(w, "done")
	}), rigOptions{})
	idle := r.dial(t)
	idle.roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
	busy := r.dial(t)
	busy.send("GET /slow HTTP/1.1\r\nHost: app.test\r\n\r\n")
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- r.eng.Shutdown(ctx) }()
	resp, body := busy.read("GET")
	if body != "done" || !resp.Close {
		t.Fatalf("%q close=%v", body, resp.Close)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := idle.br.ReadByte(); err != io.EOF {
		t.Fatalf("idle connection after shutdown: %v", err)
	}
}

// Connections that arrive while the engine stops are all ended: none is
// left queued to a loop that has gone, and none is left counted.
func TestStopWhileAccepting(t *testing.T) {
	cfg, pool := selfSigned(t)
	for round := range 6 {
		o := rigOptions{}
		if round%2 == 1 {
			o.tls = cfg
		}
		r := newRig(t, http.HandlerFunc(echo), o)
		var wg sync.WaitGroup
		hung := make(chan string, 64)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 500 {
					var c net.Conn
					var err error
					if o.tls != nil {
						c, err = tls.Dial("tcp", r.addr, &tls.Config{ServerName: "secure.test", RootCAs: pool, NextProtos: []string{"http/1.1"}})
					} else {
						c, err = net.Dial("tcp", r.addr)
					}
					if err != nil {
						return // the listener has closed
					}
					c.SetDeadline(time.Now().Add(3 * time.Second))
					io.WriteString(c, "GET / HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n")
					_, err = io.Copy(io.Discard, c)
					c.Close()
					if ne, ok := err.(net.Error); ok && ne.Timeout() {
						hung <- "a connection was never answered nor closed"
						return
					}
				}
			}()
		}
		time.Sleep(time.Duration(10+round*5) * time.Millisecond)
		if round < 3 {
			r.eng.Close()
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			if err := r.eng.Shutdown(ctx); err != nil {
				t.Errorf("round %d: shutdown: %v", round, err)
			}
			cancel()
		}
		wg.Wait()
		close(hung)
		for msg := range hung {
			t.Fatalf("round %d: %s", round, msg)
		}
		deadline := time.Now().Add(3 * time.Second)
		for r.eng.conns.Load() != 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if n := r.eng.conns.Load(); n != 0 {
			t.Fatalf("round %d: %d connections still counted", round, n)
		}
	}
}

// Many clients at once, each with several requests, some of them handed
// over: nothing is lost or mixed up.
func TestConcurrentClients(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			for j := range 20 {
				path := fmt.Sprintf("/c%d/r%d", i, j)
				if i%8 == 0 && j == 10 {
					path = "/full"
				}
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app.test\r\n\r\n", path)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				io.Copy(io.Discard, resp.Body)
				if path != "/full" && resp.Header.Get("X-Uri") != path {
					errs <- fmt.Errorf("%s answered for %s", resp.Header.Get("X-Uri"), path)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// Small static files are answered on the loop with the headers the full
// server gives; everything else about files is the full server's.
func TestStaticOnTheLoop(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	loop := r.dial(t)
	full := r.dial(t)
	full.roundTrip("GET /full HTTP/1.1\r\nHost: app.test\r\n\r\n") // now served by net/http
	for _, req := range []string{
		"GET /files/a.css HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"HEAD /files/a.css HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"GET /files/a.css HTTP/1.1\r\nHost: app.test\r\nAccept-Encoding: br, gzip\r\n\r\n",
	} {
		before, _ := r.eng.Counts()
		lr, lb := loop.roundTrip(req)
		if after, _ := r.eng.Counts(); after != before+1 {
			t.Fatalf("%q was not answered on the loop", req)
		}
		fr, fb := full.roundTrip(req)
		lr.Header.Del("Date")
		fr.Header.Del("Date")
		if lr.StatusCode != 200 || lb != fb || fmt.Sprint(lr.Header) != fmt.Sprint(fr.Header) {
			t.Errorf("%q:\nloop %d %v %q\nfull %d %v %q", req, lr.StatusCode, lr.Header, lb, fr.StatusCode, fr.Header, fb)
		}
	}
	// A file too large for memory goes out by sendfile, with the same headers.
	req := "GET /files/big.bin HTTP/1.1\r\nHost: app.test\r\n\r\n"
	before, _ := r.eng.Counts()
	lr, lb := loop.roundTrip(req)
	if after, _ := r.eng.Counts(); after != before+1 {
		t.Fatal("the large file was not sent from the loop")
	}
	fr, fb := full.roundTrip(req)
	lr.Header.Del("Date")
	fr.Header.Del("Date")
	if lr.StatusCode != 200 || len(lb) != 100<<10 || lb != fb || fmt.Sprint(lr.Header) != fmt.Sprint(fr.Header) {
		t.Errorf("large file:\nloop %d %v %d bytes\nfull %d %v %d bytes", lr.StatusCode, lr.Header, len(lb), fr.StatusCode, fr.Header, len(fb))
	}
	if resp, body := loop.roundTrip("HEAD /files/big.bin HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.ContentLength != 100<<10 || body != "" {
		t.Errorf("HEAD of the large file: %d %q", resp.ContentLength, body)
	}
	etag := func() string {
		resp, _ := loop.roundTrip("HEAD /files/a.css HTTP/1.1\r\nHost: app.test\r\n\r\n")
		return resp.Header.Get("Etag")
	}()
	for _, tc := range []struct {
		req    string
		status int
	}{
		{"GET /files/a.css HTTP/1.1\r\nHost: app.test\r\nIf-None-Match: " + etag + "\r\n\r\n", 304},
		{"GET /files/a.css HTTP/1.1\r\nHost: app.test\r\nRange: bytes=0-3\r\n\r\n", 206},
		{"GET /files/sub HTTP/1.1\r\nHost: app.test\r\n\r\n", 301},
		{"GET /files/sub/ HTTP/1.1\r\nHost: app.test\r\n\r\n", 200},
		{"GET /files/missing.css HTTP/1.1\r\nHost: app.test\r\n\r\n", 404},
		{"POST /files/a.css HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n", 405},
	} {
		c := r.dial(t)
		_, handedBefore := r.eng.Counts()
		resp, _ := c.roundTrip(tc.req)
		if _, handed := r.eng.Counts(); resp.StatusCode != tc.status || handed != handedBefore+1 {
			t.Errorf("%q: %d (handed %v), want %d from the full server", tc.req, resp.StatusCode, handed != handedBefore, tc.status)
		}
	}
}

// Garbage, cut-off heads and clients that vanish mid-exchange never stop
// a loop: afterwards it still answers.
func TestGarbageNeverStopsTheLoop(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{readHeader: 300 * time.Millisecond})
	valid := "POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: 10\r\n\r\n0123456789"
	rnd := func(i int) byte { return byte(i*7919 + i*i*31) }
	var wg sync.WaitGroup
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", r.addr)
			if err != nil {
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			b := []byte(valid)
			switch i % 4 {
			case 0: // random bytes
				for j := range b {
					b[j] = rnd(i + j)
				}
			case 1: // a valid head cut anywhere
				b = b[:i%len(b)]
			case 2: // one byte flipped
				b[i%len(b)] = rnd(i)
			case 3: // valid, but the client leaves before the answer
				c.Write(b)
				return
			}
			c.Write(b)
			io.Copy(io.Discard, c)
		}()
	}
	wg.Wait()
	c := r.dial(t)
	if resp, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("after the garbage: %d", resp.StatusCode)
	}
}

// An upstream named by a name is served on the loop once the name has
// resolved (until then, by the full server, which resolves as it dials).
// The name has two addresses and the first refuses connections, as
// localhost's ::1 does for a backend on 127.0.0.1: it is passed over for
// the next one, without a 502 and without marking the upstream down.
func TestUpstreamByName(t *testing.T) {
	r, upstream, first, second := rigByName(t)
	deadline := time.Now().Add(5 * time.Second)
	var firstOnLoop string // the path of the first request the loop took
	sent := 5              // the loop's five below, and the warm-up
	for i := 0; ; i++ {
		sent++
		c := r.dial(t) // a handed-over connection stays with the full server
		p := fmt.Sprintf("/warm%d", i)
		resp, body := c.roundTrip("GET " + p + " HTTP/1.1\r\nHost: app.test\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello from the backend\n" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if served, _ := r.eng.Counts(); served > 0 {
			firstOnLoop = p
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the name never resolved for the loop")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := r.dial(t)
	for i := range 5 {
		if resp, _ := c.roundTrip("GET /n HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.StatusCode != 200 {
			t.Fatalf("on the loop, request %d: %d", i, resp.StatusCode)
		}
	}
	if served, handed := r.eng.Counts(); served != 6 || handed < 1 {
		t.Fatalf("served %d handed %d", served, handed)
	}
	// Records of requests the full server answered may come in late:
	// they are told apart by path.
	recs := r.waitRecords(t, sent)
	for _, rec := range recs {
		switch {
		case rec.Status != 200 || rec.Upstream != upstream:
			t.Fatalf("record: %+v", rec)
		case rec.Path == firstOnLoop && rec.Tries != 2:
			t.Fatalf("the first request on the loop: %d tries, want 2 (%v refuses, %v answers)", rec.Tries, first, second)
		case rec.Path == "/n" && rec.Tries != 1:
			t.Fatalf("the refusing address is still tried first: %+v", rec)
		}
	}
	if strings.Contains(r.logs.String(), "upstream failed") {
		t.Fatalf("a refused address was logged as a failure: %s", r.logs)
	}
}

// rigByName is a rig proxying to http://backend.test:PORT, a name with two
// addresses served from a DNS server on loopback: the first (in the
// resolver's order) refuses, the second answers with echo.
func rigByName(t *testing.T) (r *rig, upstream string, first, second netip.Addr) {
	t.Helper()
	resolver := dnsOnLoopback(t, "127.0.0.1", "127.0.0.2")
	ips, err := resolver.LookupNetIP(context.Background(), "ip4", "backend.test")
	if err != nil || len(ips) != 2 {
		t.Fatalf("lookup: %v %v", ips, err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(ips[1].String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	backend := &httptest.Server{Listener: ln, Config: &http.Server{Handler: http.HandlerFunc(echo)}}
	backend.Start()
	t.Cleanup(backend.Close)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	upstream = "http://backend.test:" + port
	return newRig(t, http.NotFoundHandler(), rigOptions{upstreams: []string{upstream}, resolver: resolver}), upstream, ips[0], ips[1]
}

// dnsOnLoopback serves backend.test from a DNS server on a loopback port
// with the IPv4 addresses given and returns a resolver that asks only it.
func dnsOnLoopback(t *testing.T, addrs ...string) *net.Resolver {
	t.Helper()
	mux := dns.NewServeMux()
	mux.HandleFunc("backend.test.", func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if q.Question[0].Qtype == dns.TypeA {
			for _, a := range addrs {
				m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "backend.test.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 1}, A: net.ParseIP(a)})
			}
		}
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	resolver := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
	return resolver
}

// Header edits on the loop write what net/http's reverse proxy writes: the
// same request reaches the backend, the same response the client, whether
// the loop or the full server answers.
func TestHeaderEditsAsTheFullServer(t *testing.T) {
	edits := proxy.Options{
		Headers: proxy.HeaderOps{
			Set: []proxy.Header{
				{Name: "X-Tenant", Value: placeholder.MustCompile("{host}|{path}|{query}|{scheme}")},
				{Name: "X-Forwarded-Host", Value: placeholder.MustCompile("edited.example")},
				{Name: "X-Who", Value: placeholder.MustCompile("{client_ip} {method} {uri} {header.x-team}{header.host}")},
			},
			Add:    []proxy.Header{{Name: "X-Custom", Value: placeholder.MustCompile("added")}},
			Remove: []string{"Cookie", "X-Real-Ip"},
		},
		ResponseHeaders: proxy.HeaderOps{
			Set:    []proxy.Header{{Name: "Strict-Transport-Security", Value: placeholder.MustCompile("max-age=60")}, {Name: "Cache-Control", Value: placeholder.MustCompile("private, {method}")}},
			Add:    []proxy.Header{{Name: "X-Route", Value: placeholder.MustCompile("{route}")}},
			Remove: []string{"X-Backend-Secret", "Date"},
		},
	}
	backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/nct" {
			w.Header()["Content-Type"] = nil // an answer without a type
			io.WriteString(w, "<html><p>no type</p></html>")
			return
		}
		var names []string
		for k := range r.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		h := w.Header()
		h.Set("X-Backend-Secret", "s3cret")
		h.Set("Cache-Control", "public")
		h.Add("X-Custom", "from the backend")
		fmt.Fprintf(w, "%s %s host=%s\n", r.Method, r.RequestURI, r.Host)
		for _, k := range names {
			fmt.Fprintf(w, "%s: %q\n", k, r.Header[k])
		}
	})
	req := "GET /strip/a/b?x=1&y=2 HTTP/1.1\r\nHost: app.test\r\nCookie: c=1\r\nX-Team: blue\r\nX-Custom: from the client\r\nX-Real-IP: 6.6.6.6\r\nAccept: */*\r\n\r\n"
	answers := map[bool]string{}
	for _, full := range []bool{false, true} {
		r := newRig(t, backend, rigOptions{proxy: edits, full: full})
		c := r.dial(t)
		if resp, _ := c.roundTrip("GET /strip/nct HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.Header["Content-Type"] != nil {
			t.Errorf("full=%v: a type was added: %q", full, resp.Header["Content-Type"])
		}
		resp, body := c.roundTrip(req)
		if resp.StatusCode != 200 {
			t.Fatalf("full=%v: %d %s", full, resp.StatusCode, body)
		}
		if served, _ := r.eng.Counts(); (served == 2) == full {
			t.Fatalf("full=%v: served on the loop %d", full, served)
		}
		if resp.Header.Get("Date") == "" {
			t.Errorf("full=%v: no Date", full)
		}
		resp.Header.Del("Date")
		var names []string
		for k := range resp.Header {
			names = append(names, k)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, k := range names {
			fmt.Fprintf(&b, "%s: %q\n", k, resp.Header[k])
		}
		answers[full] = b.String() + "\n" + body
	}
	if answers[false] != answers[true] {
		t.Fatalf("the loop:\n%s\nnet/http:\n%s", answers[false], answers[true])
	}
	for _, want := range []string{`X-Tenant: ["app.test|/a/b|x=1&y=2|http"]`, `X-Forwarded-Host: ["edited.example"]`,
		`X-Who: ["127.0.0.1 GET /a/b?x=1&y=2 blue"]`, `X-Custom: ["from the client" "added"]`, `Strict-Transport-Security: ["max-age=60"]`,
		`Cache-Control: ["private, GET"]`, `X-Route: ["/strip"]`} {
		if !strings.Contains(answers[false], want) {
			t.Errorf("missing %s in\n%s", want, answers[false])
		}
	}
	for _, gone := range []string{"Cookie", "X-Real-Ip", "S3cret", "s3cret"} {
		if strings.Contains(answers[false], gone) {
			t.Errorf("%s was not removed:\n%s", gone, answers[false])
		}
	}
}

// An upstream that answers while it reads the body (here: echoes it as it
// comes) gets the whole body while its answer is relayed, as net/http's
// Transport sends it: neither side waits for the other to finish.
func TestFullDuplexUpstream(t *testing.T) {
	up := rawUpstream(t, func(conn net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(conn))
		if err != nil {
			return
		}
		io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
		buf := make([]byte, 16<<10)
		for {
			n, err := req.Body.Read(buf)
			if n > 0 {
				fmt.Fprintf(conn, "%x\r\n%s\r\n", n, buf[:n])
			}
			if err != nil {
				break
			}
		}
		io.WriteString(conn, "0\r\n\r\n")
	})
	r := newRig(t, http.NotFoundHandler(), rigOptions{upstreams: []string{up}})
	c := r.dial(t)
	body := bytes.Repeat([]byte("0123456789abcdef"), 256<<10) // 4 MiB: more than the sockets hold
	c.send("POST /echo HTTP/1.1\r\nHost: app.test\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	sent := make(chan error, 1)
	go func() {
		for off := 0; off < len(body); off += 64 << 10 {
			if _, err := c.c.Write(body[off : off+64<<10]); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"})
	if err != nil {
		t.Fatal(err)
	}
	gotB, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the echo after %d bytes: %v; %+v", len(gotB), err, r.records())
	}
	got := string(gotB)
	if err := <-sent; err != nil {
		t.Fatalf("sending: %v", err)
	}
	if resp.StatusCode != 200 || got != string(body) {
		t.Fatalf("%d, %d bytes echoed of %d: %+v %s", resp.StatusCode, len(got), len(body), r.records(), r.logs)
	}
	// An answer that began before the body had all come says the
	// connection will close, and it does; one that began after it (the
	// loop read the body faster than the upstream answered) goes on.
	if resp.Close {
		if n, err := c.br.Read(make([]byte, 1)); n != 0 || err == nil {
			t.Fatalf("after the answer: %d %v", n, err)
		}
	} else if resp, _ := c.roundTrip("GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("after: %d", resp.StatusCode)
	}
	if recs := r.records(); recs[0].Status != 200 || recs[0].Bytes != int64(len(body)) {
		t.Fatalf("record: %+v", recs[0])
	}
}

// An upstream that fails while the client is still sending its body gets
// the client a 502 and a closed connection, whatever the failure: nothing
// more is sent upstream, and the loop goes on serving.
func TestUpstreamFailsDuringUpload(t *testing.T) {
	deadAddr := refusingAddr(t)
	cutter := rawUpstream(t, func(conn net.Conn) { // reads a little of the body, then hangs up
		conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		io.ReadFull(conn, make([]byte, 100<<10))
	})
	big := bytes.Repeat([]byte("u"), 4<<20)
	for name, up := range map[string]string{"refused": "http://" + deadAddr, "hung up": cutter} {
		t.Run(name, func(t *testing.T) {
			r := newRig(t, http.HandlerFunc(echo), rigOptions{upstreams: []string{up}})
			c := r.dial(t)
			c.send("POST /x HTTP/1.1\r\nHost: app.test\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n")
			go c.c.Write(big)
			c.c.SetReadDeadline(time.Now().Add(3 * time.Second))
			resp, err := http.ReadResponse(c.br, &http.Request{Method: "POST"})
			if err != nil {
				t.Fatalf("%v; records %+v; log %s", err, r.records(), r.logs)
			}
			b, _ := io.ReadAll(resp.Body)
			body := string(b)
			if resp.StatusCode != 502 || body != "502 Bad Gateway\n" || !resp.Close {
				t.Fatalf("%d %q close=%v", resp.StatusCode, body, resp.Close)
			}
			// The loop is alive and serves the next client.
			r2 := r.dial(t)
			r2.send("GET /y HTTP/1.1\r\nHost: app.test\r\n\r\n")
			if resp, _ := r2.read("GET"); resp.StatusCode != 502 {
				t.Fatalf("next client: %d", resp.StatusCode)
			}
		})
	}
}

// A body that has not all come when the connection is made goes to the
// name's next address too when the first refuses.
func TestUploadToNameFailsOver(t *testing.T) {
	r, _, _, _ := rigByName(t)
	// The first request starts the lookup and goes to net/http meanwhile;
	// the upload is then the first request the loop sends there.
	if resp, _ := r.dial(t).roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	for i := 0; r.pool.Hosts[0].Addrs() < 2; i++ {
		if i > 500 {
			t.Fatal("the name never resolved")
		}
		time.Sleep(5 * time.Millisecond)
	}
	big := bytes.Repeat([]byte("b"), 1<<20)
	c := r.dial(t)
	c.send("POST /up HTTP/1.1\r\nHost: app.test\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n")
	go c.c.Write(big)
	resp, _ := c.read("POST")
	if resp.StatusCode != 200 || resp.Header.Get("X-Body-Len") != strconv.Itoa(len(big)) {
		t.Fatalf("%d, body %s of %d", resp.StatusCode, resp.Header.Get("X-Body-Len"), len(big))
	}
	if served, _ := r.eng.Counts(); served != 1 {
		t.Fatalf("the upload was not served on the loop (%d)", served)
	}
	// The first request's record may come in after the upload's.
	for _, rec := range r.waitRecords(t, 2) {
		if rec.Method == "POST" && rec.Tries != 2 {
			t.Fatalf("the upload took %d tries, want 2 (refused, then the next address)", rec.Tries)
		}
	}
}

// rawUpstream is an upstream on a loopback port that serves each
// connection with serve, byte by byte as a test needs, and closes it after;
// it returns the upstream's URL.
func rawUpstream(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	return "http://" + testserve.Listen(t, func(c net.Conn, _ int) { serve(c) })
}

// refusingAddr is a loopback address where nothing listens.
func refusingAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestFileCutShortThenProxy: a client that leaves in the middle of a large
// file leaves nothing behind for the requests that reuse its exchange.
// Before, the cut file's byte count stayed, and the next answer on the
// exchange waited for a file that was not there and lost its connection.
func TestFileCutShortThenProxy(t *testing.T) {
	r := newRig(t, http.HandlerFunc(echo), rigOptions{})
	for range 4 {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			// A small window, so the file cannot all leave at once.
			return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		}}
		c, err := d.Dial("tcp", r.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, "GET /files/huge.bin HTTP/1.1\r\nHost: app.test\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 512)); err != nil {
			t.Fatal(err)
		}
		c.Close() // with most of the file still to come
	}
	time.Sleep(100 * time.Millisecond) // the loops see the clients go
	for i := range 8 {
		c := r.dial(t)
		for j := range 2 { // the second on the same connection: it must stay open
			resp, body := c.roundTrip("GET /after HTTP/1.1\r\nHost: app.test\r\n\r\n")
			if resp.StatusCode != 200 || resp.Header.Get("X-Uri") != "/after" {
				t.Fatalf("connection %d, request %d after the cut files: %d %q", i, j, resp.StatusCode, body)
			}
		}
	}
}
