package h1

import (
	"bytes"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"gatehouse/internal/journey"
	"gatehouse/internal/proxy"
	"gatehouse/internal/route"
	"gatehouse/internal/sockio"
	"gatehouse/internal/static"
	"gatehouse/internal/upstream"
)

// phase is where a client connection is in its current exchange.
type phase uint8

const (
	phHead    phase = iota // waiting for or reading a request head
	phConnect              // getting an upstream connection
	phSend                 // sending the request: head, then body
	phWait                 // waiting for the response head
	phRelay                // relaying the response to the client
	phLinger               // closed for writing, dropping what the client still sends
)

// lingerTime bounds how long a closing connection keeps reading what its
// client still sends (nginx's lingering_timeout).
const lingerTime = 5 * time.Second

// conn is a client connection on a loop.
type conn struct {
	l       *loop
	fd      int
	owner   net.Conn // what the listener accepted; closed with the socket
	peer    netip.AddrPort
	local   net.Addr
	verdict string
	slot    int // index in l.conns

	readable, writable bool
	// rdhup: the peer closed its side. A short read then does not mean
	// drained (the end of the stream brings no further edge), so reads go
	// on until they say so.
	rdhup     bool
	hup       bool // the client hung up or the socket failed
	phase     phase
	x         *exchange // nil while idle
	deadline  int64
	idleSince int64
	served    int
	// lastHost and lastPath are the strings of the last request's Host and
	// path, reused while a keep-alive client repeats them.
	lastHost, lastPath string

	// TLS connections: the session, the buffers it reads and writes, and
	// tlsMore while it may hold plaintext not read yet.
	tls     *tls.Conn
	sock    *tlsSocket
	tlsInfo tlsInfo
	tlsMore bool
}

// exchange is one request and its response, with the buffers they pass
// through; idle connections give theirs back to the loop.
type exchange struct {
	c *conn
	// in holds client bytes; in[inOff:inN] are not consumed yet, and the
	// request head starts at headOff while it is needed.
	in                  []byte
	inOff, inN, headOff int
	req, resp           head
	uout                []byte // the request as sent upstream (head and buffered body)
	upPend              []byte // what is left to write upstream
	cout                []byte // the response head for the client
	cPend               []byte // what is left to write to the client
	rbuf                []byte // upstream bytes; rbuf[rOff:rN] unparsed
	rOff, rN            int
	bodyLeft            int64 // request body still to come from the client
	mode                bodyMode
	respLeft            int64
	chunks              chunkScanner
	upEOF               bool
	bodyCut             bool // the upstream stopped taking the request body
	// file is a static file being sent after the head: fileLeft bytes
	// from fileOff.
	file                 *os.File
	fileOff, fileLeft    int64
	reusable, closeAfter bool
	headOnly             bool
	replayable           bool // uout holds the whole request
	idempotent           bool
	plain                *proxy.Plain
	host                 *upstream.Host
	// respEdits are the response's edited fields, filled from the request
	// while its head is at hand; editsDate says one of them is Date.
	respEdits []byte
	editsDate bool
	dialAddr  netip.AddrPort // the host's address dialled last
	dialFails int            // connections the host refused this request
	upPath    string
	up        *upConn
	gen       *Gen
	sentAt    time.Time
	rec       journey.Record
}

type bodyMode uint8

const (
	bodyNone bodyMode = iota
	bodyLength
	bodyChunked
	bodyEOF // until the upstream closes
)

const (
	inSize   = 4 << 10
	readSize = 64 << 10
)

func newExchange() *exchange {
	return &exchange{
		in: make([]byte, inSize), rbuf: make([]byte, readSize),
		uout: make([]byte, 0, 1024), cout: make([]byte, 0, 1024),
		req:  head{fields: make([]field, 0, 32)},
		resp: head{fields: make([]field, 0, 32)},
	}
}

// clear readies x for another connection, keeping its buffers.
func (x *exchange) clear() {
	x.c, x.up, x.plain, x.host, x.gen = nil, nil, nil, nil, nil
	x.inOff, x.inN = 0, 0
	if len(x.in) > inSize {
		x.in = make([]byte, inSize) // a large head does not stay pinned
	}
	x.next()
}

// next readies x for the connection's next request, keeping unread bytes.
func (x *exchange) next() {
	if x.file != nil {
		x.file.Close()
		x.file = nil
	}
	// A file cut short (the client left) leaves fileLeft behind: the next
	// answer on this exchange would wait for a file that is not there.
	x.fileOff, x.fileLeft = 0, 0
	x.rOff, x.rN, x.bodyLeft, x.respLeft = 0, 0, 0, 0
	x.mode, x.chunks = bodyNone, chunkScanner{}
	x.upEOF, x.reusable, x.closeAfter, x.headOnly, x.replayable, x.idempotent = false, false, false, false, false, false
	x.uout, x.cout, x.upPend, x.cPend = x.uout[:0], x.cout[:0], nil, nil
	x.upPath = ""
	x.dialFails, x.bodyCut = 0, false
	x.rec = journey.Record{}
}

func (c *conn) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP) != 0 {
		c.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		c.rdhup = true
	}
	if ev&unix.EPOLLOUT != 0 {
		c.writable = true
	}
	if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.readable, c.writable, c.hup = true, true, true
	}
	if ev&unix.EPOLLRDHUP != 0 && c.phase != phHead && !c.hup && c.peekEOF() {
		// The client closed its side while its request is served: it is
		// gone, as nginx takes it, unless it sent more first.
		c.hup = true
	}
	c.advance()
}

// peekEOF reports whether nothing but the end of the stream is left to read.
func (c *conn) peekEOF() bool {
	var b [1]byte
	n, _, err := unix.Recvfrom(c.fd, b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	return n == 0 && err == nil
}

// advance moves the connection on as far as its sockets allow.
func (c *conn) advance() {
	for c.fd >= 0 {
		if c.hup && c.phase != phHead {
			c.abort()
			return
		}
		var more bool
		switch c.phase {
		case phHead:
			more = c.readHead()
		case phConnect:
			more = c.x.connect()
		case phSend:
			more = c.x.send()
		case phWait:
			more = c.x.waitHead()
		case phRelay:
			more = c.x.relay()
		case phLinger:
			more = c.drain()
		}
		if !more {
			return
		}
	}
}

// readHead reads until a request head is complete, then routes it.
func (c *conn) readHead() bool {
	o := &c.l.e.opts
	for {
		x := c.x
		if x != nil && x.inN > x.inOff {
			switch err := parseRequest(x.in[x.inOff:x.inN], &x.req); err {
			case nil:
				return c.route()
			case errForeign:
				c.handoff()
				return false
			}
		}
		if !c.canRead() {
			if x != nil && x.inN == x.inOff {
				c.l.putExchange(x)
				c.x = nil
			}
			return false
		}
		if x == nil {
			x = c.l.getExchange()
			x.c, c.x = c, x
		}
		if x.inOff > 0 {
			x.inN = copy(x.in, x.in[x.inOff:x.inN])
			x.inOff = 0
		}
		if x.inN == len(x.in) {
			if len(x.in) >= o.MaxHeaderBytes {
				c.handoff() // the full server answers 431
				return false
			}
			grown := make([]byte, min(2*len(x.in), o.MaxHeaderBytes))
			copy(grown, x.in[:x.inN])
			x.in = grown
		}
		n, err := c.readClient(x.in[x.inN:])
		switch {
		case n > 0:
			if x.inN == 0 {
				c.deadline = c.l.now + int64(o.ReadHeaderTimeout)
			}
			x.inN += n
		case err == unix.EAGAIN, err == unix.EINTR:
		default:
			c.close() // EOF or error between requests: a normal end
			return false
		}
	}
}

// route decides who answers the parsed request: the loop for a plain
// proxy route or a small static file, else the full server.
func (c *conn) route() bool {
	x := c.x
	var g *Gen
	if f := c.l.e.opts.Gen; f != nil {
		g = f()
	}
	if g == nil || g.Full != nil && g.Full() {
		c.handoff()
		return false
	}
	b := x.in[x.inOff:x.inN]
	r := &x.req
	hostB, pathB := r.host.of(b), r.path.of(b)
	site, rt := g.Table.Direct(unsafeString(hostB), unsafeString(pathB), c.tls != nil)
	if rt == nil {
		c.handoff()
		return false
	}
	method := r.method.of(b)
	x.headOnly = string(method) == "HEAD"
	var plain *proxy.Plain
	var file *static.Handler
	switch h := rt.Handler.(type) {
	case *proxy.Handler:
		plain = h.Plain()
		if plain != nil && (plain.ClientIP.Trusts(c.peer.Addr()) || rt.MaxBody() > 0 && r.contentLength > rt.MaxBody()) {
			plain = nil
		}
	case *static.Handler:
		if (x.headOnly || string(method) == "GET") && r.contentLength <= 0 && !r.conditional && r.acceptEncodings <= 1 {
			file = h
		}
	}
	if plain == nil && file == nil {
		c.handoff()
		return false
	}
	if string(hostB) != c.lastHost {
		c.lastHost = string(hostB)
	}
	if string(pathB) != c.lastPath {
		c.lastPath = string(pathB)
	}
	x.upPath = rt.UpstreamPath(c.lastPath)
	if file != nil {
		fields, body, f, size, ok := file.Plain(x.upPath, unsafeString(r.acceptEncoding.of(b)))
		if !ok {
			c.handoff()
			return false
		}
		if f != nil {
			if x.headOnly {
				f.Close()
			} else {
				x.file, x.fileLeft, x.fileOff = f, size, 0
			}
		}
		x.startRecord(g, site.Name, rt, method)
		x.inOff += r.size
		x.closeAfter = r.close || c.l.e.draining.Load()
		x.answer(200, fields, body)
		c.l.e.countServed()
		return true
	}
	x.plain = plain
	x.idempotent = idempotent(method)
	x.host = plain.Pool.Pick(c.peer.Addr())
	if _, ok := x.host.DialAddr(); !ok {
		c.handoff() // the upstream's name has not resolved yet
		return false
	}
	x.startRecord(g, site.Name, rt, method)
	x.rec.ProxyHeaders = plain.Describe
	x.headOff = x.inOff
	x.buildRequest()
	if e := plain.ResponseHeaders; e != nil {
		x.respEdits = e.AppendFields(x.respEdits[:0], (*source)(x))
		x.editsDate = e.Sets("Date")
	}
	// The buffered part of the body goes with the head.
	x.inOff += r.size
	take := min(r.contentLength, int64(x.inN-x.inOff))
	if take > 0 {
		x.uout = append(x.uout, x.in[x.inOff:x.inOff+int(take)]...)
		x.inOff += int(take)
	}
	x.bodyLeft = max(r.contentLength, 0) - max(take, 0)
	x.replayable = x.bodyLeft == 0
	x.closeAfter = r.close
	c.phase = phConnect
	c.l.e.countServed()
	return true
}

// startRecord opens the request's journey record.
func (x *exchange) startRecord(g *Gen, site string, rt *route.Route, method []byte) {
	c := x.c
	x.gen = g
	x.rec = journey.Record{
		Start: time.Now(), Local: c.local, Peer: c.peer, Client: c.peer.Addr(),
		Firewall: c.verdict, Method: methodString(method), Host: c.lastHost, Path: c.lastPath,
		Site: site, Route: rt.Pattern, Handler: rt.Kind, NoLog: rt.NoLog,
		TLS: c.tlsInfo.version, TLSCipher: c.tlsInfo.cipher, ALPN: c.tlsInfo.alpn, SNI: c.tlsInfo.sni,
	}
}

// answer sends a whole response the loop made itself: status, fields
// (wire bytes), Date, and body (left out for HEAD).
func (x *exchange) answer(status int, fields, body []byte) {
	out := append(x.cout[:0], statusLine(status)...)
	out = append(out, fields...)
	out = append(out, x.c.l.dateLine()...)
	if x.closeAfter {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	if !x.headOnly {
		out = append(out, body...)
		x.rec.Bytes = int64(len(body))
	}
	x.resp.reset()
	x.resp.status = status
	x.mode = bodyNone
	x.cout, x.cPend = out, out
	x.c.phase = phRelay
	x.c.deadline = x.c.l.now + int64(x.c.l.e.opts.IdleTimeout)
}

// buildRequest writes the upstream request head into uout: the client's
// fields minus hop-by-hop ones and what it claimed about earlier hops,
// then Host and the X-Forwarded-* fields the edge vouches for.
func (x *exchange) buildRequest() {
	b := x.in[x.headOff:x.inN]
	r := &x.req
	client := x.c.peer.Addr()
	out := x.uout[:0]
	out = append(out, r.method.of(b)...)
	out = append(out, ' ')
	out = append(out, x.host.Prefix()...)
	out = append(out, x.upPath...)
	out = append(out, b[r.path.end:r.target.end]...) // the query
	out = append(out, " HTTP/1.1\r\nHost: "...)
	switch {
	case x.plain.HostName != "":
		out = append(out, x.plain.HostName...)
	case x.plain.HostUpstream:
		out = append(out, x.host.Addr()...)
	default:
		out = append(out, r.host.of(b)...)
	}
	out = append(out, "\r\n"...)
	edits := x.plain.Headers
	for i := range r.fields {
		f := &r.fields[i]
		if f.kind == fieldHost || f.kind == fieldForwarded || r.hopByHop(b, f) ||
			edits != nil && edits.Drops(unsafeString(f.name.of(b))) {
			continue
		}
		out = append(out, f.name.of(b)...)
		out = append(out, ": "...)
		out = append(out, f.value.of(b)...)
		out = append(out, "\r\n"...)
	}
	if edits == nil {
		out = append(out, "X-Forwarded-For: "...)
		out = client.AppendTo(out)
		out = append(out, "\r\nX-Forwarded-Host: "...)
		out = append(out, r.host.of(b)...)
		if x.c.tls != nil {
			out = append(out, "\r\nX-Forwarded-Proto: https\r\nX-Real-Ip: "...)
		} else {
			out = append(out, "\r\nX-Forwarded-Proto: http\r\nX-Real-Ip: "...)
		}
		out = client.AppendTo(out)
		out = append(out, "\r\n\r\n"...)
		x.uout = out
		return
	}
	// With edits, each field the edge adds may be removed or replaced.
	scheme := "http"
	if x.c.tls != nil {
		scheme = "https"
	}
	for _, f := range [...]struct{ name, value string }{
		{"X-Forwarded-For", ""}, {"X-Forwarded-Host", unsafeString(r.host.of(b))},
		{"X-Forwarded-Proto", scheme}, {"X-Real-Ip", ""},
	} {
		if edits.Drops(f.name) {
			continue
		}
		out = append(append(out, f.name...), ": "...)
		if f.value == "" {
			out = client.AppendTo(out)
		} else {
			out = append(out, f.value...)
		}
		out = append(out, "\r\n"...)
	}
	out = edits.AppendFields(out, (*source)(x))
	out = append(out, "\r\n"...)
	x.uout = out
}

// connect takes a pooled upstream connection or dials one.
func (x *exchange) connect() bool {
	c := x.c
	if x.up == nil {
		addr, ok := x.host.DialAddr()
		x.dialAddr = addr
		x.rec.Upstream = x.host.Name()
		x.rec.Tries++
		if !ok {
			// Not a refusal: the host is not marked down for it.
			return x.upstreamFailed(errNotResolved)
		}
		if u := c.l.takeIdle(addr); u != nil {
			x.attach(u)
			return true
		}
		u, err := c.l.dial(addr)
		if err != nil {
			return x.upstreamFailed(dialError(addr, err))
		}
		u.x = x
		x.up = u
		x.host.Begin()
		d := x.plain.Pool.Options().DialTimeout
		if d <= 0 {
			d = 10 * time.Second
		}
		if x.dialFails+1 < x.host.Addrs() {
			// Another address is left: one that does not answer soon is
			// given up for it, as net/http's dialer falls back after
			// 300 ms.
			d = min(d, addrFallback)
		}
		c.deadline = c.l.now + int64(d)
	}
	u := x.up
	if !u.writable && !u.readable {
		return false
	}
	if errno, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || errno != 0 {
		if err == nil {
			err = unix.Errno(errno)
		}
		return x.upstreamFailed(dialError(u.addr, err))
	}
	x.upPend = x.uout
	c.phase = phSend
	c.deadline = c.l.now + int64(c.l.e.opts.IdleTimeout)
	return true
}

func (x *exchange) attach(u *upConn) {
	u.x = x
	x.up = u
	x.host.Begin()
	x.upPend = x.uout
	x.c.phase = phSend
	x.c.deadline = x.c.l.now + int64(x.c.l.e.opts.IdleTimeout)
}

// send writes the request upstream, streaming a body the client is still
// sending, until it has all gone or the upstream starts answering. An
// answer that comes before the whole body (a 413, a 401, or a response
// streamed while the body is read) is heard at once, and the body goes on
// being forwarded while it is relayed — full duplex, as net/http's
// Transport does it — until the upstream stops taking it.
func (x *exchange) send() bool {
	if !x.pump() {
		return false // the client left
	}
	if x.sending() && !x.up.readable {
		return false
	}
	return x.awaitAnswer()
}

// sending reports whether part of the request is still to go upstream.
func (x *exchange) sending() bool {
	return !x.bodyCut && (len(x.upPend) > 0 || x.bodyLeft > 0)
}

// pump moves the request body from the client to the upstream as far as
// both sockets allow. It returns false when the client left in the middle
// of its body (the connection is aborted). An upstream that stops taking
// the body ends the pumping (bodyCut); what it answered is read next.
func (x *exchange) pump() bool {
	c, u := x.c, x.up
	for x.sending() {
		if len(x.upPend) > 0 {
			if !u.writable {
				return true
			}
			n, err := sockio.Write(u.fd, x.upPend)
			switch {
			case n > 0:
				x.upPend = x.upPend[n:]
				if len(x.upPend) > 0 {
					u.writable = false
				}
				if c.phase != phWait { // the header timeout runs on
					c.deadline = c.l.now + int64(c.l.e.opts.IdleTimeout)
				}
			case err == unix.EAGAIN:
				u.writable = false
				return true
			case err == unix.EINTR:
			default:
				// The upstream stopped reading; it may have answered
				// before it did, so that is read next.
				x.bodyCut = true
				u.readable = true
			}
			continue
		}
		if !c.canRead() {
			return true
		}
		// Everything buffered was body, so the buffer is free.
		n, err := c.readClient(x.in)
		switch {
		case n > 0:
			take := int(min(int64(n), x.bodyLeft))
			x.upPend = x.in[:take]
			x.inOff, x.inN = take, n // anything after is the next request
			x.bodyLeft -= int64(take)
		case err == unix.EAGAIN:
			return true
		case err == unix.EINTR:
		default:
			c.abort() // the client left in the middle of its body
			return false
		}
	}
	return true
}

// awaitAnswer moves to reading the response head, under the header
// timeout. When the request was not sent whole (an early answer), the
// upstream connection is not reused after it, and the client's is closed
// when its body had not all come when the answer began (startResponse,
// finish and upstreamFailed see to both).
func (x *exchange) awaitAnswer() bool {
	c := x.c
	x.sentAt = time.Now()
	c.phase = phWait
	if t := x.plain.Pool.Options().HeaderTimeout; t > 0 {
		c.deadline = c.l.now + int64(t)
	} else {
		c.deadline = 0
	}
	return true
}

// waitHead reads the response head; interim (1xx) heads are passed on.
func (x *exchange) waitHead() bool {
	u := x.up
	if x.sending() && !x.pump() {
		return false
	}
	for {
		if x.rN > x.rOff {
			err := parseResponse(x.rbuf[x.rOff:x.rN], &x.resp)
			if err == nil {
				if s := x.resp.status; s < 200 {
					if s == 101 {
						return x.upstreamFailed(errBadResponse) // no Upgrade was asked for
					}
					x.cout = x.appendHead(x.cout, x.rbuf[x.rOff:x.rN], false)
					x.rOff += x.resp.size
					continue
				}
				return x.startResponse()
			}
			if err != errIncomplete {
				return x.upstreamFailed(err)
			}
			if x.rN == len(x.rbuf) {
				if x.rOff == 0 {
					return x.upstreamFailed(errBadResponse) // a head larger than the buffer
				}
				x.rN = copy(x.rbuf, x.rbuf[x.rOff:x.rN])
				x.rOff = 0
			}
		}
		if !u.readable {
			return false
		}
		n, err := sockio.Read(u.fd, x.rbuf[x.rN:])
		switch {
		case n > 0:
			if n < len(x.rbuf)-x.rN && !u.rdhup {
				u.readable = false
			}
			x.rN += n
		case err == unix.EAGAIN:
			u.readable = false
			return false
		case err == unix.EINTR:
		default:
			if err == nil {
				err = errUpstreamClosed
			}
			return x.upstreamFailed(err)
		}
	}
}

// addrFallback is how long a connection to one of a name's addresses may
// take before the next address is tried.
const addrFallback = 300 * time.Millisecond

var (
	errUpstreamClosed = errors.New("the upstream closed the connection before answering")
	errNotResolved    = errors.New("the upstream's name has not resolved yet")
)

// startResponse sends the response head and what body came with it.
func (x *exchange) startResponse() bool {
	c, r := x.c, &x.resp
	x.rec.UpstreamTime = time.Since(x.sentAt)
	x.rec.UpstreamStatus = r.status
	x.host.MarkUp()
	switch {
	case x.headOnly || r.status == 204 || r.status == 304:
		x.mode = bodyNone
	case r.chunked:
		x.mode = bodyChunked
	case r.contentLength >= 0:
		x.mode, x.respLeft = bodyLength, r.contentLength
	default:
		x.mode = bodyEOF
		x.closeAfter = true // the only way the client can tell the end
	}
	x.reusable = !r.close && x.mode != bodyEOF
	if x.bodyLeft > 0 || c.l.e.draining.Load() {
		x.closeAfter = true // the body may not all come before the answer ends
	}
	b := x.rbuf[x.rOff:x.rN]
	x.cout = x.appendHead(x.cout, b, true)
	rest := b[r.size:]
	k, err := x.take(rest)
	if err != nil {
		c.abort()
		return false
	}
	if k < len(rest) {
		x.reusable = false // bytes beyond the response: do not trust the connection
	}
	x.cout = append(x.cout, rest[:k]...)
	x.rec.Bytes = int64(k)
	x.rOff, x.rN = 0, 0
	x.cPend = x.cout
	c.phase = phRelay
	c.deadline = c.l.now + int64(c.l.e.opts.IdleTimeout)
	return true
}

// appendHead writes a response head for the client: the upstream's status
// and fields without hop-by-hop ones, Date when missing, and
// Connection: close when the connection ends after it.
func (x *exchange) appendHead(out, b []byte, final bool) []byte {
	r := &x.resp
	var edits *proxy.HeaderOps
	if final {
		edits = x.plain.ResponseHeaders
	}
	out = append(out, statusLine(r.status)...)
	hasDate := r.hasDate
	for i := range r.fields {
		f := &r.fields[i]
		if r.hopByHop(b, f) || f.kind == fieldContentLength && r.chunked {
			continue
		}
		if edits != nil && edits.Drops(unsafeString(f.name.of(b))) {
			if f.kind == fieldDate {
				hasDate = false
			}
			continue
		}
		out = append(out, f.name.of(b)...)
		out = append(out, ": "...)
		out = append(out, f.value.of(b)...)
		out = append(out, "\r\n"...)
	}
	if final {
		if edits != nil {
			// Filled when the request came: its head is gone by now.
			out = append(out, x.respEdits...)
			hasDate = hasDate || x.editsDate
		}
		if !hasDate {
			out = append(out, x.c.l.dateLine()...)
		}
		if x.closeAfter {
			out = append(out, "Connection: close\r\n"...)
		}
	}
	return append(out, "\r\n"...)
}

// take returns how many bytes of b belong to the response body.
func (x *exchange) take(b []byte) (int, error) {
	switch x.mode {
	case bodyLength:
		k := int(min(int64(len(b)), x.respLeft))
		x.respLeft -= int64(k)
		return k, nil
	case bodyChunked:
		return x.chunks.scan(b)
	case bodyEOF:
		return len(b), nil
	}
	return 0, nil
}

func (x *exchange) bodyDone() bool {
	switch x.mode {
	case bodyLength:
		return x.respLeft == 0
	case bodyChunked:
		return x.chunks.done()
	case bodyEOF:
		return x.upEOF
	}
	return true
}

// relay writes what is pending to the client and reads more of the body,
// never reading faster than the client takes it.
func (x *exchange) relay() bool {
	c := x.c
	for {
		if x.sending() && !x.pump() {
			return false
		}
		for len(x.cPend) > 0 {
			n, err := c.writeClient(x.cPend)
			switch {
			case n > 0:
				x.cPend = x.cPend[n:]
				c.deadline = c.l.now + int64(c.l.e.opts.IdleTimeout)
			case err == unix.EAGAIN:
				return false
			case err == unix.EINTR:
			default:
				c.abort()
				return false
			}
		}
		if !c.flushed() {
			return false
		}
		if c.hup {
			c.abort() // a write failed: the client is gone
			return false
		}
		if x.fileLeft > 0 {
			if more := x.sendFile(); !more {
				return false
			}
			continue
		}
		if x.bodyDone() {
			return x.finish()
		}
		u := x.up
		if u == nil || !u.readable {
			return false
		}
		n, err := sockio.Read(u.fd, x.rbuf)
		switch {
		case n > 0:
			if n < len(x.rbuf) && !u.rdhup {
				u.readable = false
			}
			k, err := x.take(x.rbuf[:n])
			if err != nil {
				c.abort()
				return false
			}
			if k < n {
				x.reusable = false
			}
			x.cPend = x.rbuf[:k]
			x.rec.Bytes += int64(k)
		case err == unix.EAGAIN:
			u.readable = false
			return false
		case err == unix.EINTR:
		case n == 0 && err == nil && x.mode == bodyEOF:
			x.upEOF = true
		default:
			c.abort() // the upstream broke off in the middle of the body
			return false
		}
	}
}

// sendFile sends the next part of a static file: by sendfile on plain
// connections, through TLS from a lent buffer otherwise. It returns false
// when the loop must wait (or the connection ended).
func (x *exchange) sendFile() bool {
	c := x.c
	if c.tls == nil {
		if !c.writable {
			return false
		}
		// With the runtime's bookkeeping: a file not in the page cache is
		// read from disk meanwhile, and the processor must not be held.
		n, err := unix.Sendfile(c.fd, int(x.file.Fd()), &x.fileOff, int(min(x.fileLeft, 1<<20)))
		switch {
		case n > 0:
			x.fileLeft -= int64(n)
			x.rec.Bytes += int64(n)
			c.deadline = c.l.now + int64(c.l.e.opts.IdleTimeout)
			return true
		case err == unix.EAGAIN:
			c.writable = false
			return false
		case err == unix.EINTR:
			return true
		}
		c.abort() // the client left, or the file shrank under us
		return false
	}
	buf := c.l.getBuf()
	defer c.l.putBuf(buf)
	n, err := unix.Pread(int(x.file.Fd()), buf[:min(int64(len(buf)), x.fileLeft)], x.fileOff)
	if n <= 0 || err != nil {
		c.abort()
		return false
	}
	switch _, err := c.writeClient(buf[:n]); err {
	case nil:
	case unix.EAGAIN:
		return false // nothing taken: read again when the socket drains
	default:
		c.abort()
		return false
	}
	x.fileOff += int64(n)
	x.fileLeft -= int64(n)
	x.rec.Bytes += int64(n)
	return true
}

// finish ends the exchange: the upstream connection goes back to the pool,
// the record to the access log, and the client connection on to its next
// request or closed.
func (x *exchange) finish() bool {
	c := x.c
	x.releaseUpstream(x.reusable && !x.bodyCut && len(x.upPend) == 0 && x.bodyLeft == 0)
	x.rec.Status = x.resp.status
	x.record()
	c.served++
	if x.closeAfter {
		if x.bodyLeft > 0 {
			c.linger()
		} else {
			c.close()
		}
		return false
	}
	c.phase = phHead
	c.idleSince = c.l.now
	c.deadline = c.l.now + int64(c.l.e.opts.IdleTimeout)
	x.next()
	return true
}

func (x *exchange) releaseUpstream(reuse bool) {
	u := x.up
	if u == nil {
		return
	}
	x.up = nil
	x.host.End()
	if reuse && u.fd >= 0 {
		o := x.plain.Pool.Options()
		u.release(o.MaxIdle, o.IdleTimeout)
		return
	}
	u.closeFd()
	u.x = nil
}

// upstreamFailed retries when that is safe, else answers 502 or 504.
func (x *exchange) upstreamFailed(err error) bool {
	c := x.c
	reused := x.up != nil && x.up.reused
	x.releaseUpstream(false)
	var op *net.OpError
	dial := errors.As(err, &op) && op.Op == "dial"
	nextAddr := false // the host's name has another address to try
	if dial {
		x.dialFails++
		if nextAddr = x.dialFails < x.host.DialFailed(x.dialAddr); !nextAddr {
			x.host.MarkDown()
		}
	}
	// A failed dial sent nothing: the request goes to another address or
	// host whatever its body (what came with the head is still in x.in,
	// the rest still in the client's socket). A pooled connection the
	// upstream had closed may have taken part of it: only a request held
	// whole goes again.
	retry := x.rec.Tries < 3 &&
		(nextAddr || dial && x.rec.Tries < len(x.plain.Pool.Hosts) ||
			x.replayable && reused && x.idempotent && x.rN == 0 && !errors.Is(err, os.ErrDeadlineExceeded))
	if retry {
		if dial && !nextAddr {
			x.dialFails = 0
			x.host = x.plain.Pool.Pick(c.peer.Addr())
			x.buildRequest()
			x.uout = append(x.uout, x.in[x.headOff+x.req.size:x.inOff]...)
		}
		x.rOff, x.rN, x.bodyCut = 0, 0, false
		c.phase = phConnect
		return true
	}
	status, body := x.plain.Handler.Failed(&x.rec, x.rec.Method, x.rec.Host, x.rec.Path, &upstream.Error{Upstream: x.host.Name(), Err: err})
	// Nothing more goes upstream (upPend may point into uout, rewritten
	// below); the rest of the body is dropped by the lingering close.
	x.upPend, x.bodyCut = nil, true
	if x.bodyLeft > 0 {
		x.closeAfter = true // the rest of the body would be taken for a request
	}
	fields := append(x.uout[:0], "Content-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	fields = strconv.AppendInt(fields, int64(len(body)), 10)
	fields = append(fields, "\r\n"...)
	x.uout = fields
	x.answer(status, fields, body)
	return true
}

func dialError(addr netip.AddrPort, err error) error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(addr), Err: os.NewSyscallError("connect", err)}
}

// tick enforces the connection's deadline and, while the engine drains,
// closes it when idle. Connections that never sent a request get five
// seconds to do so, as net/http gives them.
func (c *conn) tick(draining bool) {
	now := c.l.now
	if c.deadline != 0 && now > c.deadline {
		switch c.phase {
		case phConnect:
			c.x.upstreamFailed(&net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(c.x.dialAddr), Err: os.ErrDeadlineExceeded})
			c.advance()
		case phWait:
			c.x.upstreamFailed(os.ErrDeadlineExceeded)
			c.advance()
		case phHead:
			c.close()
		default:
			c.abort()
		}
		return
	}
	if draining && c.phase == phHead && (c.x == nil || c.x.inN == c.x.inOff) &&
		(c.served > 0 || now-c.idleSince > int64(5*time.Second)) {
		c.close()
	}
}

// linger closes the connection for writing after an answer sent before the
// client's body was read, and then reads and drops what the client still
// sends until it closes too or lingerTime passes. Closing at once would
// make the kernel answer the unread bytes with a reset, and a reset
// destroys the answer before the client reads it.
func (c *conn) linger() {
	flushed := true
	if c.tls != nil {
		c.tls.CloseWrite()
		flushed = c.flushTLS()
	}
	if flushed { // else the close_notify waits in the buffer; close sends a FIN
		unix.Shutdown(c.fd, unix.SHUT_WR)
	}
	if x := c.x; x != nil {
		x.releaseUpstream(false)
		c.l.putExchange(x)
		c.x = nil
	}
	c.phase = phLinger
	c.deadline = c.l.now + int64(lingerTime)
	c.readable = true
	c.drain()
}

// drain reads and drops what a lingering client sends, up to a megabyte
// per turn so that a fast sender does not hold the loop.
func (c *conn) drain() bool {
	buf := c.l.getBuf()
	defer c.l.putBuf(buf)
	for budget := 1 << 20; c.readable && budget > 0; budget -= len(buf) {
		n, err := sockio.Read(c.fd, buf)
		switch {
		case n > 0:
			if n < len(buf) && !c.rdhup {
				c.readable = false // drained: the next data brings a new edge
			}
		case err == unix.EAGAIN:
			c.readable = false
		case err == unix.EINTR:
		default:
			c.close() // the client closed (or reset) its side: done
			return false
		}
	}
	return false
}

// abort ends a connection in the middle of an exchange: the client left,
// the upstream broke off, or time ran out.
func (c *conn) abort() {
	if x := c.x; x != nil && c.phase != phHead {
		if x.rec.Status == 0 {
			x.rec.Status = 499 // nginx's "client closed request"
			if x.resp.status != 0 {
				x.rec.Status = x.resp.status
			}
		}
		if x.rec.UpstreamErr == "" && c.hup {
			x.rec.UpstreamErr = "client closed the connection"
		}
		x.releaseUpstream(false)
		x.record()
	}
	c.close()
}

// record hands the request's record on (access log, metrics, ring).
func (x *exchange) record() {
	if x.mode == bodyChunked {
		x.rec.Bytes = x.chunks.data // the body, as net/http counts it, not its framing
	}
	x.rec.Duration = time.Since(x.rec.Start)
	x.gen.Finish(&x.rec)
}

// close closes the client connection.
func (c *conn) close() {
	if c.fd < 0 {
		return
	}
	l := c.l
	if c.tls != nil {
		c.tls.CloseWrite() // close_notify, sent if the socket takes it now
		c.flushTLS()
		if s := c.sock; s.buf != nil {
			// The last ciphertext read, which a connection closed after
			// its answer never comes back for.
			l.putBuf(s.buf)
			s.buf, s.in = nil, nil
		}
		if s := c.sock; s.out != nil {
			l.putBuf(s.out) // what the socket would not take: dropped
			s.out, s.outOff = nil, 0
		}
	}
	l.closeFd(c.fd)
	c.fd = -1
	c.detach()
	c.owner.Close() // ends its count with the firewall; the socket is already closed
	if f := l.e.opts.ConnState; f != nil {
		f(c.owner, http.StateClosed)
	}
	l.e.conns.Add(-1)
}

// closeUnqueued closes a connection no loop took: the engine stopped
// while it was on its way to one.
func (c *conn) closeUnqueued(e *Engine) {
	if c.fd >= 0 {
		unix.Close(c.fd)
		c.fd = -1
	}
	c.owner.Close()
	if f := e.opts.ConnState; f != nil {
		f(c.owner, http.StateClosed)
	}
	e.conns.Add(-1)
}

// detach takes c off the loop's list and gives back its exchange.
func (c *conn) detach() {
	l := c.l
	last := len(l.conns) - 1
	l.conns[c.slot] = l.conns[last]
	l.conns[c.slot].slot = c.slot
	l.conns[last] = nil
	l.conns = l.conns[:last]
	if x := c.x; x != nil {
		x.releaseUpstream(false)
		l.putExchange(x)
		c.x = nil
	}
}

// handoff gives the connection, with every byte read so far, to the full
// server.
func (c *conn) handoff() {
	l := c.l
	var pending []byte
	if x := c.x; x != nil {
		pending = bytes.Clone(x.in[x.inOff:x.inN])
	}
	l.forget(c.fd)
	nc, err := toNetConn(c.fd)
	c.fd = -1
	c.detach()
	h := &handed{Conn: nc, pending: pending, owner: c.owner, verdict: c.verdict}
	if c.tls != nil && err == nil {
		// The session goes on over the new socket; what TLS had not
		// taken yet, and what it had not sent, go first.
		c.sock.attach(nc)
		h.Conn, h.tls = c.tls, &c.tlsInfo.state
	}
	// Counted out only once delivered, so Shutdown does not close the
	// fallback listener under it.
	defer l.e.conns.Add(-1)
	cs := l.e.opts.ConnState
	if err != nil {
		c.owner.Close()
		if cs != nil {
			cs(c.owner, http.StateClosed)
		}
		return
	}
	if cs != nil {
		cs(c.owner, http.StateHijacked)
	}
	l.e.countHanded()
	l.e.fallback.deliver(h)
}

// statusLines are "HTTP/1.1 200 OK\r\n" and so on, with net/http's texts.
var statusLines = func() (t [600][]byte) {
	for code := 100; code < 600; code++ {
		text := http.StatusText(code)
		if text == "" {
			text = "status code " + strconv.Itoa(code)
		}
		t[code] = []byte("HTTP/1.1 " + strconv.Itoa(code) + " " + text + "\r\n")
	}
	return
}()

func statusLine(code int) []byte { return statusLines[code] }

func idempotent(m []byte) bool {
	switch string(m) {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}

// methodString returns the method as a string, without allocating for the
// standard ones.
func methodString(m []byte) string {
	switch string(m) {
	case "GET":
		return http.MethodGet
	case "HEAD":
		return http.MethodHead
	case "POST":
		return http.MethodPost
	case "PUT":
		return http.MethodPut
	case "PATCH":
		return http.MethodPatch
	case "DELETE":
		return http.MethodDelete
	case "OPTIONS":
		return http.MethodOptions
	}
	return string(m)
}

// unsafeString views b as a string for a lookup that does not keep it.
func unsafeString(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// source is an exchange as header edits read it: the request as the
// client sent it, with the path the route hands on (placeholder.Source).
type source exchange

func (s *source) Host() string         { return s.c.lastHost }
func (s *source) ClientIP() netip.Addr { return s.c.peer.Addr() }
func (s *source) TLS() bool            { return s.c.tls != nil }
func (s *source) TLSVersion() string   { return s.c.tlsInfo.version }
func (s *source) Method() string       { return s.rec.Method }
func (s *source) EscapedPath() string  { return s.upPath }

func (s *source) RawQuery() string {
	r := &s.req
	q := s.in[s.headOff:s.inN][r.path.end:r.target.end]
	if len(q) > 0 {
		q = q[1:] // the '?'
	}
	return unsafeString(q)
}

func (s *source) Header(name string) string {
	b := s.in[s.headOff:s.inN]
	for i := range s.req.fields {
		// Host is not among net/http's header fields either.
		if f := &s.req.fields[i]; f.kind != fieldHost && strings.EqualFold(unsafeString(f.name.of(b)), name) {
			return unsafeString(f.value.of(b))
		}
	}
	return ""
}

func (s *source) Journey() *journey.Record { return &s.rec }
