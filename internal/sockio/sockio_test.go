package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

func pair(t *testing.T) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	p, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	w := Wrap(c)
	if w.raw == nil {
		t.Fatal("a TCP connection has no raw access")
	}
	return w, p
}

func TestConnReadsWritesAndWaits(t *testing.T) {
	c, peer := pair(t)
	if c.Pending() {
		t.Error("pending before anything was sent")
	}
	// More than the socket buffers take at once: Write waits for room.
	big := make([]byte, 8<<20)
	for i := range big {
		big[i] = byte(i)
	}
	go func() {
		if _, err := c.Write(big); err != nil {
			t.Error(err)
		}
	}()
	got, err := io.ReadAll(io.LimitReader(peer, int64(len(big))))
	if err != nil || len(got) != len(big) || got[len(got)-1] != big[len(big)-1] {
		t.Fatalf("peer read %d bytes: %v", len(got), err)
	}

	peer.Write([]byte("hi"))
	deadline := time.Now().Add(2 * time.Second)
	for !c.Pending() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if !c.Pending() {
		t.Error("not pending with bytes waiting")
	}
	b := make([]byte, 10)
	if n, err := io.ReadAtLeast(c, b, 2); err != nil || string(b[:n]) != "hi" {
		t.Fatalf("read %q, %v", b[:n], err)
	}

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := c.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("read past the deadline: %v", err)
	}
	c.SetReadDeadline(time.Time{})

	peer.Close()
	if _, err := c.Read(b); err != io.EOF {
		t.Errorf("read after the peer closed: %v, want EOF", err)
	}
	if !c.Pending() {
		t.Error("a connection the peer closed is not pending")
	}
}

// A connection that is not a socket keeps its own Read and Write.
func TestWrapNonSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := Wrap(a)
	go b.Write([]byte("x"))
	buf := make([]byte, 1)
	if n, err := c.Read(buf); n != 1 || err != nil || c.Pending() {
		t.Errorf("%d %v", n, err)
	}
}

// Writes from several goroutines at once each go out whole.
func TestConcurrentWrites(t *testing.T) {
	c, peer := pair(t)
	const writers, size = 4, 256 << 10
	for w := range writers {
		go func() {
			b := make([]byte, size)
			for i := range b {
				b[i] = byte('a' + w)
			}
			if _, err := c.Write(b); err != nil {
				t.Error(err)
			}
		}()
	}
	got, err := io.ReadAll(io.LimitReader(peer, writers*size))
	if err != nil || len(got) != writers*size {
		t.Fatalf("read %d: %v", len(got), err)
	}
	// Each write is one run of its letter.
	runs := 0
	for i := range got {
		if i == 0 || got[i] != got[i-1] {
			runs++
		}
	}
	if runs != writers {
		t.Errorf("%d runs of bytes, want %d: writes were interleaved", runs, writers)
	}
}
