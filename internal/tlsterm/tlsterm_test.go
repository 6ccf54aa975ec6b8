package tlsterm

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"testing"
	"time"
)

func selfSigned(t *testing.T, name string) *tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name}, DNSNames: []string{name},
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestALPN checks what each kind of client negotiates on a real socket:
// browsers get h2, old clients http/1.1, and a CA validating TLS-ALPN-01
// gets acme-tls/1 with the certificate picked for that handshake.
func TestALPN(t *testing.T) {
	normal, challenge := selfSigned(t, "example.org"), selfSigned(t, "example.org")
	cfg := Config(func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLS1 {
			return challenge, nil
		}
		return normal, nil
	})
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	cases := []struct {
		offer []string
		want  string
		cert  *tls.Certificate
	}{
		{[]string{"h2", "http/1.1"}, "h2", normal},
		{[]string{"http/1.1"}, "http/1.1", normal},
		{[]string{ACMETLS1}, ACMETLS1, challenge},
	}
	for _, tc := range cases {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", ln.Addr().String(),
			&tls.Config{ServerName: "example.org", NextProtos: tc.offer, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		st := conn.ConnectionState()
		conn.Close()
		if st.NegotiatedProtocol != tc.want {
			t.Errorf("offering %v: got %q, want %q", tc.offer, st.NegotiatedProtocol, tc.want)
		}
		if string(st.PeerCertificates[0].Raw) != string(tc.cert.Certificate[0]) {
			t.Errorf("offering %v: got the wrong certificate", tc.offer)
		}
	}
}
