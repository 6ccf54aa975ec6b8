// Package tlsterm owns TLS termination on the public HTTPS listeners: the
// protocol versions, ALPN (HTTP/2 first) and where certificates come from.
// Certificates themselves belong to package certs; tlsterm only asks.
package tlsterm

import "crypto/tls"

// GetCertificateFunc picks the certificate for a ClientHello.
type GetCertificateFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// ACMETLS1 is the ALPN protocol of the ACME TLS-ALPN-01 challenge (RFC 8737).
const ACMETLS1 = "acme-tls/1"

// Config returns the server TLS configuration: TLS 1.2 and 1.3 only, the
// Go default AEAD cipher suites (forward secret), and ALPN offering h2 then
// http/1.1 so browsers and gRPC clients get HTTP/2.
//
// acme-tls/1 is offered last: only a CA validating a TLS-ALPN-01 challenge
// asks for it, and then alone (RFC 8737 §3), so get answers that handshake
// with the challenge certificate and the connection carries no HTTP.
func Config(get GetCertificateFunc) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2", "http/1.1", ACMETLS1},
		GetCertificate: get,
	}
}

// VersionName names a TLS version as people write it ("TLS 1.3").
func VersionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionTLS12:
		return "TLS 1.2"
	case tls.VersionTLS11:
		return "TLS 1.1"
	case tls.VersionTLS10:
		return "TLS 1.0"
	}
	return ""
}

// cipherNames is built once: tls.CipherSuiteName builds its lists on every
// call, which the request path cannot afford.
var cipherNames = func() map[uint16]string {
	m := map[uint16]string{}
	for _, c := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		m[c.ID] = c.Name
	}
	return m
}()

// CipherName names a cipher suite without allocating.
func CipherName(id uint16) string {
	if n, ok := cipherNames[id]; ok {
		return n
	}
	return ""
}
