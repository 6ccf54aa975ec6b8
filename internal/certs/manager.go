// Package certs owns every certificate gatehouse serves and where each comes
// from: the local CA (internal), certificate files (as nginx's
// ssl_certificate), and ACME. The Manager lives across reloads; each config
// generation compiles a Policy (host → source) that is swapped in whole.
//
// ACME is certmagic's: it obtains, stores (<data>/acme, keys 0600, atomic
// writes, locks), renews by lifetime fraction and ARI, and staples OCSP.
// What is written here is the glue: which names are managed through which
// challenge, the HTTP-01 handler and TLS-ALPN-01 certificates served on
// gatehouse's own listeners, DNS-01 through gatehouse's own DNS (a libdns
// provider over TXTPublisher, so wildcards need no DNS provider account),
// the on-demand policy, and the status `gatehouse certs` prints.
package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"

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
	acme     *acmePolicy      // nil without tls.acme
}

type entry struct {
	source Source
	cert   *tls.Certificate // for Files
	file   string
}

// Manager serves certificates for TLS handshakes. Set the exported fields
// before the first Manage.
type Manager struct {
	CA *LocalCA
	// DataDir holds ACME state in DataDir/acme. Empty means ACME sites are
	// served local-CA certificates.
	DataDir string
	// Log receives certificate events; nil means slog.Default().
	Log *slog.Logger
	// DNS publishes dns-01 records in gatehouse's own zones; nil means
	// wildcard names cannot get ACME certificates.
	DNS TXTPublisher

	policy atomic.Pointer[Policy]
	acme   atomic.Pointer[acmeGen]

	mu       sync.Mutex
	leaves   map[string]*tls.Certificate // internal leaves by name
	fallback *tls.Certificate
	limit    *nameLimiter // on-demand attempts, kept across reloads

	// acmeMu serialises Manage and Stop; the fields below are set once by
	// the first Manage.
	acmeMu  sync.Mutex
	stopped bool
	cache   *certmagic.Cache
	storage *certmagic.FileStorage
	status  *statusBook
	zl      *zap.Logger
	ctx     context.Context    // obtain jobs run under it
	cancel  context.CancelFunc // cancels them
	jobsKey string
	managed map[string]bool
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
	if cfg.TLS.ACME != nil {
		p.acme = m.compileACME(cfg, &errs)
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
	if cfg.ACMESite(s) {
		return ACME
	}
	return Internal
}

// IsPublicName reports whether a public CA could issue for h.
func IsPublicName(h string) bool { return config.IsPublicName(h) }

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
//
// ACME names get their ACME certificate; until it is issued they get a
// local-CA one, so the site answers (untrusted) rather than failing the
// handshake. Names in no site get an on-demand certificate when the
// on-demand policy allows them.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if isACMEChallenge(hello) {
		return m.challengeCertificate(hello)
	}
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	e, ok := m.lookup(name)
	if !ok {
		if name != "" {
			if c := m.acmeCertificate(hello, name, false); c != nil {
				return c, nil
			}
		}
		return m.fallbackCert()
	}
	switch e.source {
	case Files:
		return e.cert, nil
	case Internal:
		return m.internalLeaf(name)
	case ACME:
		if c := m.acmeCertificate(hello, name, true); c != nil {
			return c, nil
		}
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
