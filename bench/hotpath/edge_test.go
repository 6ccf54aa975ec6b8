package hotpath

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"

	"gatehouse/internal/gatetest"
)

// BenchmarkEdge measures one proxied HTTP/1.1 request through a whole
// gatehouse (listener, event loop, route, header rewrite, kept-alive
// upstream connection, journey record, metrics), with a raw client and a
// raw backend on loopback that allocate nothing per request, so allocs/op
// is gatehouse's own. With the access log on, each request is also a log
// line (JSON, into memory).
func BenchmarkEdge(b *testing.B) {
	b.Run("access=off", func(b *testing.B) { benchEdge(b, "off") })
	b.Run("access=on", func(b *testing.B) { benchEdge(b, "stderr") }) // gatetest keeps it in memory
}

func benchEdge(b *testing.B, access string) {
	const body = 1 << 10
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(body) + "\r\n\r\n" + strings.Repeat("x", body))
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			go serveCanned(c, answer)
		}
	}()
	g := gatetest.Start(b, fmt.Sprintf(`
log: {access: %s}
sites:
  - hosts: [bench.test]
    tls: off
    routes:
      - {path: /, proxy: "http://%s"}
`, access, backend.Addr()))
	c, err := net.Dial("tcp", g.HTTP)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /1k HTTP/1.1\r\nHost: bench.test\r\n\r\n")
	buf := make([]byte, 4<<10)
	b.ReportAllocs()
	b.SetBytes(body)
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if err := readAnswer(c, buf, body); err != nil {
			b.Fatal(err)
		}
	}
}

// serveCanned answers every request on c with answer.
func serveCanned(c net.Conn, answer []byte) {
	defer c.Close()
	buf := make([]byte, 4<<10)
	n := 0
	for {
		k, err := c.Read(buf[n:])
		if err != nil {
			return
		}
		n += k
		for {
			end := bytes.Index(buf[:n], []byte("\r\n\r\n"))
			if end < 0 {
				break
			}
			if _, err := c.Write(answer); err != nil {
				return
			}
			n = copy(buf, buf[end+4:n])
		}
		if n == len(buf) {
			return // a head larger than the buffer: not this benchmark's
		}
	}
}

// readAnswer reads one answer whose body is size bytes, checking that it
// is a 200.
func readAnswer(c net.Conn, buf []byte, size int) error {
	n, want := 0, -1
	for want < 0 || n < want {
		k, err := c.Read(buf[n:])
		if err != nil {
			return err
		}
		n += k
		if want < 0 {
			if end := bytes.Index(buf[:n], []byte("\r\n\r\n")); end >= 0 {
				if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
					return fmt.Errorf("answer %q", buf[:end])
				}
				want = end + 4 + size
			}
		}
		if n == len(buf) && n < want {
			return io.ErrShortBuffer
		}
	}
	if n > want {
		return fmt.Errorf("%d bytes after the answer", n-want)
	}
	return nil
}
