package main

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The bench runs its own small programs by starting its own binary again
// with a role as the first argument, so one `go run ./bench` is all it
// takes.

// roleBackend is the upstream every proxy forwards to: fixed bodies from
// memory with Content-Length, keep-alive, and /headers echoing the request
// headers so the bench can check what each proxy sends.
func roleBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	addr := fs.String("addr", "127.0.0.1:19000", "plain HTTP address")
	tlsAddr := fs.String("tls-addr", "", "HTTPS address (h2 and HTTP/1.1)")
	cert := fs.String("cert", "", "certificate file for -tls-addr")
	key := fs.String("key", "", "key file for -tls-addr")
	fs.Parse(args)

	bodies := map[string][]byte{
		"/1k":   body(1 << 10),
		"/100k": body(100 << 10),
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/headers" {
			w.Header().Set("Content-Type", "application/json")
			hdr := r.Header.Clone()
			hdr.Set("Host", r.Host)
			json.NewEncoder(w).Encode(hdr)
			return
		}
		b, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header()["Content-Type"] = []string{"application/octet-stream"}
		w.Header()["Content-Length"] = []string{fmt.Sprint(len(b))}
		w.Write(b)
	})
	errc := make(chan error, 2)
	go func() { errc <- (&http.Server{Addr: *addr, Handler: h}).ListenAndServe() }()
	if *tlsAddr != "" {
		go func() { errc <- (&http.Server{Addr: *tlsAddr, Handler: h}).ListenAndServeTLS(*cert, *key) }()
	}
	return waitSignal(errc)
}

func body(n int) []byte {
	return []byte(strings.Repeat("0123456789abcdef", n/16))
}

// roleGoProxy is the reference point the targets are set against: the
// standard library's httputil.ReverseProxy doing the same job as the
// peers, and http.FileServer for static files.
func roleGoProxy(args []string) error {
	fs := flag.NewFlagSet("goproxy", flag.ExitOnError)
	addr := fs.String("addr", "", "plain HTTP address")
	tlsAddr := fs.String("tls-addr", "", "HTTPS address")
	cert := fs.String("cert", "", "certificate file")
	key := fs.String("key", "", "key file")
	upstream := fs.String("upstream", "http://127.0.0.1:19000", "backend URL")
	static := fs.String("static", "", "folder served under /static/")
	fs.Parse(args)

	u, err := url.Parse(*upstream)
	if err != nil {
		return err
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = 64
	rp := &httputil.ReverseProxy{
		Transport: t,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
			ip, _, _ := net.SplitHostPort(pr.In.RemoteAddr)
			pr.Out.Header["X-Real-Ip"] = []string{ip}
		},
	}
	mux := http.NewServeMux()
	mux.Handle("/", rp)
	mux.Handle("/static/", http.StripPrefix("/static", http.FileServer(http.Dir(*static))))
	errc := make(chan error, 2)
	go func() { errc <- (&http.Server{Addr: *addr, Handler: mux}).ListenAndServe() }()
	go func() { errc <- (&http.Server{Addr: *tlsAddr, Handler: mux}).ListenAndServeTLS(*cert, *key) }()
	return waitSignal(errc)
}

func waitSignal(errc chan error) error {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return err
	case <-sig:
		return nil
	}
}

// roleIdle opens n keep-alive connections, sends one request on each,
// reads the answer, prints "ready" and then holds them open until stdin
// closes, so the bench can read the server's RSS with n idle clients.
func roleIdle(args []string) error {
	fs := flag.NewFlagSet("idle", flag.ExitOnError)
	addr := fs.String("addr", "", "server address")
	n := fs.Int("n", 10000, "connections")
	host := fs.String("host", "bench.test", "Host header and TLS server name")
	path := fs.String("path", "/1k", "request path")
	useTLS := fs.Bool("tls", false, "use TLS")
	fs.Parse(args)

	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *host + "\r\nUser-Agent: gatehouse-bench-idle\r\n\r\n")
	conns := make([]net.Conn, *n)
	var failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // a bounded number of dials in flight
	deadline := time.Now().Add(90 * time.Second)
	for i := range conns {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			c, err := dialOne(*addr, *host, *useTLS, req, deadline)
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		fmt.Fprintf(os.Stderr, "idle: %d connections failed, first: %v\n", failed.Load(), e)
	}
	fmt.Printf("ready %d\n", int64(*n)-failed.Load())
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

func dialOne(addr, host string, useTLS bool, req []byte, deadline time.Time) (net.Conn, error) {
	var c net.Conn
	var err error
	d := &net.Dialer{Deadline: deadline}
	if useTLS {
		c, err = tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: host, InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	} else {
		c, err = d.Dial("tcp", addr)
	}
	if err != nil {
		return nil, err
	}
	c.SetDeadline(deadline)
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 || resp.Close {
		c.Close()
		return nil, fmt.Errorf("status %d, close %v, %v", resp.StatusCode, resp.Close, err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
