package h1

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"time"

	"golang.org/x/sys/unix"

	"gatehouse/internal/sockio"
	"gatehouse/internal/tlsterm"
)

// TLS connections: the handshake runs on a goroutine over the accepted
// connection, as net/http runs it. A client that chose HTTP/2 (or anything
// but HTTP/1.1) is handed to the full server then; an HTTP/1.1 one moves to
// a loop, where crypto/tls reads and writes the loop's buffers through a
// tlsSocket instead of the socket itself.

// tlsSocket is what a server-side tls.Conn reads and writes: the accepted
// connection while handshaking on a goroutine (and again once handed to the
// full server), the loop's buffers while on a loop.
type tlsSocket struct {
	// Conn is the socket, read and written with raw system calls
	// (sockio.Conn) as the loops do; nil while on a loop.
	net.Conn
	l      *loop
	local  net.Addr
	remote net.Addr
	// in is ciphertext the loop read and TLS has not taken yet, in a
	// buffer lent by the loop (buf); out[outOff:] is ciphertext TLS wrote
	// and the socket has not taken yet. Both go back to the loop when
	// emptied, so an idle session holds no buffer.
	in, out []byte
	buf     []byte
	outOff  int
	verdict string
}

// errWouldBlock tells crypto/tls that no more ciphertext is there yet. It
// is a temporary net.Error, which crypto/tls returns without failing the
// connection, so the read resumes when the loop has more.
var errWouldBlock = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "no data yet" }
func (wouldBlock) Timeout() bool   { return false }
func (wouldBlock) Temporary() bool { return true }

func (s *tlsSocket) Read(p []byte) (int, error) {
	if len(s.in) > 0 {
		n := copy(p, s.in)
		s.in = s.in[n:]
		return n, nil
	}
	if s.Conn == nil {
		return 0, errWouldBlock
	}
	return s.Conn.Read(p)
}

func (s *tlsSocket) Write(p []byte) (int, error) {
	if s.Conn == nil {
		if s.out == nil {
			s.out = s.l.getBuf()[:0]
		}
		s.out = append(s.out, p...)
		return len(p), nil
	}
	if len(s.out) > s.outOff {
		if _, err := s.Conn.Write(s.out[s.outOff:]); err != nil {
			return 0, err
		}
		s.out, s.outOff = nil, 0
	}
	return s.Conn.Write(p)
}

// attach puts the session on nc, a socket in Go's poller.
func (s *tlsSocket) attach(nc net.Conn) { s.Conn = sockio.Wrap(nc) }

func (s *tlsSocket) LocalAddr() net.Addr  { return s.local }
func (s *tlsSocket) RemoteAddr() net.Addr { return s.remote }

func (s *tlsSocket) Close() error {
	if s.Conn == nil {
		return nil
	}
	return s.Conn.Close()
}

// The deadlines are the socket's while it has one; on a loop, the loop's
// timers stand in for them.
func (s *tlsSocket) SetDeadline(t time.Time) error {
	if s.Conn == nil {
		return nil
	}
	return s.Conn.SetDeadline(t)
}

func (s *tlsSocket) SetReadDeadline(t time.Time) error {
	if s.Conn == nil {
		return nil
	}
	return s.Conn.SetReadDeadline(t)
}

func (s *tlsSocket) SetWriteDeadline(t time.Time) error {
	if s.Conn == nil {
		return nil
	}
	return s.Conn.SetWriteDeadline(t)
}

// FirewallVerdict keeps the verdict for the full server's journey.
func (s *tlsSocket) FirewallVerdict() string { return s.verdict }

// handshake runs a TLS handshake on its own goroutine and sends the
// connection where its protocol is served.
func (e *Engine) handshake(nc net.Conn, tcp *net.TCPConn, c *conn) {
	sock := &tlsSocket{verdict: c.verdict, local: nc.LocalAddr(), remote: nc.RemoteAddr()}
	sock.attach(nc)
	tc := tls.Server(sock, e.opts.TLS)
	// The deadline bounds the handshake; a context would cost crypto/tls a
	// goroutine per handshake to watch it.
	if d := e.opts.ReadHeaderTimeout; d > 0 {
		nc.SetDeadline(time.Now().Add(d))
	}
	if err := tc.Handshake(); err != nil {
		if e.opts.HandshakeFailed != nil {
			e.opts.HandshakeFailed(nc.RemoteAddr(), err)
		}
		nc.Close()
		e.gone(nc, http.StateClosed)
		return
	}
	nc.SetDeadline(time.Time{})
	st := tc.ConnectionState()
	fd := -1
	if p := st.NegotiatedProtocol; p == "" || p == "http/1.1" {
		fd = dupSocket(tcp)
	}
	if fd < 0 || e.draining.Load() {
		// HTTP/2, acme-tls/1, or a socket that cannot move: the full
		// server takes the tls.Conn as it is.
		e.countHanded()
		e.fallback.deliver(tc)
		e.gone(nc, http.StateHijacked) // after delivery, so Shutdown waits for it
		return
	}
	tcp.Close()
	sock.Conn = nil
	c.fd, c.tls, c.sock = fd, tc, sock
	c.tlsInfo = tlsInfo{
		version: tlsterm.VersionName(st.Version), cipher: tlsterm.CipherName(st.CipherSuite),
		alpn: st.NegotiatedProtocol, sni: st.ServerName, state: st,
	}
	// What arrived with the handshake may hold the first request.
	c.tlsMore = true
	e.loops[int(e.next.Add(1))%len(e.loops)].enqueue(c)
}

// gone counts out a connection that leaves the engine before a loop saw it.
func (e *Engine) gone(nc net.Conn, s http.ConnState) {
	if e.opts.ConnState != nil {
		e.opts.ConnState(nc, s)
	}
	e.conns.Add(-1)
}

// tlsInfo is what the journey records of a connection's TLS, made once.
type tlsInfo struct {
	version, cipher, alpn, sni string
	state                      tls.ConnectionState
}

// readClient reads request bytes into p: from the socket, or through TLS.
// It returns unix.EAGAIN when the loop must wait for the socket, and n == 0
// with a nil error at the end of the stream.
func (c *conn) readClient(p []byte) (int, error) {
	if c.tls == nil {
		if !c.readable {
			return 0, unix.EAGAIN
		}
		n, err := sockio.Read(c.fd, p)
		switch {
		case n > 0:
			if n < len(p) && !c.rdhup {
				c.readable = false // drained: the next data brings a new edge
			}
			return n, nil
		case err == unix.EAGAIN:
			c.readable = false
		case n == 0 && err == nil:
			return 0, nil
		}
		return 0, err
	}
	for {
		if c.tlsMore || len(c.sock.in) > 0 {
			n, err := c.tls.Read(p)
			if c.sock.out != nil {
				c.flushTLS() // a key update answered
			}
			if n > 0 {
				return n, nil
			}
			if err != errWouldBlock {
				if err == nil {
					continue
				}
				return 0, nil // close_notify, EOF or a bad record: the end
			}
			c.tlsMore = false
		}
		if c.sock.buf != nil && len(c.sock.in) == 0 {
			c.l.putBuf(c.sock.buf)
			c.sock.buf = nil
		}
		if !c.readable {
			return 0, unix.EAGAIN
		}
		if c.sock.buf == nil {
			c.sock.buf = c.l.getBuf()
		}
		n, err := sockio.Read(c.fd, c.sock.buf)
		switch {
		case n > 0:
			if n < len(c.sock.buf) && !c.rdhup {
				c.readable = false
			}
			c.sock.in = c.sock.buf[:n]
			c.tlsMore = true
		case err == unix.EAGAIN:
			c.readable = false
		case err == unix.EINTR:
		default:
			return 0, err
		}
	}
}

// canRead reports whether readClient may have something without waiting.
func (c *conn) canRead() bool {
	return c.readable || c.tls != nil && (c.tlsMore || len(c.sock.in) > 0)
}

// writeClient writes response bytes: to the socket, or through TLS, which
// takes all of p and leaves the ciphertext the socket would not take in
// sock.out.
func (c *conn) writeClient(p []byte) (int, error) {
	if c.tls == nil {
		if !c.writable {
			return 0, unix.EAGAIN
		}
		var n int
		var err error
		if c.x != nil && c.x.fileLeft > 0 {
			// A file follows the head: the head waits for its first
			// bytes instead of leaving as a packet of its own, as
			// nginx's tcp_nopush has it.
			n, err = sockio.WriteMore(c.fd, p)
		} else {
			n, err = sockio.Write(c.fd, p)
		}
		if n > 0 && n < len(p) || err == unix.EAGAIN {
			c.writable = false
		}
		return max(n, 0), err
	}
	if !c.flushTLS() {
		return 0, unix.EAGAIN
	}
	if c.hup {
		return 0, unix.EPIPE
	}
	n, err := c.tls.Write(p)
	if err != nil {
		return n, err
	}
	if c.flushTLS(); c.hup {
		return 0, unix.EPIPE
	}
	return n, nil
}

// flushTLS writes pending ciphertext and reports whether none is left.
func (c *conn) flushTLS() bool {
	s := c.sock
	for len(s.out) > s.outOff {
		if !c.writable {
			return false
		}
		n, err := sockio.Write(c.fd, s.out[s.outOff:])
		switch {
		case n > 0:
			s.outOff += n
			if len(s.out) > s.outOff {
				c.writable = false
			}
		case err == unix.EAGAIN:
			c.writable = false
			return false
		case err == unix.EINTR:
		default:
			s.outOff = len(s.out) // the client is gone; the next write says so
			c.hup = true
		}
	}
	if s.out != nil {
		c.l.putBuf(s.out)
		s.out, s.outOff = nil, 0
	}
	return true
}

// flushed reports whether everything written to the client left.
func (c *conn) flushed() bool {
	return c.tls == nil || c.flushTLS()
}

// tlsState is implemented by connections handed to the full server after
// a TLS handshake on the engine.
type tlsState interface{ TLSState() *tls.ConnectionState }

type tlsStateKey struct{}

// ConnContext remembers, for the full server, the TLS state of a
// connection the engine handed over in the middle of its life (http.Server
// sets Request.TLS only for a *tls.Conn).
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if t, ok := c.(tlsState); ok && t.TLSState() != nil {
		return context.WithValue(ctx, tlsStateKey{}, t.TLSState())
	}
	return ctx
}

// RestoreTLS sets Request.TLS from ConnContext's note.
func RestoreTLS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r.TLS = st
			}
		}
		next.ServeHTTP(w, r)
	})
}
