// Package sockio reads and writes non-blocking sockets with raw system
// calls. They never block, so they skip the runtime's system-call
// bookkeeping: a write to a peer on this machine runs the peer's receive
// path too, and can take long enough for the runtime's monitor to take the
// thread for blocked and hand its processor to another thread, waking one.
// The event loops call Read and Write on their descriptors; Conn does the
// same for a socket in Go's poller, waiting there (with its deadlines) when
// the socket is not ready.
package sockio

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Read and Write read and write a non-blocking socket. Like unix.Read and
// unix.Write, they return -1 with the error.
func Read(fd int, p []byte) (int, error) { return rawIO(unix.SYS_READ, fd, p) }

func Write(fd int, p []byte) (int, error) { return rawIO(unix.SYS_WRITE, fd, p) }

// WriteMore writes with MSG_MORE: the bytes wait for what the next write
// brings instead of leaving as a packet of their own.
func WriteMore(fd int, p []byte) (int, error) {
	return result(unix.RawSyscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)), unix.MSG_MORE, 0, 0))
}

// Pending reports whether the socket has something to read, or has been
// closed by its peer.
func Pending(fd int) bool {
	var b [1]byte
	_, err := result(unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), 1, unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0))
	return err != unix.EAGAIN
}

func rawIO(trap uintptr, fd int, p []byte) (int, error) {
	return result(unix.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p))))
}

func result(n, _ uintptr, errno unix.Errno) (int, error) {
	if errno != 0 {
		return -1, errno
	}
	return int(n), nil
}

// Conn is a connection in Go's poller whose reads and writes are raw
// system calls. Everything else (deadlines, Close, addresses) is the
// wrapped connection's. Like any net.Conn it may be used from several
// goroutines at once.
type Conn struct {
	net.Conn
	raw syscall.RawConn // nil when the connection is not a socket: its own Read and Write serve

	// What the callbacks given to raw work on (each side under its lock),
	// and the callbacks, bound once: a closure per call would be an
	// allocation per call.
	rmu, wmu        sync.Mutex
	rp, wp          []byte
	rn, wn          int
	rerr, werr      error
	readFn, writeFn func(fd uintptr) bool
}

// Wrap returns nc with raw reads and writes, when nc is, or wraps through
// NetConn, a socket.
func Wrap(nc net.Conn) *Conn {
	c := &Conn{Conn: nc}
	for inner := nc; ; {
		if sc, ok := inner.(syscall.Conn); ok {
			if raw, err := sc.SyscallConn(); err == nil {
				c.raw = raw
				c.readFn, c.writeFn = c.read, c.write
			}
			return c
		}
		u, ok := inner.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		inner = u.NetConn()
	}
}

func (c *Conn) Read(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Read(p)
	}
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	c.rp = p
	err := c.raw.Read(c.readFn)
	n, rerr := c.rn, c.rerr
	c.rp, c.rerr = nil, nil
	c.rmu.Unlock()
	switch {
	case err != nil:
		return 0, err // a deadline, or the socket closed
	case rerr != nil:
		return 0, c.opError("read", rerr)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (c *Conn) read(fd uintptr) bool {
	for {
		c.rn, c.rerr = Read(int(fd), c.rp)
		if c.rerr != unix.EINTR {
			return c.rerr != unix.EAGAIN
		}
	}
}

// Write writes all of p.
func (c *Conn) Write(p []byte) (int, error) {
	if c.raw == nil {
		return c.Conn.Write(p)
	}
	c.wmu.Lock()
	c.wp, c.wn = p, 0
	err := c.raw.Write(c.writeFn)
	n, werr := c.wn, c.werr
	c.wp, c.werr = nil, nil
	c.wmu.Unlock()
	if err == nil && werr != nil {
		err = c.opError("write", werr)
	}
	return n, err
}

func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wp) {
		m, err := Write(int(fd), c.wp[c.wn:])
		switch err {
		case nil:
			c.wn += m
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			c.werr = err
			return true
		}
	}
	return true
}

// Pending reports whether the connection has something to read, or has
// been closed by its peer, without reading it.
func (c *Conn) Pending() bool {
	if c.raw == nil {
		return false
	}
	pending := true
	c.raw.Control(func(fd uintptr) { pending = Pending(int(fd)) })
	return pending
}

func (c *Conn) opError(op string, err error) error {
	e := &net.OpError{Op: op, Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError(op, err)}
	if e.Source != nil {
		e.Net = e.Source.Network()
	}
	return e
}
