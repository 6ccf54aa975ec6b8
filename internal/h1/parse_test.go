package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"testing"
)

func TestParseRequest(t *testing.T) {
	good := "GET /a/b?q=%20 HTTP/1.1\r\nHost: Example.org:80\r\nContent-Length: 3\r\nX-Empty:\r\nConnection: keep-alive, close\r\nTE: trailers\r\n\r\nabc"
	var h head
	if err := parseRequest([]byte(good), &h); err != nil {
		t.Fatal(err)
	}
	b := []byte(good)
	if string(h.method.of(b)) != "GET" || string(h.target.of(b)) != "/a/b?q=%20" || string(h.path.of(b)) != "/a/b" ||
		string(h.host.of(b)) != "Example.org:80" || h.contentLength != 3 || !h.close || h.size != len(good)-3 {
		t.Fatalf("%+v", h)
	}
	if len(h.fields) != 5 || h.fields[4].kind != fieldHop {
		t.Fatalf("fields %+v", h.fields)
	}
	for _, in := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n",            // incomplete
		"GET / HTTP/1.1\r\nHost: a\r\n\r",          // incomplete
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Len", // incomplete
	} {
		if err := parseRequest([]byte(in), &h); err != errIncomplete {
			t.Errorf("%q: %v, want incomplete", in, err)
		}
	}
	for _, in := range []string{
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /%61 HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n z\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: x-secret\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: \x00\r\n\r\n",
		"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
		"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
	} {
		if err := parseRequest([]byte(in), &h); err != errForeign {
			t.Errorf("%q: %v, want the full server", in, err)
		}
	}
}

func TestParseResponse(t *testing.T) {
	in := "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nDate: x\r\n\r\n"
	var h head
	b := []byte(in)
	if err := parseResponse(b, &h); err != nil {
		t.Fatal(err)
	}
	if h.status != 200 || !h.chunked || h.contentLength != -1 || !h.close || !h.hasDate {
		t.Fatalf("%+v", h)
	}
	if !h.hopByHop(b, &h.fields[3]) || h.hopByHop(b, &h.fields[4]) {
		t.Fatal("X-Hop named by Connection is not hop-by-hop")
	}
	for _, bad := range []string{
		"HTTP/1.1 20 OK\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: y\r\n z\r\n\r\n",
		"HTTP/1.1 600 Too Much\r\n\r\n",
	} {
		if err := parseResponse([]byte(bad), &h); err != errBadResponse {
			t.Errorf("%q: %v", bad, err)
		}
	}
	if err := parseResponse([]byte("HTTP/1.0 200 OK\r\n\r\n"), &h); err != nil || !h.close || h.contentLength != -1 {
		t.Fatalf("HTTP/1.0: %v %+v", err, h)
	}
}

func TestChunkScanner(t *testing.T) {
	body := "5;ext=1\r\nhello\r\n0\r\nX-Trailer: v\r\n\r\n"
	for split := range len(body) {
		var s chunkScanner
		n1, err := s.scan([]byte(body[:split]))
		if err != nil || n1 != split {
			t.Fatalf("split %d: %d %v", split, n1, err)
		}
		n2, err := s.scan([]byte(body[split:] + "NEXT"))
		if err != nil || n1+n2 != len(body) || !s.done() {
			t.Fatalf("split %d: %d+%d %v done=%v", split, n1, n2, err, s.done())
		}
	}
	for _, bad := range []string{"x\r\n", "5\r\nhelloXX", "5\nhello", "10000000000000000\r\n", "\r\n"} {
		var s chunkScanner
		if _, err := s.scan([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// FuzzParseRequest holds the loop's parser to net/http's: whatever the
// loop accepts, net/http reads the same way (method, target, Host, body
// length, close). A request the two servers on one path read differently
// is how smuggling starts.
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x?y HTTP/1.1\r\nHost: a:1\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\nX:  y \r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\nTE: trailers\r\nKeep-Alive: 1\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h head
		if parseRequest(data, &h) != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
		if err != nil {
			t.Fatalf("loop accepts what net/http refuses (%v): %q", err, data)
		}
		if req.Method != string(h.method.of(data)) || req.RequestURI != string(h.target.of(data)) || req.Host != string(h.host.of(data)) {
			t.Fatalf("read differently: %q %q %q vs %+v: %q", req.Method, req.RequestURI, req.Host, h, data)
		}
		if want := max(h.contentLength, 0); req.ContentLength != want || len(req.TransferEncoding) != 0 {
			t.Fatalf("body length %d (%v) vs %d: %q", req.ContentLength, req.TransferEncoding, want, data)
		}
		if req.Close != h.close {
			t.Fatalf("close %v vs %v: %q", req.Close, h.close, data)
		}
	})
}

// FuzzParseResponse holds the response parser to net/http's on status and
// framing, and the chunk scanner to split-invariance.
func FuzzParseResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n",
		"HTTP/1.0 404 Not Found\r\nConnection: close\r\n\r\n",
		"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h head
		if parseResponse(data, &h) == nil {
			resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(data)), &http.Request{Method: "GET"})
			if err != nil {
				t.Fatalf("loop accepts what net/http refuses (%v): %q", err, data)
			}
			if resp.StatusCode != h.status {
				t.Fatalf("status %d vs %d: %q", resp.StatusCode, h.status, data)
			}
			if chunked := len(resp.TransferEncoding) > 0; chunked != h.chunked && h.status >= 200 && h.status != 204 && h.status != 304 {
				t.Fatalf("chunked %v vs %v: %q", chunked, h.chunked, data)
			}
			if !h.chunked && h.contentLength >= 0 && h.status >= 200 && h.status != 204 && h.status != 304 && resp.ContentLength != h.contentLength {
				t.Fatalf("length %d vs %d: %q", resp.ContentLength, h.contentLength, data)
			}
		}
		var whole, parts chunkScanner
		n, err := whole.scan(data)
		mid := len(data) / 2
		n1, err1 := parts.scan(data[:mid])
		n2, err2 := 0, error(nil)
		if err1 == nil && n1 == mid {
			n2, err2 = parts.scan(data[mid:])
		}
		if (err == nil) != (err1 == nil && err2 == nil) || err == nil && (n != n1+n2 || whole.done() != parts.done()) {
			t.Fatalf("scan differs when split: %d %v / %d+%d %v %v: %q", n, err, n1, n2, err1, err2, data)
		}
		// A whole body's data, as the record counts it, is what net/http's
		// chunked reader decodes.
		if err == nil && whole.done() {
			decoded, derr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data[:n])))
			if derr == nil && (int64(len(decoded)) != whole.data || parts.data != whole.data) {
				t.Fatalf("data %d (split %d), net/http decodes %d: %q", whole.data, parts.data, len(decoded), data)
			}
		}
	})
}

var benchHead = []byte("GET /api/items?page=2 HTTP/1.1\r\nHost: example.org\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64)\r\n" +
	"Accept: text/html,application/xhtml+xml\r\nAccept-Encoding: gzip, br\r\nAccept-Language: en\r\nCookie: session=abc123\r\n" +
	"Connection: keep-alive\r\n\r\n")

func BenchmarkParseRequest(b *testing.B) {
	var h head
	h.fields = make([]field, 0, 32)
	b.SetBytes(int64(len(benchHead)))
	b.ReportAllocs()
	for b.Loop() {
		if err := parseRequest(benchHead, &h); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParseResponse(b *testing.B) {
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1024\r\nDate: Wed, 25 Nov 2026 07:00:00 GMT\r\nCache-Control: no-store\r\n\r\n")
	var h head
	h.fields = make([]field, 0, 32)
	b.ReportAllocs()
	for b.Loop() {
		if err := parseResponse(resp, &h); err != nil {
			b.Fatal(err)
		}
	}
}
