// Package listen owns the public listening sockets, which outlive config
// generations. A Socket accepts connections in one loop and hands each to
// the Handle attached most recently, so a reload can put a new http.Server
// (new timeouts, new TLS settings) on the same socket without closing it:
// no connection is refused while the old server drains.
package listen

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Socket is one listening TCP socket.
type Socket struct {
	ln  net.Listener
	cur atomic.Pointer[Handle]

	closeOnce sync.Once
	closed    chan struct{}
	done      chan struct{} // the accept loop has returned
}

// Listen opens addr. wrap, when not nil, wraps the raw listener once for the
// socket's whole life (the firewall decides there, before any byte is read).
func Listen(addr string, wrap func(net.Listener) net.Listener) (*Socket, error) {
	lc := net.ListenConfig{KeepAlive: -1, Control: keepAlive}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	if wrap != nil {
		ln = wrap(ln)
	}
	s := &Socket{ln: ln, closed: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s, nil
}

// TCP keep-alive probes for accepted connections, Go's defaults: the first
// after 15 s of silence, then every 15 s, dropping the connection after 9
// unanswered. They find clients that vanished from idle connections and
// long tunnels.
const (
	keepAliveIdle     = 15
	keepAliveInterval = 15
	keepAliveCount    = 9
)

// keepAlive turns keep-alive probes on for the listening socket. Linux
// copies a listener's socket options to each connection it accepts, so
// this is done once rather than with four system calls per connection, as
// Go's listener would.
func keepAlive(_, _ string, rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		for _, o := range [...]struct{ level, opt, v int }{
			{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
			{unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
			{unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
			{unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
		} {
			if err == nil {
				err = unix.SetsockoptInt(int(fd), o.level, o.opt, o.v)
			}
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// Addr is the bound address.
func (s *Socket) Addr() net.Addr { return s.ln.Addr() }

func (s *Socket) loop() {
	defer close(s.done)
	var backoff time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			select {
			case <-s.closed:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || !errors.Is(err, net.ErrClosed) {
				// Out of file descriptors and the like: wait and retry,
				// as net/http's own accept loop does.
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return
		}
		backoff = 0
		s.deliver(c)
	}
}

// deliver hands c to the current handle, following a swap that happens
// while it waits.
func (s *Socket) deliver(c net.Conn) {
	for {
		h := s.cur.Load()
		if h == nil {
			c.Close()
			return
		}
		select {
		case h.ch <- c:
			return
		case <-h.done:
			// Detached while we waited: try the one attached now.
		case <-s.closed:
			c.Close()
			return
		}
	}
}

// Attach returns a listener that receives the socket's connections from
// now on; the previously attached one receives no more (its server can be
// shut down gracefully, which closes only its handle).
func (s *Socket) Attach() *Handle {
	h := &Handle{s: s, ch: make(chan net.Conn), done: make(chan struct{})}
	s.cur.Store(h)
	return h
}

// Close closes the socket itself.
func (s *Socket) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		err = s.ln.Close()
		<-s.done
	})
	return err
}

// Handle is a net.Listener fed by a Socket.
type Handle struct {
	s    *Socket
	ch   chan net.Conn
	once sync.Once
	done chan struct{}
}

// Accept waits for the next connection handed to this handle.
func (h *Handle) Accept() (net.Conn, error) {
	select {
	case c := <-h.ch:
		return c, nil
	case <-h.done:
		return nil, net.ErrClosed
	case <-h.s.closed:
		return nil, net.ErrClosed
	}
}

// Close detaches the handle; the socket stays open.
func (h *Handle) Close() error {
	h.once.Do(func() {
		h.s.cur.CompareAndSwap(h, nil)
		close(h.done)
	})
	return nil
}

// Addr is the socket's address.
func (h *Handle) Addr() net.Addr { return h.s.Addr() }
