// Package pebbletest runs Let's Encrypt's Pebble ACME server in-process on
// loopback for tests, with a small authoritative DNS server that resolves
// every name to 127.0.0.1 and serves the TXT records published to it.
//
// Pebble's validation authority needs the ports it will connect to, and
// gatehouse learns its ports only once it listens; so the ACME API accepts
// connections at once but holds requests until Target names the ports.
package pebbletest

import (
	"crypto/x509"
	"encoding/pem"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/letsencrypt/pebble/v2/ca"
	"github.com/letsencrypt/pebble/v2/db"
	"github.com/letsencrypt/pebble/v2/va"
	"github.com/letsencrypt/pebble/v2/wfe"
	"github.com/miekg/dns"
)

// Pebble's knobs are environment variables read when its parts are made.
var envOnce sync.Once

func setEnv() {
	envOnce.Do(func() {
		os.Setenv("PEBBLE_VA_NOSLEEP", "1")      // no random delay before validating
		os.Setenv("PEBBLE_WFE_NONCEREJECT", "0") // no spurious badNonce errors
		os.Setenv("PEBBLE_AUTHZREUSE", "0")      // every order is validated again
	})
}

// Server is a running Pebble.
type Server struct {
	// Directory is the ACME directory URL.
	Directory string
	// APIRootFile is a PEM file with the certificate of the ACME API's TLS
	// server, for tls.acme.ca_root.
	APIRootFile string
	// Roots holds the root that signs the certificates Pebble issues.
	Roots *x509.CertPool

	// Orders counts new-order requests; Requests counts all requests.
	Orders, Requests atomic.Int64

	t       testing.TB
	srv     *httptest.Server
	db      *db.MemoryStore
	ca      *ca.CAImpl
	logger  *log.Logger
	handler atomic.Pointer[http.Handler]
	ready   chan struct{}
	once    sync.Once
}

// Start runs Pebble issuing certificates valid for validity (0 means
// Pebble's default, about five years). It stops when the test ends.
func Start(t testing.TB, validity time.Duration) *Server {
	t.Helper()
	setEnv()
	s := &Server{t: t, ready: make(chan struct{}), logger: log.New(io.Discard, "", 0)}
	if testing.Verbose() && os.Getenv("PEBBLE_LOG") != "" {
		s.logger = log.New(os.Stderr, "pebble ", log.Lmicroseconds)
	}
	s.db = db.NewMemoryStore()
	profiles := map[string]ca.Profile{"default": {Description: "test", ValidityPeriod: uint64(validity / time.Second)}}
	s.ca = ca.New(s.logger, s.db, "", "ecdsa", 0, 1, profiles)
	s.Roots = x509.NewCertPool()
	s.Roots.AddCert(s.ca.GetRootCert(0).Cert)

	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.srv.StartTLS()
	t.Cleanup(s.Stop)
	s.Directory = s.srv.URL + wfe.DirectoryPath
	s.APIRootFile = filepath.Join(t.TempDir(), "pebble-api-root.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.srv.Certificate().Raw})
	if err := os.WriteFile(s.APIRootFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return s
}

// Target points Pebble's challenge checks at the HTTP-01 and TLS-ALPN-01
// ports on 127.0.0.1 and at a DNS server, and lets held requests through.
func (s *Server) Target(httpPort, tlsPort int, resolver string) {
	s.once.Do(func() {
		v := va.New(s.logger, httpPort, tlsPort, false, resolver, s.db)
		w := wfe.New(s.logger, s.db, v, s.ca, []string{"pebble.letsencrypt.org"}, false, false, 0, 0)
		h := w.Handler()
		s.handler.Store(&h)
		close(s.ready)
	})
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.ready:
	case <-time.After(30 * time.Second):
		http.Error(w, "pebbletest: Target was never called", http.StatusServiceUnavailable)
		return
	case <-r.Context().Done():
		return
	}
	s.Requests.Add(1)
	if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/order-plz") {
		s.Orders.Add(1)
	}
	(*s.handler.Load()).ServeHTTP(w, r)
}

// Stop closes the ACME API; clients then get connection refused.
func (s *Server) Stop() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// DNS is an authoritative DNS server on 127.0.0.1 for tests: A queries get
// 127.0.0.1, TXT queries get what was published with PublishTXT.
type DNS struct {
	Addr string

	mu  sync.Mutex
	txt map[string][]string
}

// StartDNS runs the server on UDP and TCP (Pebble asks over TCP) until
// the test ends.
func StartDNS(t testing.TB) *DNS {
	t.Helper()
	d := &DNS{txt: map[string][]string{}}
	var pc net.PacketConn
	var ln net.Listener
	for try := 0; ln == nil; try++ { // the TCP port of a free UDP port may be taken
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if ln, err = net.Listen("tcp", pc.LocalAddr().String()); err != nil {
			pc.Close()
			if try == 10 {
				t.Fatal(err)
			}
		}
	}
	d.Addr = pc.LocalAddr().String()
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: d}, {Listener: ln, Handler: d}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		select {
		case <-started:
		case <-time.After(5 * time.Second):
			t.Fatal("test DNS server did not start")
		}
		t.Cleanup(func() { srv.Shutdown() })
	}
	return d
}

// PublishTXT serves value as a TXT record of name until remove is called.
func (d *DNS) PublishTXT(name, value string) (func(), error) {
	name = dns.CanonicalName(name)
	d.mu.Lock()
	d.txt[name] = append(d.txt[name], value)
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			vs := d.txt[name]
			for i, v := range vs {
				if v == value {
					d.txt[name] = append(vs[:i:i], vs[i+1:]...)
					break
				}
			}
			if len(d.txt[name]) == 0 {
				delete(d.txt, name)
			}
		})
	}, nil
}

// TXT returns the values now published for name.
func (d *DNS) TXT(name string) []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.txt[dns.CanonicalName(name)]...)
}

// ServeDNS answers one query.
func (d *DNS) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	if len(req.Question) == 1 {
		q := req.Question[0]
		hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: 0}
		switch q.Qtype {
		case dns.TypeA:
			hdr.Rrtype = dns.TypeA
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: net.IPv4(127, 0, 0, 1)})
		case dns.TypeTXT:
			hdr.Rrtype = dns.TypeTXT
			for _, v := range d.TXT(q.Name) {
				m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: []string{v}})
			}
		}
	}
	w.WriteMsg(m)
}
