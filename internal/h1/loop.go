package h1

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// pollable is what a loop's descriptor belongs to.
type pollable interface {
	event(ev uint32)
}

// loop is one event loop. Everything but queue is touched by its goroutine
// only.
type loop struct {
	e    *Engine
	epfd int
	// ep is epfd in Go's poller, where the loop waits for its events (see
	// wait).
	ep       *os.File
	epRaw    syscall.RawConn
	deadline int64 // the read deadline set on ep
	wakefd   int   // eventfd: new connections, shutdown

	mu      sync.Mutex
	queue   []*conn
	stopped bool        // the loop is gone: nothing may be queued or woken
	woken   atomic.Bool // an eventfd wake-up is on its way

	items []pollable // by descriptor
	// tokens tell a descriptor's registrations apart: an event carries
	// the token it was registered with, so an event for a descriptor
	// closed earlier in the same batch never reaches the connection that
	// reused its number.
	tokens []uint32
	seq    uint32
	conns  []*conn // for the timer scan; conn.slot is the index
	idle   map[netip.AddrPort][]*upConn
	free   []*exchange
	bufs   [][]byte // readSize buffers for TLS ciphertext
	// bufsMade counts the buffers getBuf had to allocate: while every
	// buffer comes back (and no more than the free list keeps are lent at
	// once), it stays at the most ever lent at once.
	bufsMade atomic.Int64
	events   []unix.EpollEvent
	// poll is pollOnce as a func value made once: a closure made at each
	// wait would be an allocation per wake-up.
	poll    func(fd uintptr) bool
	polled  int
	pollErr error

	now      int64 // unix nanoseconds, once per wake-up
	nextScan int64
	date     []byte // "Date: …\r\n", refreshed each second
	dateSec  int64
}

const (
	scanEvery   = 50 * time.Millisecond
	epollEvents = unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET
)

func newLoop(e *Engine) (*loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	l := &loop{e: e, epfd: epfd, wakefd: wfd, idle: map[netip.AddrPort][]*upConn{}, events: make([]unix.EpollEvent, 256)}
	l.poll = l.pollOnce
	err = unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)})
	if err == nil {
		err = unix.SetNonblock(epfd, true) // so that os.NewFile puts it in the poller
	}
	if err == nil {
		l.ep = os.NewFile(uintptr(epfd), "epoll")
		l.epRaw, err = l.ep.SyscallConn()
	}
	if err != nil {
		if l.ep != nil {
			l.ep.Close()
		} else {
			unix.Close(epfd)
		}
		unix.Close(wfd)
		return nil, err
	}
	return l, nil
}

// enqueue gives c to the loop; a loop that has stopped closes it instead.
func (l *loop) enqueue(c *conn) {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		c.closeUnqueued(l.e)
		return
	}
	l.queue = append(l.queue, c)
	l.mu.Unlock()
	// One wake-up takes the whole queue: under load, connections arriving
	// while the loop is busy cost no eventfd write.
	if !l.woken.Swap(true) {
		l.wake()
	}
}

// wake interrupts the loop's wait. Under l.mu, so it never writes to a
// descriptor number the stopped loop gave back.
func (l *loop) wake() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		var one = [8]byte{1}
		unix.Write(l.wakefd, one[:])
	}
}

func (l *loop) register(fd int, p pollable) error {
	for fd >= len(l.items) {
		l.items = append(l.items, nil)
		l.tokens = append(l.tokens, 0)
	}
	l.seq++
	l.items[fd], l.tokens[fd] = p, l.seq
	return unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: epollEvents, Fd: int32(fd), Pad: int32(l.seq)})
}

// forget removes fd from the loop; the caller hands it on.
func (l *loop) forget(fd int) {
	l.items[fd] = nil
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// closeFd closes a descriptor of the loop. It is the only descriptor of
// its socket, and closing the last one takes a socket out of every epoll
// set, so no EPOLL_CTL_DEL is needed; a reused number gets a new token.
func (l *loop) closeFd(fd int) {
	l.items[fd] = nil
	unix.Close(fd)
}

func (l *loop) run() {
	defer l.shutdown()
	for {
		n, err := l.wait()
		if err != nil {
			l.e.opts.Log.Error("event loop stopped", "error", err)
			return
		}
		l.now = time.Now().UnixNano()
		for i := range n {
			l.dispatch(&l.events[i])
		}
		select {
		case <-l.e.closed:
			return
		default:
		}
		if l.now >= l.nextScan {
			l.nextScan = l.now + int64(scanEvery)
			l.scan()
		}
	}
}

// wait returns the number of events in l.events, or 0 when the next scan
// is due. It waits in Go's poller, where the epoll set is one more
// descriptor, and not in epoll_wait: a goroutine blocked in a system call
// keeps the runtime's monitor waking every 20 µs to hand its processor to
// another thread, and on a loop that idles between bursts that churn cost
// more CPU than the requests did.
func (l *loop) wait() (int, error) {
	due := l.nextScan
	if len(l.conns) == 0 && !l.e.draining.Load() {
		due = max(due, l.now+int64(time.Second))
	}
	if due != l.deadline {
		l.deadline = due
		l.ep.SetReadDeadline(time.Unix(0, due))
	}
	l.polled, l.pollErr = 0, nil
	if err := l.epRaw.Read(l.poll); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil
		}
		return 0, err
	}
	return l.polled, l.pollErr
}

// pollOnce is l.poll: one epoll_wait that never blocks, its results left
// in l.polled and l.pollErr.
func (l *loop) pollOnce(fd uintptr) bool {
	l.polled, l.pollErr = epollPoll(int(fd), l.events)
	return l.polled > 0 || l.pollErr != nil
}

// epollPoll is epoll_wait that never blocks, so it need not tell the
// runtime it enters a system call.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return 0, errno
		}
		return int(n), nil
	}
}

// dispatch gives an event to what its descriptor belongs to now, unless
// the descriptor was closed (and perhaps reused) since the event was
// reported.
func (l *loop) dispatch(ev *unix.EpollEvent) {
	fd := int(ev.Fd)
	if fd == l.wakefd {
		var b [8]byte
		unix.Read(l.wakefd, b[:])
		l.adoptQueued()
		return
	}
	if fd < len(l.items) && l.items[fd] != nil && l.tokens[fd] == uint32(ev.Pad) {
		l.items[fd].event(ev.Events)
	}
}

func (l *loop) adoptQueued() {
	l.woken.Store(false)
	l.mu.Lock()
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, c := range q {
		c.l = l
		if c.sock != nil {
			c.sock.l = l
		}
		c.slot = len(l.conns)
		l.conns = append(l.conns, c)
		if err := l.register(c.fd, c); err != nil {
			c.close()
			continue
		}
		c.idleSince = l.now
		c.deadline = l.now + int64(l.e.opts.ReadHeaderTimeout) // for the first request
		c.readable, c.writable = true, true                    // whatever arrived before registration
		c.advance()
	}
}

// scan enforces deadlines and, while draining, closes idle connections.
func (l *loop) scan() {
	draining := l.e.draining.Load()
	for i := 0; i < len(l.conns); i++ {
		c := l.conns[i]
		c.tick(draining)
		if i < len(l.conns) && l.conns[i] != c {
			i-- // c closed and another took its slot
		}
	}
	for addr, list := range l.idle {
		keep := list[:0]
		for _, u := range list {
			if draining || l.now-u.idleSince > u.idleTimeout {
				u.closeFd()
				continue
			}
			keep = append(keep, u)
		}
		if len(keep) == 0 {
			delete(l.idle, addr)
		} else {
			l.idle[addr] = keep
		}
	}
}

// shutdown closes everything the loop holds.
func (l *loop) shutdown() {
	l.mu.Lock()
	l.stopped = true
	q := l.queue
	l.queue = nil
	l.mu.Unlock()
	for _, c := range q {
		c.closeUnqueued(l.e) // never served: no request is begun only to be cut off
	}
	for len(l.conns) > 0 {
		l.conns[len(l.conns)-1].abort()
	}
	for _, list := range l.idle {
		for _, u := range list {
			u.closeFd()
		}
	}
	l.ep.Close()
	l.mu.Lock()
	unix.Close(l.wakefd)
	l.mu.Unlock()
}

// dateLine is the Date field for responses that lack one, as net/http adds.
func (l *loop) dateLine() []byte {
	if sec := l.now / int64(time.Second); sec != l.dateSec || l.date == nil {
		l.dateSec = sec
		l.date = append(append(append(l.date[:0], "Date: "...), time.Unix(sec, 0).UTC().Format(http.TimeFormat)...), "\r\n"...)
	}
	return l.date
}

func (l *loop) getExchange() *exchange {
	if n := len(l.free); n > 0 {
		x := l.free[n-1]
		l.free = l.free[:n-1]
		return x
	}
	return newExchange()
}

// putExchange keeps a few exchanges for reuse; beyond that their buffers
// go back to the garbage collector, so idle connections hold no memory.
func (l *loop) putExchange(x *exchange) {
	x.clear()
	if len(l.free) < 64 {
		l.free = append(l.free, x)
	}
}

// getBuf and putBuf lend buffers for TLS ciphertext, so a session holds
// them only while bytes wait in them.
func (l *loop) getBuf() []byte {
	if n := len(l.bufs); n > 0 {
		b := l.bufs[n-1]
		l.bufs = l.bufs[:n-1]
		return b[:cap(b)]
	}
	l.bufsMade.Add(1)
	return make([]byte, readSize)
}

func (l *loop) putBuf(b []byte) {
	if len(l.bufs) < 64 && cap(b) >= readSize && cap(b) <= 4*readSize {
		l.bufs = append(l.bufs, b[:0])
	}
}

func addrPort(a net.Addr) netip.AddrPort {
	if ta, ok := a.(*net.TCPAddr); ok {
		ap := ta.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// upConn is a connection to an upstream, owned by one loop: in use by one
// exchange, or idle in the loop's pool for its address.
type upConn struct {
	l           *loop
	fd          int
	addr        netip.AddrPort
	x           *exchange // nil while idle
	readable    bool
	writable    bool
	rdhup       bool // see conn.rdhup
	reused      bool
	idleSince   int64
	idleTimeout int64
}

// dial starts a non-blocking connection to addr.
func (l *loop) dial(addr netip.AddrPort) (*upConn, error) {
	family := unix.AF_INET
	var sa unix.Sockaddr
	if addr.Addr().Is4() {
		sa = &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}
	} else {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: int(addr.Port()), Addr: addr.Addr().As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	u := &upConn{l: l, fd: fd, addr: addr}
	if err := unix.Connect(fd, sa); err != nil && err != unix.EINPROGRESS {
		unix.Close(fd)
		return nil, err
	}
	if err := l.register(fd, u); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return u, nil
}

// takeIdle returns a pooled connection to addr, or nil.
func (l *loop) takeIdle(addr netip.AddrPort) *upConn {
	list := l.idle[addr]
	for len(list) > 0 {
		u := list[len(list)-1]
		list = list[:len(list)-1]
		l.idle[addr] = list
		if u.readable {
			// Data or EOF on an idle connection: the upstream closed it or
			// broke the protocol. Never reuse it.
			u.closeFd()
			continue
		}
		u.reused = true
		return u
	}
	return nil
}

// release pools u for reuse, or closes it when the pool is full.
func (u *upConn) release(maxIdle int, idleTimeout time.Duration) {
	u.x = nil
	l := u.l
	list := l.idle[u.addr]
	if maxIdle <= 0 {
		maxIdle = 32
	}
	if len(list) >= maxIdle || l.e.draining.Load() {
		u.close()
		return
	}
	u.idleSince = l.now
	u.idleTimeout = int64(idleTimeout)
	if u.idleTimeout <= 0 {
		u.idleTimeout = int64(90 * time.Second)
	}
	l.idle[u.addr] = append(list, u)
}

// closeFd closes the socket, leaving the pool to its caller.
func (u *upConn) closeFd() {
	if u.fd < 0 {
		return
	}
	u.l.closeFd(u.fd)
	u.fd = -1
}

// close closes the socket and, when idle, takes it out of the pool.
func (u *upConn) close() {
	if u.fd < 0 {
		return
	}
	u.closeFd()
	if u.x == nil {
		list := u.l.idle[u.addr]
		for i, v := range list {
			if v == u {
				list[i] = list[len(list)-1]
				u.l.idle[u.addr] = list[:len(list)-1]
				break
			}
		}
	}
}

func (u *upConn) event(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP) != 0 {
		u.rdhup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		u.writable = true
	}
	if u.x == nil {
		if u.readable {
			u.close() // an idle connection the upstream closed
		}
		return
	}
	u.x.c.advance()
}
