package certs

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"gatehouse/internal/certs/pebbletest"
)

// BenchmarkGetCertificate measures the handshake-time lookup for each
// source; ACME certificates come from certmagic's cache after one real
// issuance by Pebble.
func BenchmarkGetCertificate(b *testing.B) {
	p := pebbletest.Start(b, 0)
	d := pebbletest.StartDNS(b)
	cfg := fmt.Sprintf(siteConfig, "%s", "", "bench.example.com") + `
  - hosts: [internal.test]
    routes: [{path: /, respond: {status: 200}}]
`
	e := startEdge(b, p, b.TempDir(), nil, cfg)
	p.Target(port(e.http), port(e.https), d.Addr)
	e.waitVerified(b, "bench.example.com", p.Roots, 30*time.Second)

	for _, name := range []string{"bench.example.com", "internal.test", "unknown.example.org"} {
		b.Run(name, func(b *testing.B) {
			conn, peer := net.Pipe() // certmagic logs the remote address on misses
			defer conn.Close()
			defer peer.Close()
			hello := &tls.ClientHelloInfo{ServerName: name, SupportedProtos: []string{"h2", "http/1.1"}, Conn: conn}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.m.GetCertificate(hello); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
