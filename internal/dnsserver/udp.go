package dnsserver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpBatch reads and writes many datagrams per system call (recvmmsg and
// sendmmsg): under load the system calls, not the answers, are the cost of
// a query. The calls are made without the runtime's system-call
// bookkeeping, inside the socket's RawConn so that Go's poller does the
// waiting: they never block, and a sendmmsg to a peer on this machine runs
// the peer's receive path for every datagram, long enough for the
// runtime's monitor to take the thread for blocked, hand its processor to
// another thread and keep waking every 20 µs to look again.
type udpBatch struct {
	in, out   []unix.Mmsghdr
	inIov     []unix.Iovec
	outIov    []unix.Iovec
	names     []unix.RawSockaddrAny // the sources of what was read
	outNames  []unix.RawSockaddrAny // the destinations of what is written
	bufs      [][]byte
	replies   [][]byte
	nOut, off int
}

func newUDPBatch(size int) *udpBatch {
	b := &udpBatch{
		in: make([]unix.Mmsghdr, size), out: make([]unix.Mmsghdr, size),
		inIov: make([]unix.Iovec, size), outIov: make([]unix.Iovec, size),
		names: make([]unix.RawSockaddrAny, size), outNames: make([]unix.RawSockaddrAny, size),
		bufs: make([][]byte, size), replies: make([][]byte, size),
	}
	for i := range size {
		b.bufs[i] = make([]byte, dns.MaxMsgSize)
		b.replies[i] = make([]byte, 0, 1500)
		b.inIov[i].Base = &b.bufs[i][0]
		b.inIov[i].SetLen(len(b.bufs[i]))
		h := &b.in[i].Hdr
		h.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.Iov = &b.inIov[i]
		h.SetIovlen(1)
		o := &b.out[i].Hdr
		o.Name = (*byte)(unsafe.Pointer(&b.outNames[i]))
		o.Iov = &b.outIov[i]
		o.SetIovlen(1)
	}
	return b
}

// recv reads what datagrams are waiting, or returns unix.EAGAIN.
func (b *udpBatch) recv(fd int) (int, error) {
	for i := range b.in {
		b.in[i].Hdr.Namelen = unix.SizeofSockaddrAny
		b.in[i].Hdr.Flags = 0
	}
	for {
		n, _, errno := unix.RawSyscall6(unix.SYS_RECVMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.in[0])), uintptr(len(b.in)), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			return int(n), nil
		case unix.EINTR:
			continue
		}
		return 0, errno
	}
}

// query returns the i-th datagram read and its source; ok is false for a
// datagram cut short by the buffer or from no known address family.
func (b *udpBatch) query(i int) (q []byte, src netip.AddrPort, ok bool) {
	h := &b.in[i]
	if h.Hdr.Flags&unix.MSG_TRUNC != 0 {
		return nil, src, false
	}
	sa := &b.names[i]
	switch sa.Addr.Family {
	case unix.AF_INET:
		a := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		src = netip.AddrPortFrom(netip.AddrFrom4(a.Addr), port(a.Port))
	case unix.AF_INET6:
		a := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		src = netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), port(a.Port))
	default:
		return nil, src, false
	}
	return b.bufs[i][:h.Len], src, true
}

// port reads a port stored in network byte order.
func port(p uint16) uint16 {
	return binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&p))[:])
}

// reply queues reply to the source of the i-th datagram.
func (b *udpBatch) reply(i int, reply []byte) {
	k := b.nOut
	b.replies[k] = append(b.replies[k][:0], reply...)
	b.outNames[k] = b.names[i]
	o := &b.out[k].Hdr
	o.Namelen = b.in[i].Hdr.Namelen
	b.outIov[k].Base = unsafe.SliceData(b.replies[k])
	b.outIov[k].SetLen(len(b.replies[k]))
	b.nOut++
}

// send writes the queued replies. It reports whether it is done: false
// means the socket would block, with the rest still queued.
func (b *udpBatch) send(fd int) bool {
	for b.off < b.nOut {
		n, _, errno := unix.RawSyscall6(unix.SYS_SENDMMSG, uintptr(fd), uintptr(unsafe.Pointer(&b.out[b.off])), uintptr(b.nOut-b.off), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			b.off += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			b.off++ // the datagram that failed is dropped
		}
	}
	b.nOut, b.off = 0, 0
	return true
}

// serveUDP answers the datagrams of one socket, a batch at a time.
func (s *Server) serveUDP(u *net.UDPConn) {
	defer s.wg.Done()
	rc, err := u.SyscallConn()
	if err != nil {
		s.log().Error("DNS over UDP stopped", "error", err)
		return
	}
	b := newUDPBatch(batch)
	w := newWorker(s)
	for {
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			n, rerr = b.recv(int(fd))
			return rerr != unix.EAGAIN
		})
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.log().Error("DNS over UDP stopped", "error", err)
			}
			return
		}
		if rerr != nil {
			continue // ICMP errors and the like are per packet
		}
		for i := range n {
			q, src, ok := b.query(i)
			if !ok {
				continue
			}
			if reply := s.udpReply(w, q, src); reply != nil {
				b.reply(i, reply)
			}
		}
		if b.nOut > 0 {
			if err := rc.Write(func(fd uintptr) bool { return b.send(int(fd)) }); err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.log().Error("DNS over UDP stopped", "error", err)
				}
				return
			}
		}
	}
}
