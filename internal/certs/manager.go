// Package certs owns every certificate gatehouse serves and where each comes
// from: the local CA (internal), certificate files (as nginx's
// ssl_certificate), and ACME. The Manager lives across reloads; each config
// generation compiles a Policy (host → source) that is swapped in whole.
package certs

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/config"
)

// Source says where a host's certificate comes from.
type Source uint8

const (
	Internal Source = iota + 1
	Files
	ACME
)

func (s Source) String() string {
	switch s {
	case Internal:
		return "internal"
	case Files:
		return "files"
	case ACME:
		return "acme"
	}
	return "none"
}

// Policy maps host names to certificate sources for one config generation.
// It is immutable once compiled.
type Policy struct {
	exact    map[string]entry
	wildcard map[string]entry // keyed by the parent: "example.org" for *.example.org
}

type entry struct {
	source Source
	cert   *tls.Certificate // for Files
	file   string
}

// Manager serves certificates for TLS handshakes.
type Manager struct {
	CA *LocalCA

	policy atomic.Pointer[Policy]

	mu       sync.Mutex
	leaves   map[string]*tls.Certificate // internal leaves by name
	fallback *tls.Certificate
}

// maxLeaves bounds the internal leaf cache; wildcard sites would otherwise let
// clients grow it with made-up names.
const maxLeaves = 4096

// NewManager returns a Manager whose internal certificates are signed by ca.
func NewManager(ca *LocalCA) *Manager {
	return &Manager{CA: ca, leaves: map[string]*tls.Certificate{}}
}

// Compile builds the policy for cfg, loading certificate files. It fails
// without touching the Manager, so a bad config never replaces a good one.
func (m *Manager) Compile(cfg *config.Config) (*Policy, error) {
	p := &Policy{exact: map[string]entry{}, wildcard: map[string]entry{}}
	var errs config.ErrorList
	for i := range cfg.Sites {
		s := &cfg.Sites[i]
		var e entry
		switch SiteSource(cfg, s) {
		case Internal:
			e.source = Internal
		case Files:
			cert, err := loadPair(s.TLS.Cert, s.TLS.Key)
			if err != nil {
				errs.Add(cfg.PosOf(&s.TLS.Cert), err.Error())
				continue
			}
			e = entry{source: Files, cert: cert, file: s.TLS.Cert}
		case ACME:
			e.source = ACME
		default:
			continue // tls: off
		}
		for _, h := range s.Hosts {
			if parent, ok := strings.CutPrefix(h, "*."); ok {
				p.wildcard[parent] = e
			} else {
				p.exact[h] = e
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// SiteSource resolves a site's tls mode to where its certificate comes from;
// 0 means the site has no TLS.
func SiteSource(cfg *config.Config, s *config.Site) Source {
	switch s.TLS.Mode {
	case "off":
		return 0
	case "internal":
		return Internal
	case "files":
		return Files
	case "acme":
		return ACME
	}
	// Unset: ACME for public names when an account is configured; the local
	// CA for names no public CA will sign (localhost, .test, IPs, …).
	if cfg.TLS.ACME != nil && allPublic(s.Hosts) {
		return ACME
	}
	return Internal
}

func allPublic(hosts []string) bool {
	for _, h := range hosts {
		if !IsPublicName(h) {
			return false
		}
	}
	return true
}

// IsPublicName reports whether a public CA could issue for h.
func IsPublicName(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return false
	}
	if !strings.Contains(h, ".") {
		return false
	}
	for _, suffix := range []string{".localhost", ".test", ".local", ".internal", ".invalid", ".example", ".home.arpa", ".lan"} {
		if strings.HasSuffix(h, suffix) {
			return false
		}
	}
	return true
}

func loadPair(certFile, keyFile string) (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("loading certificate %s with key %s: %v", certFile, keyFile, err)
	}
	return &cert, nil
}

// Use makes p the policy for new handshakes.
func (m *Manager) Use(p *Policy) { m.policy.Store(p) }

// Lookup returns the source for a server name under the current policy.
func (m *Manager) Lookup(name string) Source {
	e, _ := m.lookup(strings.ToLower(name))
	return e.source
}

func (m *Manager) lookup(name string) (entry, bool) {
	p := m.policy.Load()
	if p == nil {
		return entry{}, false
	}
	if e, ok := p.exact[name]; ok {
		return e, true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if e, ok := p.wildcard[name[i+1:]]; ok {
			return e, true
		}
	}
	return entry{}, false
}

// GetCertificate picks the certificate for a handshake. Unknown names and
// handshakes without SNI get the fallback certificate, so the client can
// still be told 404 over HTTPS, as nginx's default server does.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	e, ok := m.lookup(name)
	if !ok {
		return m.fallbackCert()
	}
	switch e.source {
	case Files:
		return e.cert, nil
	case Internal:
		return m.internalLeaf(name)
	}
	return m.fallbackCert()
}

func (m *Manager) internalLeaf(name string) (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.leaves[name]; ok && !needsRenewal(c.Leaf, time.Now()) {
		return c, nil
	}
	c, err := m.CA.Issue([]string{name}, LeafLifetime)
	if err != nil {
		return nil, err
	}
	if len(m.leaves) >= maxLeaves {
		clear(m.leaves)
	}
	m.leaves[name] = c
	return c, nil
}

func (m *Manager) fallbackCert() (*tls.Certificate, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fallback != nil && !needsRenewal(m.fallback.Leaf, time.Now()) {
		return m.fallback, nil
	}
	c, err := m.CA.Issue([]string{"localhost", "127.0.0.1", "::1"}, LeafLifetime)
	if err != nil {
		return nil, err
	}
	m.fallback = c
	return c, nil
}

// needsRenewal reports whether less than a third of the leaf's life is left.
func needsRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return c.NotAfter.Sub(now) < life/3
}
