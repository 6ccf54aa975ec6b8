package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3"
	"github.com/mholt/acmez/v3/acme"

	"gatehouse/internal/config"
)

// Defaults for ACME certificates.
const (
	// DefaultRenewalWindow is the fraction of a certificate's lifetime left
	// when renewal starts: day 60 of 90, day 4 of 6.
	DefaultRenewalWindow = 1.0 / 3
	// DefaultCheckInterval is how often certificates are checked for
	// renewal.
	DefaultCheckInterval = 10 * time.Minute
	// dns01TTL is the TTL of published challenge records; resolvers should
	// not keep an old token long after a retry.
	dns01TTL = 60 * time.Second
)

// acmePolicy is the ACME part of a Policy: how the account and issuer are
// set up, and which names are managed through which challenge.
type acmePolicy struct {
	template      certmagic.ACMEIssuer
	keyType       certmagic.KeyType
	window        float64
	checkInterval time.Duration
	http, tlsalpn bool

	httpNames []string // validated by http-01 or tls-alpn-01
	dnsNames  []string // validated by dns-01 through gatehouse's DNS
	onDemand  *onDemandPolicy
	zoneFor   func(string) string
	key       string // what obtain jobs depend on; they restart when it changes
}

// compileACME reads tls.acme; it fails on files it cannot read, so a bad
// config is refused before anything changes.
func (m *Manager) compileACME(cfg *config.Config, errs *config.ErrorList) *acmePolicy {
	a := cfg.TLS.ACME
	ap := &acmePolicy{
		template: certmagic.ACMEIssuer{
			CA:     a.CA,
			Email:  a.Email,
			Agreed: true, // configuring an ACME CA is accepting its terms, as certbot --agree-tos
		},
		keyType:       certmagic.KeyType(a.KeyType),
		window:        a.Renewal.Window,
		checkInterval: a.Renewal.CheckInterval.D(),
		http:          a.HasChallenge(config.ChallengeHTTP01),
		tlsalpn:       a.HasChallenge(config.ChallengeTLSALPN01),
		zoneFor:       cfg.ZoneFor,
	}
	if ap.keyType == "" {
		ap.keyType = certmagic.P256
	}
	if ap.window == 0 {
		ap.window = DefaultRenewalWindow
	}
	if ap.checkInterval == 0 {
		ap.checkInterval = DefaultCheckInterval
	}
	if a.CARoot != "" {
		pem, err := os.ReadFile(a.CARoot)
		pool, perr := x509.SystemCertPool() // ca_root adds to the system roots
		if perr != nil {
			pool = x509.NewCertPool()
		}
		if err == nil && !pool.AppendCertsFromPEM(pem) {
			err = errors.New("no PEM certificate in it")
		}
		if err != nil {
			errs.Add(cfg.PosOf(&a.CARoot), fmt.Sprintf("loading ca_root %s: %v", a.CARoot, err))
		}
		ap.template.TrustedRoots = pool
	}
	if e := a.EAB; e != nil {
		ap.template.ExternalAccount = &acme.EAB{KeyID: e.KeyID, MACKey: e.MACKey}
	}
	dnsOK := a.HasChallenge(config.ChallengeDNS01)
	for i := range cfg.Sites {
		s := &cfg.Sites[i]
		if SiteSource(cfg, s) != ACME {
			continue
		}
		for _, h := range s.Hosts {
			viaDNS := dnsOK && cfg.ZoneFor(h) != "" && (strings.HasPrefix(h, "*.") || (!ap.http && !ap.tlsalpn))
			switch {
			case viaDNS:
				ap.dnsNames = append(ap.dnsNames, h)
			case strings.HasPrefix(h, "*."):
				// Names under the wildcard get certificates on demand.
			default:
				ap.httpNames = append(ap.httpNames, h)
			}
		}
	}
	eab := ""
	if a.EAB != nil {
		eab = a.EAB.KeyID + ":" + a.EAB.MACKey
	}
	ap.key = fmt.Sprintf("%s|%s|%s|%s|%s|%v|%v|%q|%q", a.CA, a.Email, eab, a.CARoot, ap.keyType, ap.http, ap.tlsalpn, ap.httpNames, ap.dnsNames)
	if a.OnDemand != nil {
		od, err := newOnDemandPolicy(cfg, m.limiter(a.OnDemand.Interval.D()))
		if err != nil {
			errs.Add(cfg.PosOf(a.OnDemand), err.Error())
		}
		ap.onDemand = od
	}
	return ap
}

// limiter returns the per-name attempt limiter, kept across reloads so a
// reload does not reset it.
func (m *Manager) limiter(every time.Duration) *nameLimiter {
	if every == 0 {
		every = defaultOnDemandInterval
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.limit == nil || m.limit.every != every {
		m.limit = newNameLimiter(every, onDemandBurst)
	}
	return m.limit
}

// acmeGen is the certmagic side of one policy. All configs share the
// Manager's certificate cache and storage.
type acmeGen struct {
	policy     *acmePolicy
	http       *certmagic.Config // http-01 and tls-alpn-01; also the cache lookups
	httpIssuer *certmagic.ACMEIssuer
	dns        *certmagic.Config // dns-01; nil without a DNS server
	demand     *certmagic.Config // on-demand; nil when off
	exact      map[string]bool   // names managed ahead of time
}

// Ports are the listeners the CA's challenge checks reach, as host:port;
// an empty one disables its challenge.
type Ports struct {
	HTTP, HTTPS string
}

// Manage starts or updates ACME for the policy in use: names managed ahead
// of time are loaded from storage or obtained in the background, and names
// no longer configured stop being renewed. Call it after the listeners are
// open and after every Use. Nothing blocks on the CA.
func (m *Manager) Manage(ports Ports) error {
	m.acmeMu.Lock()
	defer m.acmeMu.Unlock()
	if m.stopped {
		return errors.New("certificate manager is stopped")
	}
	var ap *acmePolicy
	if p := m.policy.Load(); p != nil {
		ap = p.acme
	}
	if ap == nil || m.DataDir == "" {
		m.unmanage(nil)
		m.acme.Store(nil)
		if m.cancel != nil {
			m.cancel()
		}
		m.jobsKey = ""
		return nil
	}
	if err := m.startACME(ap); err != nil {
		return err
	}
	gen := m.newGen(ap, ports)
	m.acme.Store(gen)
	m.unmanage(gen.exact)
	m.status.setWindow(ap.window)

	// Obtain jobs capture the config they started with and retry for
	// days; so they are started again only when what they depend on
	// changed, and the old ones are cancelled. Names already in the cache
	// return at once.
	key := fmt.Sprintf("%s|%+v|%v", ap.key, ports, m.DNS != nil)
	if key == m.jobsKey {
		return nil
	}
	m.jobsKey = key
	if m.cancel != nil {
		m.cancel()
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	if len(ap.httpNames) > 0 {
		if err := gen.http.ManageAsync(m.ctx, ap.httpNames); err != nil {
			return fmt.Errorf("managing certificates: %w", err)
		}
	}
	if len(ap.dnsNames) > 0 {
		if gen.dns == nil {
			m.log().Error("wildcard certificates need the dns-01 challenge, and no DNS server is running to answer it: set dns.listen", "names", ap.dnsNames)
		} else if err := gen.dns.ManageAsync(m.ctx, ap.dnsNames); err != nil {
			return fmt.Errorf("managing certificates: %w", err)
		}
	}
	return nil
}

// startACME opens storage and the certificate cache, once per Manager.
func (m *Manager) startACME(ap *acmePolicy) error {
	if m.cache != nil {
		return nil
	}
	dir := filepath.Join(m.DataDir, "acme")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating ACME storage: %w", err)
	}
	m.zl = zapLogger(m.log())
	m.storage = &certmagic.FileStorage{Path: dir}
	m.status = openStatus(dir)
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   m.configForCert,
		RenewCheckInterval: ap.checkInterval,
		Logger:             m.zl,
	})
	return nil
}

func (m *Manager) newGen(ap *acmePolicy, ports Ports) *acmeGen {
	gen := &acmeGen{policy: ap, exact: map[string]bool{}}
	for _, n := range slices.Concat(ap.httpNames, ap.dnsNames) {
		gen.exact[n] = true
	}
	newConfig := func(od *certmagic.OnDemandConfig, viaDNS bool) (*certmagic.Config, *certmagic.ACMEIssuer) {
		cfg := certmagic.New(m.cache, certmagic.Config{
			RenewalWindowRatio: ap.window,
			KeySource:          certmagic.StandardKeyGenerator{KeyType: ap.keyType},
			Storage:            m.storage,
			OnEvent:            m.onEvent,
			ShouldEmitFunc:     emitted,
			OnDemand:           od,
			Logger:             m.zl,
		})
		tmpl := ap.template
		tmpl.Logger = m.zl
		if viaDNS {
			tmpl.DNS01Solver = &dns01Solver{provider: &TXTProvider{Publisher: m.DNS}, zoneFor: ap.zoneFor, ttl: dns01TTL}
		} else {
			// certmagic starts its own challenge listener when it can bind
			// the port; pointing it at gatehouse's own sockets makes it
			// find them taken and leave the answering to gatehouse.
			host, port := splitPort(ports.HTTP)
			tmpl.ListenHost, tmpl.AltHTTPPort = host, port
			_, tmpl.AltTLSALPNPort = splitPort(ports.HTTPS)
			tmpl.DisableHTTPChallenge = !ap.http || ports.HTTP == ""
			tmpl.DisableTLSALPNChallenge = !ap.tlsalpn || ports.HTTPS == ""
		}
		iss := certmagic.NewACMEIssuer(cfg, tmpl)
		cfg.Issuers = []certmagic.Issuer{iss}
		return cfg, iss
	}
	gen.http, gen.httpIssuer = newConfig(nil, false)
	if m.DNS != nil {
		gen.dns, _ = newConfig(nil, true)
	}
	if ap.onDemand != nil {
		od := &certmagic.OnDemandConfig{DecisionFunc: ap.onDemand.decide}
		viaDNS := !ap.http && !ap.tlsalpn && m.DNS != nil
		gen.demand, _ = newConfig(od, viaDNS)
	}
	return gen
}

func splitPort(hostport string) (string, int) {
	host, p, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", 0
	}
	n, _ := strconv.Atoi(p)
	return host, n
}

// unmanage stops renewing certificates for names no longer in keep.
func (m *Manager) unmanage(keep map[string]bool) {
	if m.cache == nil {
		return
	}
	var gone []certmagic.SubjectIssuer
	for n := range m.managed {
		if !keep[n] {
			gone = append(gone, certmagic.SubjectIssuer{Subject: n})
		}
	}
	if len(gone) > 0 {
		m.cache.RemoveManaged(gone)
	}
	m.managed = keep
}

// configForCert tells certmagic's maintenance which config renews a cached
// certificate: the one whose challenge can validate its names under the
// policy in force now.
func (m *Manager) configForCert(cert certmagic.Certificate) (*certmagic.Config, error) {
	gen := m.acme.Load()
	if gen == nil {
		return nil, errors.New("ACME is not configured")
	}
	for _, n := range cert.Names {
		if slices.Contains(gen.policy.dnsNames, n) && gen.dns != nil {
			return gen.dns, nil
		}
	}
	for _, n := range cert.Names {
		if !gen.exact[n] && gen.demand != nil {
			return gen.demand, nil
		}
	}
	return gen.http, nil
}

// handshakeLookup bounds what certmagic may do for one handshake (storage
// reads, the on-demand "ask", issuing a certificate): a client does not
// wait longer, and a pile of handshakes for made-up names must not hold
// their goroutines and sockets for certmagic's own limits (minutes).
const handshakeLookup = 10 * time.Second

// acmeCertificate returns the ACME certificate for the handshake, obtaining
// one on demand when the policy allows; nil when there is none (yet).
func (m *Manager) acmeCertificate(hello *tls.ClientHelloInfo, name string, configured bool) *tls.Certificate {
	gen := m.acme.Load()
	if gen == nil || (!configured && gen.demand == nil) {
		return nil // spare certmagic's cache-miss path for names it cannot serve
	}
	ctx, cancel := context.WithTimeout(hello.Context(), handshakeLookup)
	defer cancel()
	if c, err := gen.http.GetCertificateWithContext(ctx, hello); err == nil {
		return c
	}
	if gen.demand == nil || gen.exact[name] {
		return nil
	}
	c, err := gen.demand.GetCertificateWithContext(ctx, hello)
	if errors.Is(err, errRefused) {
		// Debug: scanners send made-up names all day.
		m.log().Debug("no on-demand certificate", "server_name", name, "error", err)
		return nil
	}
	if err != nil {
		m.log().Warn("no on-demand certificate", "server_name", name, "error", err)
		return nil
	}
	return c
}

// isACMEChallenge reports a TLS-ALPN-01 validation handshake (RFC 8737
// §3: the only protocol offered is acme-tls/1).
func isACMEChallenge(hello *tls.ClientHelloInfo) bool {
	return len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == acmez.ACMETLS1Protocol
}

func (m *Manager) challengeCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	gen := m.acme.Load()
	if gen == nil {
		return nil, errors.New("no ACME challenge is being answered")
	}
	ctx, cancel := context.WithTimeout(hello.Context(), handshakeLookup)
	defer cancel()
	return gen.http.GetCertificateWithContext(ctx, hello)
}

// HTTPChallenge answers ACME HTTP-01 requests under
// /.well-known/acme-challenge/; anything else gets 404. It lives as long
// as the Manager.
func (m *Manager) HTTPChallenge() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gen := m.acme.Load(); gen != nil && gen.httpIssuer.HandleHTTPChallenge(w, r) {
			return
		}
		http.NotFound(w, r)
	})
}

// emitted names the events onEvent handles; certmagic skips building the
// others, one of which it would build on every handshake.
func emitted(event string) bool { return event == "cert_obtained" || event == "cert_failed" }

// onEvent records outcomes for `gatehouse certs` and logs failures in the
// CA's own words with a hint in plain ones.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	switch event {
	case "cert_obtained":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		m.status.succeeded(name)
		m.log().Info("certificate obtained", "name", name, "renewal", renewal, "issuer", data["issuer"])
	case "cert_failed":
		name, _ := data["identifier"].(string)
		renewal, _ := data["renewal"].(bool)
		err, _ := data["error"].(error)
		msg := "unknown error"
		if err != nil {
			msg = err.Error()
		}
		m.status.failed(name, msg)
		attrs := []any{"name", name, "error", msg}
		if hint := FailureHint(msg); hint != "" {
			attrs = append(attrs, "hint", hint)
		}
		if renewal {
			m.log().Error("renewing certificate failed; the current certificate is still served and renewal will be retried", attrs...)
		} else {
			m.log().Error("obtaining certificate failed; it will be retried", attrs...)
		}
	}
	return nil
}

// FailureHint explains an ACME failure in plain words, or returns "".
// Problems the CA sent (urn:ietf:params:acme:error:…) are about what the CA
// saw; bare network errors are gatehouse failing to reach the CA.
func FailureHint(msg string) string {
	const unreachable = "the CA could not reach this server to check the challenge: make sure ports 80 and 443 are open to the internet (firewall, cloud security group, router port forwarding) and that the name's DNS points here"
	fromCA := strings.Contains(msg, "urn:ietf:params:acme:error:")
	netErr := strings.Contains(msg, "connection refused") || strings.Contains(msg, "timeout") ||
		strings.Contains(msg, "Timeout") || strings.Contains(msg, "no route to host")
	switch {
	case strings.Contains(msg, "urn:ietf:params:acme:error:connection"),
		strings.Contains(msg, "urn:ietf:params:acme:error:incorrectResponse"),
		strings.Contains(msg, "urn:ietf:params:acme:error:tls"):
		return unreachable
	case strings.Contains(msg, "urn:ietf:params:acme:error:dns"):
		return "the CA could not look the name up in DNS: check that the name resolves publicly, or for dns-01 that the zone is delegated to this server"
	case strings.Contains(msg, "urn:ietf:params:acme:error:unauthorized"):
		return "the CA saw a different answer than gatehouse published: check that the name's DNS points to this server and no other proxy answers first"
	case strings.Contains(msg, "urn:ietf:params:acme:error:rateLimited"):
		return "the CA's rate limit was reached: gatehouse retries later on its own"
	case strings.Contains(msg, "urn:ietf:params:acme:error:externalAccountRequired"):
		return "this CA needs External Account Binding: set tls.acme.eab with the key_id and mac_key the CA gave you"
	case fromCA && netErr:
		return unreachable
	case !fromCA && (netErr || strings.Contains(msg, "no such host") || strings.Contains(msg, "certificate signed by unknown authority")):
		return "gatehouse could not talk to the CA's API: check tls.acme.ca, outbound network access, and tls.acme.ca_root for a private CA"
	}
	return ""
}

// Stop ends background issuance and renewal. Certificates already loaded
// keep being served by GetCertificate.
func (m *Manager) Stop() {
	m.acmeMu.Lock()
	defer m.acmeMu.Unlock()
	if m.stopped {
		return
	}
	m.stopped = true
	if m.cancel != nil {
		m.cancel()
	}
	if m.cache != nil {
		m.cache.Stop()
	}
}

func (m *Manager) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.Default()
}

// Pending lists, sorted, the names managed ahead of time that have no
// certificate clients accept yet: on a first start until the CA issues
// them, for good while the CA refuses (gatehouse certs says why), and once
// the only one left has expired because renewals kept failing. A name
// with no certificate is served the local CA's meanwhile.
// The names come from the policy in use, so that they are pending too
// when ACME could not start.
func (m *Manager) Pending() []string {
	p := m.policy.Load()
	if p == nil || p.acme == nil {
		return nil
	}
	var out []string
	for _, name := range slices.Concat(p.acme.httpNames, p.acme.dnsNames) {
		if m.acme.Load() == nil || !slices.ContainsFunc(m.cache.AllMatchingCertificates(name), usable) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// usable is a certificate that has not expired.
func usable(c certmagic.Certificate) bool { return !c.Expired() }
