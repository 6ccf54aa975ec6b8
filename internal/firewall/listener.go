package firewall

import (
	"io"
	"net"
	"net/netip"
	"sync"
)

// Listener wraps a TCP listener so that Accept returns only allowed
// connections. A denied connection is closed as soon as it is accepted,
// before a byte is read or a TLS handshake begins; a rejected one is reset.
// The local port the rules see is ln's own. Connections from sources that
// are not IP (Unix sockets) are allowed.
func (g *Guard) Listener(ln net.Listener) net.Listener {
	var port uint16
	if ta, ok := ln.Addr().(*net.TCPAddr); ok {
		port = uint16(ta.Port)
	}
	return &listener{Listener: ln, g: g, port: port}
}

type listener struct {
	net.Listener
	g    *Guard
	port uint16
}

func (l *listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ta, ok := c.RemoteAddr().(*net.TCPAddr)
		if !ok {
			return c, nil
		}
		src := ta.AddrPort().Addr().Unmap()
		v, tracked := l.g.admitConn(l.port, src)
		if !v.Allowed() {
			if tc, ok := c.(*net.TCPConn); ok && v.Action == Reject {
				tc.SetLinger(0) // close with RST
			}
			c.Close()
			continue
		}
		return &Conn{Conn: c, g: l.g, src: src, verdict: v, tracked: tracked}, nil
	}
}

// Conn is an accepted connection with the verdict that let it in.
type Conn struct {
	net.Conn
	g         *Guard
	src       netip.Addr
	verdict   Verdict
	tracked   bool
	closeOnce sync.Once
}

// Verdict is the firewall's decision on the connection.
func (c *Conn) Verdict() Verdict { return c.verdict }

// FirewallVerdict says which rule let the connection in, for the journey.
func (c *Conn) FirewallVerdict() string { return c.verdict.String() }

// NetConn returns the accepted connection underneath.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Close closes the connection and ends its count towards the source's cap.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		if c.tracked {
			c.g.release(c.src)
		}
	})
	return err
}

// ReadFrom keeps sendfile and splice for net/http when the connection
// underneath has them.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// CloseWrite half-closes the connection when the one underneath can.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

var (
	_ net.Listener  = (*listener)(nil)
	_ io.ReaderFrom = (*Conn)(nil)
)
