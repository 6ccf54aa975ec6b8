package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/certs"
)

// selfSigned is a certificate for secure.test from a local CA, and the
// pool trusting it.
func selfSigned(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	ca, err := certs.LoadOrCreateCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.Issue([]string{"secure.test"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tls.Config{Certificates: []tls.Certificate{*cert}, NextProtos: []string{"h2", "http/1.1"}}, pool
}

func (r *rig) dialTLS(t *testing.T, pool *x509.CertPool, protos ...string) *client {
	t.Helper()
	c, err := tls.Dial("tcp", r.addr, &tls.Config{ServerName: "secure.test", RootCAs: pool, NextProtos: protos})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

func TestTLSOnTheLoop(t *testing.T) {
	cfg, pool := selfSigned(t)
	big := bytes.Repeat([]byte("z"), 1<<20)
	r := newRig(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/big" {
			w.Write(big)
			return
		}
		echo(w, req)
	}), rigOptions{tls: cfg})
	c := r.dialTLS(t, pool, "http/1.1")
	for i := range 3 {
		resp, body := c.roundTrip("GET /x HTTP/1.1\r\nHost: secure.test\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello from the backend\n" || resp.Header.Get("X-Got-Xfp") != "https" {
			t.Fatalf("request %d: %d %q %v", i, resp.StatusCode, body, resp.Header)
		}
	}
	if _, body := c.roundTrip("GET /big HTTP/1.1\r\nHost: secure.test\r\n\r\n"); body != string(big) {
		t.Fatalf("big: %d bytes", len(body))
	}
	c.send("POST /up HTTP/1.1\r\nHost: secure.test\r\nContent-Length: " + strconv.Itoa(len(big)) + "\r\n\r\n")
	go c.c.Write(big)
	if resp, _ := c.read("POST"); resp.Header.Get("X-Body-Len") != strconv.Itoa(len(big)) {
		t.Fatalf("upload: %s", resp.Header.Get("X-Body-Len"))
	}
	// Files, small from memory and large from disk, through TLS.
	if resp, body := c.roundTrip("GET /files/big.bin HTTP/1.1\r\nHost: secure.test\r\n\r\n"); resp.StatusCode != 200 || body != strings.Repeat("b", 100<<10) {
		t.Fatalf("large file over TLS: %d, %d bytes", resp.StatusCode, len(body))
	}
	if _, body := c.roundTrip("GET /files/a.css HTTP/1.1\r\nHost: secure.test\r\n\r\n"); body != "body { color: red }\n" {
		t.Fatalf("small file over TLS: %q", body)
	}
	// A plain-HTTP-only site is not served over TLS.
	if resp, _ := c.roundTrip("GET / HTTP/1.1\r\nHost: app.test\r\n\r\n"); resp.StatusCode != 404 {
		t.Fatalf("app.test over TLS: %d", resp.StatusCode)
	}
	if served, handed := r.eng.Counts(); served != 7 || handed != 1 {
		t.Fatalf("served %d handed %d", served, handed)
	}
	rec := r.waitRecords(t, 8)[0]
	if rec.TLS != "TLS 1.3" || rec.ALPN != "http/1.1" || rec.SNI != "secure.test" || rec.TLSCipher == "" {
		t.Fatalf("record: %+v", rec)
	}
}

// HTTP/2 goes to the full server as a TLS connection; a TLS connection
// handed over in the middle keeps its TLS for the full server's routing.
func TestTLSHandedOver(t *testing.T) {
	cfg, pool := selfSigned(t)
	r := newRig(t, http.HandlerFunc(echo), rigOptions{tls: cfg})
	hc := &http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "secure.test"}, ForceAttemptHTTP2: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", r.addr)
		},
	}}
	resp, err := hc.Get("https://secure.test/full")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("X-Served-By") != "full" {
		t.Fatalf("h2: %s %v", resp.Proto, resp.Header)
	}

	c := r.dialTLS(t, pool, "http/1.1")
	c.send("GET /1 HTTP/1.1\r\nHost: secure.test\r\n\r\nGET /full HTTP/1.1\r\nHost: secure.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: secure.test\r\n\r\n")
	r1, _ := c.read("GET")
	r2, _ := c.read("GET")
	r3, _ := c.read("GET")
	if r1.Header.Get("X-Uri") != "/1" || r2.Header.Get("X-Served-By") != "full" || r3.Header.Get("X-Uri") != "/2" || r3.Header.Get("X-Got-Xfp") != "https" {
		t.Fatalf("%d %v / %d %v / %d %v", r1.StatusCode, r1.Header, r2.StatusCode, r2.Header, r3.StatusCode, r3.Header)
	}
}

func TestTLSHandshakeFailure(t *testing.T) {
	cfg, _ := selfSigned(t)
	r := newRig(t, http.HandlerFunc(echo), rigOptions{tls: cfg})
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: secure.test\r\n\r\n")
	io.Copy(io.Discard, c) // closed by the server
	c.Close()
	r.waitHandshakeFailures(t, 1)
}

// A client that stalls in the handshake is closed when the read-header
// timeout runs out, and the failure is reported.
func TestTLSHandshakeTimeout(t *testing.T) {
	cfg, _ := selfSigned(t)
	r := newRig(t, http.HandlerFunc(echo), rigOptions{tls: cfg, readHeader: 200 * time.Millisecond})
	c, err := net.Dial("tcp", r.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00}) // a record header, then nothing
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the server did not close a stalled handshake: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
	r.waitHandshakeFailures(t, 1)
}

// waitHandshakeFailures waits until want handshake failures have been
// reported.
func (r *rig) waitHandshakeFailures(t *testing.T, want int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.handshakeErrs)
		r.mu.Unlock()
		if n == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handshake failures reported, want %d", n, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Connections closed after one answer give their ciphertext buffers back
// to the loop: many in a row need no more buffers than one does.
func TestTLSBuffersComeBack(t *testing.T) {
	cfg, pool := selfSigned(t)
	r := newRig(t, http.HandlerFunc(echo), rigOptions{tls: cfg})
	const conns = 100
	for i := range conns {
		c := r.dialTLS(t, pool, "http/1.1")
		resp, body := c.roundTrip("GET /x HTTP/1.1\r\nHost: secure.test\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != 200 || body != "hello from the backend\n" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
		if _, err := io.Copy(io.Discard, c.br); err != nil { // until the server closes
			t.Fatalf("request %d: %v", i, err)
		}
		c.c.Close()
	}
	var made int64
	for _, l := range r.eng.loops {
		made += l.bufsMade.Load()
	}
	if made > 8 {
		t.Errorf("%d buffers made for %d connections one after another", made, conns)
	}
}
