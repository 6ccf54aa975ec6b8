package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"syscall"
	"time"

	"gatehouse/internal/sockio"
)

// direct sends a request without a body to a plain HTTP/1.1 upstream on
// the caller's goroutine: it takes an idle connection (or dials one),
// writes the request, reads the answer's head and returns. The body is read
// from the connection as the caller reads it, and the connection goes back
// to the pool once the body has been read to its end. net/http's Transport
// gives every connection a reading and a writing goroutine and hands each
// request between them through channels, which costs more than the
// exchange itself on a fast upstream. Requests with a body (sent while the
// answer may already come back) and upgrades keep going through the
// Transport.
type direct struct {
	dial          func(ctx context.Context, network, addr string) (net.Conn, error)
	headerTimeout time.Duration
	idleTimeout   time.Duration
	maxIdle       int

	mu    sync.Mutex
	idle  map[string][]*dconn // by address, most recently used last
	sweep *time.Timer         // closes connections idle too long; nil when none is idle
}

// dconn is a connection of a direct client. Its reads and writes are raw
// system calls (sockio.Conn), as the loops' are.
type dconn struct {
	*sockio.Conn
	head headLimit // what br reads through
	br   *bufio.Reader
	bw   *bufio.Writer
	addr string
	idle time.Time // since when it waits in the pool
}

func newDirect(dial func(ctx context.Context, network, addr string) (net.Conn, error), o Options) *direct {
	d := &direct{dial: dial, headerTimeout: o.HeaderTimeout, idleTimeout: o.IdleTimeout, maxIdle: o.MaxIdle, idle: map[string][]*dconn{}}
	if d.idleTimeout <= 0 {
		d.idleTimeout = 90 * time.Second
	}
	if d.maxIdle <= 0 {
		d.maxIdle = 2 // net/http's DefaultMaxIdleConnsPerHost
	}
	return d
}

// directable reports whether req can go through a direct client: no body
// to send, no protocol switch asked for.
func directable(req *http.Request) bool {
	return (req.Body == nil || req.Body == http.NoBody) && req.Method != http.MethodConnect &&
		req.Header.Get("Upgrade") == "" && req.Header.Get("Expect") == ""
}

// max1xx bounds the informational answers (103 Early Hints and the like)
// read before the final one.
const max1xx = 5

// errNoAnswer is a connection that ended before the first byte of an
// answer: on a connection that was idle in the pool, the upstream closed it
// as the request went out.
var errNoAnswer = errors.New("upstream closed the connection without answering")

func (d *direct) roundTrip(req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	for {
		c := d.get(req.URL.Host)
		reused := c != nil
		if c == nil {
			nc, err := d.dial(ctx, "tcp", req.URL.Host)
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err() // the client left; the upstream is not to blame
				}
				return nil, err
			}
			c = newDconn(nc, req.URL.Host)
		}
		resp, sent, err := d.exchange(ctx, c, req)
		if err == nil {
			return resp, nil
		}
		c.Close()
		// As net/http's Transport: a request that did not reach a reused
		// connection, or a repeatable one it took without answering, goes
		// again on another connection.
		if reused && ctx.Err() == nil && (!sent || errors.Is(err, errNoAnswer) && idempotent(req)) {
			continue
		}
		return nil, err
	}
}

// idempotent is RFC 9110's safe-to-repeat methods, or a request that
// carries an idempotency key, as net/http's Transport judges it.
func idempotent(req *http.Request) bool {
	switch req.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

// exchange sends req on c and reads the answer's head. sent is whether the
// request was written.
func (d *direct) exchange(ctx context.Context, c *dconn, req *http.Request) (resp *http.Response, sent bool, err error) {
	// A client that goes away ends the exchange: every read and write
	// fails from then on.
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer func() {
		if err != nil {
			stop()
			if ctx.Err() != nil {
				err = ctx.Err()
			}
		}
	}()
	if err := req.Write(c.bw); err != nil {
		return nil, false, err
	}
	if err := c.bw.Flush(); err != nil {
		return nil, false, err
	}
	if d.headerTimeout > 0 {
		c.setReadDeadline(ctx, time.Now().Add(d.headerTimeout))
	}
	for n := 0; ; n++ {
		c.head.left = MaxHeadBytes - int64(c.br.Buffered())
		if _, err := c.br.Peek(1); err != nil {
			if n == 0 && (err == io.EOF || errors.Is(err, syscall.ECONNRESET)) {
				return nil, true, errNoAnswer
			}
			return nil, true, err
		}
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			return nil, true, err
		}
		code := resp.StatusCode
		if code == http.StatusSwitchingProtocols {
			return nil, true, errors.New("upstream switched protocols unasked")
		}
		if code >= 200 {
			break
		}
		if n == max1xx {
			return nil, true, errors.New("upstream sent too many informational answers")
		}
		if trace := httptrace.ContextClientTrace(ctx); trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
				return nil, true, err
			}
		}
	}
	c.head.left = -1
	if d.headerTimeout > 0 {
		c.setReadDeadline(ctx, time.Time{})
	}
	if err := ctx.Err(); err != nil {
		return nil, true, err
	}
	resp.Body = &directBody{ctx: ctx, d: d, c: c, body: resp.Body, stop: stop, reuse: !resp.Close && !req.Close}
	return resp, true, nil
}

// setReadDeadline sets the read deadline unless ctx is done: then the
// deadline that ends the exchange, which the cancel may just have set,
// stays.
func (c *dconn) setReadDeadline(ctx context.Context, t time.Time) {
	c.SetReadDeadline(t)
	if ctx.Err() != nil {
		c.SetDeadline(time.Unix(1, 0))
	}
}

// directBody is an answer's body read straight from its connection.
type directBody struct {
	ctx   context.Context
	d     *direct
	c     *dconn
	body  io.ReadCloser
	stop  func() bool
	reuse bool // the connection may carry another request once the body is read
	done  bool
	err   error // what ended the body: io.EOF, the failure, or errClosedBody
}

var errClosedBody = errors.New("read on a closed upstream body")

func (b *directBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, b.err
	}
	n, err := b.body.Read(p)
	if err != nil {
		if err != io.EOF && b.ctx.Err() != nil {
			err = b.ctx.Err() // the client left, as net/http's Transport reports it
		}
		b.err = err
		b.finish(err == io.EOF)
	}
	return n, err
}

// Close before the end of the body closes the connection: what is left of
// the body would come before the next answer.
func (b *directBody) Close() error {
	if !b.done {
		b.err = errClosedBody
		b.finish(false)
	}
	return nil
}

func (b *directBody) finish(whole bool) {
	b.done = true
	if b.stop() && whole && b.reuse && b.c.br.Buffered() == 0 {
		b.d.put(b.c)
		return
	}
	b.c.Close()
}

func newDconn(nc net.Conn, addr string) *dconn {
	sc := sockio.Wrap(nc)
	c := &dconn{Conn: sc, addr: addr, bw: bufio.NewWriterSize(sc, 4<<10)}
	c.head.r = sc
	c.br = bufio.NewReaderSize(&c.head, 4<<10)
	return c
}

// headLimit bounds what an answer's head may take, as the loops' buffer
// and net/http's Transport (MaxResponseHeaderBytes) bound it.
type headLimit struct {
	r    io.Reader
	left int64 // bytes the head may still take; < 0 once the body is read
}

var errHeadTooLarge = fmt.Errorf("upstream answer head larger than %d bytes", MaxHeadBytes)

func (h *headLimit) Read(p []byte) (int, error) {
	if h.left < 0 {
		return h.r.Read(p)
	}
	if h.left == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > h.left {
		p = p[:h.left]
	}
	n, err := h.r.Read(p)
	h.left -= int64(n)
	return n, err
}

// get takes the most recently used idle connection to addr that is still
// good, or returns nil.
func (d *direct) get(addr string) *dconn {
	for {
		d.mu.Lock()
		list := d.idle[addr]
		if len(list) == 0 {
			d.mu.Unlock()
			return nil
		}
		c := list[len(list)-1]
		list[len(list)-1] = nil
		d.idle[addr] = list[:len(list)-1]
		d.mu.Unlock()
		// An upstream that closed an idle connection, or sent something
		// unasked on it (a 408 before closing, say), must not get the next
		// request: one peek, where net/http's Transport keeps a goroutine
		// reading every idle connection.
		if time.Since(c.idle) < d.idleTimeout && !c.Pending() {
			return c
		}
		c.Close()
	}
}

func (d *direct) put(c *dconn) {
	d.mu.Lock()
	list := d.idle[c.addr]
	if len(list) >= d.maxIdle {
		d.mu.Unlock()
		c.Close()
		return
	}
	c.idle = time.Now()
	d.idle[c.addr] = append(list, c)
	if d.sweep == nil {
		d.sweep = time.AfterFunc(d.idleTimeout, d.sweepIdle)
	}
	d.mu.Unlock()
}

// sweepIdle closes connections idle longer than the idle timeout, so an
// upstream's half-closed sockets do not linger, and comes back while any
// connection is left.
func (d *direct) sweepIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sweep = nil
	left := false
	for addr, list := range d.idle {
		keep := list[:0]
		for _, c := range list {
			if time.Since(c.idle) >= d.idleTimeout {
				c.Close()
			} else {
				keep = append(keep, c)
			}
		}
		clear(list[len(keep):])
		if len(keep) == 0 {
			delete(d.idle, addr)
		} else {
			d.idle[addr] = keep
			left = true
		}
	}
	if left {
		d.sweep = time.AfterFunc(d.idleTimeout/2, d.sweepIdle)
	}
}

// closeIdle closes every idle connection.
func (d *direct) closeIdle() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for addr, list := range d.idle {
		for _, c := range list {
			c.Close()
		}
		delete(d.idle, addr)
	}
}
