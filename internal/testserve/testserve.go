// Package testserve runs throwaway TCP servers on loopback for tests: each
// accepted connection is served on its own goroutine, and when the test
// ends the listener and every connection are closed and every serve
// function has returned.
package testserve

import (
	"net"
	"sync"
	"testing"
)

// Listen opens a loopback listener, serves it (see Serve) and returns its
// address.
func Listen(t testing.TB, serve func(c net.Conn, n int)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	Serve(t, ln, serve)
	return ln.Addr().String()
}

// Serve accepts on ln until the test ends and calls serve for each
// connection, with n counting them from 0; the connection is closed when
// serve returns.
func Serve(t testing.TB, ln net.Listener, serve func(c net.Conn, n int)) {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		done  bool
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close() // a serve blocked on its connection returns
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			if done {
				mu.Unlock()
				c.Close()
				return
			}
			conns[c] = true
			wg.Add(1)
			mu.Unlock()
			go func() {
				defer wg.Done()
				defer func() {
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
				serve(c, n)
			}()
		}
	}()
}
