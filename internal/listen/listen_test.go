package listen

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Accepted connections carry the keep-alive settings of the listening
// socket, read back from the kernel.
func TestAcceptedConnectionsKeepAlive(t *testing.T) {
	s, err := Listen("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.Attach()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := make(chan net.Conn, 1)
	go func() {
		a, err := h.Accept()
		if err != nil {
			t.Error(err)
		}
		got <- a
	}()
	var a net.Conn
	select {
	case a = <-got:
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
	}
	if a == nil {
		return
	}
	defer a.Close()
	raw, err := a.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct{ level, opt, v int }{
		"SO_KEEPALIVE":  {unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1},
		"TCP_KEEPIDLE":  {unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, keepAliveIdle},
		"TCP_KEEPINTVL": {unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, keepAliveInterval},
		"TCP_KEEPCNT":   {unix.IPPROTO_TCP, unix.TCP_KEEPCNT, keepAliveCount},
		"TCP_NODELAY":   {unix.IPPROTO_TCP, unix.TCP_NODELAY, 1},
	}
	raw.Control(func(fd uintptr) {
		for name, o := range want {
			v, err := unix.GetsockoptInt(int(fd), o.level, o.opt)
			if err != nil {
				t.Errorf("%s: %v", name, err)
			} else if v != o.v {
				t.Errorf("%s = %d, want %d", name, v, o.v)
			}
		}
	})
}
