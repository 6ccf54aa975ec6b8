// Package h1 owns plain-HTTP/1.1 connections served on event loops: it
// reads request heads itself and, for requests a plain proxy route answers
// (the common case: a keep-alive client asking the backend), sends them to
// the upstream and relays the answer without building an http.Request,
// without a goroutine per connection and without per-request allocations.
//
// Everything else goes to the full server. A connection whose request the
// loop does not serve itself — TLS, a static file, a redirect, a 404, an
// Upgrade, Expect, a chunked body, a percent-encoded path, a malformed
// head — is handed, with every byte already read, to net/http, which
// answers it exactly as it would have from the start and keeps the
// connection. The loop's parser is a strict subset of RFC 9112, so
// whatever it accepts means the same to every server on the way.
//
// Each loop owns an epoll set (edge-triggered, as nginx uses it): the
// client connections, the upstream connections and their idle pools, and
// the timers, all touched by the loop's goroutine only. An idle client
// connection costs a small struct and no buffer.
package h1

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/internal/journey"
	"gatehouse/internal/route"
)

// Gen is what the config now in force tells the loop; the loop asks for it
// once per request, so a reload applies to the next request.
type Gen struct {
	Table *route.Table
	// Finish takes a finished request's record (access log, metrics, ring).
	Finish func(*journey.Record)
	// Full reports whether every request must go to the full server now
	// (the firewall checks requests, the journey adds Server-Timing).
	Full func() bool
}

// Options configure an Engine.
type Options struct {
	// Gen returns the config in force; nil sends everything to the full
	// server.
	Gen               func() *Gen
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration
	// MaxHeaderBytes bounds a request head the loop buffers; a larger one
	// goes to the full server, which answers 431.
	MaxHeaderBytes int
	// ConnState, when set, hears of connections opening and closing, as
	// http.Server's hook does.
	ConnState func(net.Conn, http.ConnState)
	Log       *slog.Logger
	// TLS, when set, makes the engine terminate TLS: HTTP/1.1 connections
	// are served on the loops, HTTP/2 ones handed to the full server.
	TLS *tls.Config
	// HandshakeFailed hears of every failed TLS handshake.
	HandshakeFailed func(remote net.Addr, err error)
	// Answered and Handed, when set, count requests the loops took and
	// connections handed to the full server (metrics).
	Answered, Handed Counter
}

// Counter is a metric the engine adds to.
type Counter interface{ Inc() }

// Engine serves one listener's connections on runtime.GOMAXPROCS loops.
type Engine struct {
	opts     Options
	loops    []*loop
	next     atomic.Uint32
	fallback *fallback
	conns    atomic.Int64
	served   atomic.Int64 // requests the loops took
	handed   atomic.Int64 // connections handed to the full server
	draining atomic.Bool
	closed   chan struct{}
	once     sync.Once
	lnMu     sync.Mutex
	ln       net.Listener // what Serve accepts from; closed with the engine
}

// New starts an engine's loops for the listener at addr.
func New(addr net.Addr, o Options) (*Engine, error) {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.ReadHeaderTimeout <= 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
	e := &Engine{opts: o, closed: make(chan struct{}), fallback: newFallback(addr)}
	for range runtime.GOMAXPROCS(0) {
		l, err := newLoop(e)
		if err != nil {
			e.Close()
			return nil, err
		}
		e.loops = append(e.loops, l)
		go l.run()
	}
	return e, nil
}

// Counts reports the requests the loops took and the connections they
// handed to the full server.
func (e *Engine) Counts() (served, handed int64) { return e.served.Load(), e.handed.Load() }

func (e *Engine) countServed() {
	e.served.Add(1)
	if e.opts.Answered != nil {
		e.opts.Answered.Inc()
	}
}

func (e *Engine) countHanded() {
	e.handed.Add(1)
	if e.opts.Handed != nil {
		e.opts.Handed.Inc()
	}
}

// Fallback is the listener the full server serves: it yields the
// connections the loops hand over.
func (e *Engine) Fallback() net.Listener { return e.fallback }

// Serve accepts connections from ln until it is closed, and gives each to
// a loop.
func (e *Engine) Serve(ln net.Listener) error {
	e.lnMu.Lock()
	e.ln = ln
	e.lnMu.Unlock()
	select {
	case <-e.closed:
		ln.Close()
	default:
	}
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		e.adopt(nc)
	}
}

// adopt moves an accepted connection onto a loop. The socket is taken
// from Go's poller (a duplicate descriptor, the original closed); nc, the
// listener's own connection object, is kept for what it carries (the
// firewall's verdict and its count of the source's connections) and closed
// with the socket.
func (e *Engine) adopt(nc net.Conn) {
	// Counted before draining is checked, and Shutdown sets draining
	// before it reads the count: one of the two always sees the other, so
	// no connection slips past a Shutdown that found none.
	e.conns.Add(1)
	if e.draining.Load() {
		nc.Close()
		e.conns.Add(-1)
		return
	}
	tcp := innermostTCP(nc)
	if tcp == nil {
		// Not a TCP socket we can take: the full server serves it.
		if e.opts.TLS != nil {
			nc = tls.Server(nc, e.opts.TLS)
		}
		e.fallback.deliver(nc)
		e.conns.Add(-1)
		return
	}
	c := &conn{fd: -1, owner: nc, peer: addrPort(nc.RemoteAddr()), local: nc.LocalAddr()}
	if v, ok := nc.(interface{ FirewallVerdict() string }); ok {
		c.verdict = v.FirewallVerdict()
	}
	if e.opts.ConnState != nil {
		e.opts.ConnState(nc, http.StateNew)
	}
	if e.opts.TLS != nil {
		go e.handshake(nc, tcp, c)
		return
	}
	if c.fd = dupSocket(tcp); c.fd < 0 {
		e.gone(nc, http.StateHijacked)
		e.fallback.deliver(nc)
		return
	}
	tcp.Close()
	e.loops[int(e.next.Add(1))%len(e.loops)].enqueue(c)
}

// dupSocket duplicates tcp's descriptor, or returns -1.
func dupSocket(tcp *net.TCPConn) int {
	fd := -1
	if raw, err := tcp.SyscallConn(); err == nil {
		raw.Control(func(s uintptr) {
			if d, err := unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0); err == nil {
				fd = d
			}
		})
	}
	return fd
}

func innermostTCP(c net.Conn) *net.TCPConn {
	for {
		switch t := c.(type) {
		case *net.TCPConn:
			return t
		case interface{ NetConn() net.Conn }:
			c = t.NetConn()
		default:
			return nil
		}
	}
}

// Shutdown stops taking requests: idle connections are closed, busy ones
// close after their response, and it returns when none is left or ctx is
// done (then what is left is closed). The fallback listener closes too;
// the full server has its own Shutdown.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.draining.Store(true)
	e.closeListener()
	for _, l := range e.loops {
		l.wake()
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for e.conns.Load() > 0 {
		select {
		case <-ctx.Done():
			e.Close()
			return ctx.Err()
		case <-t.C:
		}
	}
	e.Close()
	return nil
}

// Close closes every connection and stops the loops.
func (e *Engine) Close() error {
	e.once.Do(func() {
		close(e.closed)
		e.closeListener()
		for _, l := range e.loops {
			l.wake()
		}
		e.fallback.Close()
	})
	return nil
}

// closeListener stops accepting: with a listen.Socket handle, the socket
// then delivers to the handle attached after it.
func (e *Engine) closeListener() {
	e.lnMu.Lock()
	defer e.lnMu.Unlock()
	if e.ln != nil {
		e.ln.Close()
	}
}

// fallback is a net.Listener fed with handed-over connections.
type fallback struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func newFallback(addr net.Addr) *fallback {
	return &fallback{ch: make(chan net.Conn, 256), done: make(chan struct{}), addr: addr}
}

func (f *fallback) Accept() (net.Conn, error) {
	select {
	case c := <-f.ch:
		return c, nil
	case <-f.done:
		// Connections handed over before the close are still served.
		select {
		case c := <-f.ch:
			return c, nil
		default:
			return nil, net.ErrClosed
		}
	}
}

func (f *fallback) Close() error {
	f.once.Do(func() { close(f.done) })
	return nil
}

func (f *fallback) Addr() net.Addr {
	if f.addr == nil {
		return &net.TCPAddr{}
	}
	return f.addr
}

// deliver queues c for the full server without ever blocking a loop.
func (f *fallback) deliver(c net.Conn) {
	select {
	case <-f.done: // closed: nobody will accept it
		c.Close()
		return
	default:
	}
	select {
	case f.ch <- c:
	case <-f.done:
		c.Close()
	default:
		go func() {
			select {
			case f.ch <- c:
			case <-f.done:
				c.Close()
			}
		}()
	}
}

// handed is a connection given to the full server: the bytes the loop had
// read come first, and closing it also closes what the listener accepted.
type handed struct {
	net.Conn
	pending []byte
	owner   net.Conn
	verdict string
	tls     *tls.ConnectionState // when Conn is a TLS session the loop began
}

// TLSState is the session's state, for ConnContext.
func (h *handed) TLSState() *tls.ConnectionState { return h.tls }

func (h *handed) Read(b []byte) (int, error) {
	if len(h.pending) > 0 {
		n := copy(b, h.pending)
		h.pending = h.pending[n:]
		return n, nil
	}
	return h.Conn.Read(b)
}

func (h *handed) Close() error {
	err := h.Conn.Close()
	h.owner.Close()
	return err
}

// FirewallVerdict keeps the verdict on the connection for the journey.
func (h *handed) FirewallVerdict() string { return h.verdict }

// ReadFrom keeps sendfile for static files.
func (h *handed) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := h.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{h.Conn}, r)
}

// CloseWrite half-closes, for the full server's WebSocket relay.
func (h *handed) CloseWrite() error {
	if cw, ok := h.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// NetConn returns the socket underneath.
func (h *handed) NetConn() net.Conn { return h.Conn }

// toNetConn makes a Go net.Conn of a loop's socket, which it then closes.
func toNetConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "")
	nc, err := net.FileConn(f) // a duplicate, in Go's poller
	f.Close()
	return nc, err
}
