package config

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"net/mail"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
)

// ACME is the account and CA used for automatic certificates, and how they
// are obtained and renewed.
type ACME struct {
	// Email is the account contact the CA writes to about expiring or
	// revoked certificates. Optional but recommended.
	Email string `yaml:"email"`
	// CA is the ACME directory URL; default Let's Encrypt production
	// (staging: https://acme-staging-v02.api.letsencrypt.org/directory).
	CA string `yaml:"ca"`
	// CARoot is a PEM file of extra roots trusted for the CA's own API
	// (a company step-ca, Pebble); the system roots are used otherwise.
	CARoot string `yaml:"ca_root"`
	// EAB is the External Account Binding some CAs require.
	EAB *EAB `yaml:"eab"`
	// KeyType is the certificates' key: p256 (default), p384, rsa2048,
	// rsa4096 or ed25519.
	KeyType string `yaml:"key_type"`
	// Challenges limits the challenge types tried: http-01, tls-alpn-01,
	// dns-01. Empty means http-01 and tls-alpn-01 for single names and
	// dns-01 (through gatehouse's own DNS) for wildcards.
	Challenges []string `yaml:"challenges"`
	// OnDemand, when present, obtains certificates during the first TLS
	// handshake for names not listed in any site, as the policy allows.
	OnDemand *OnDemand `yaml:"on_demand"`
	// Renewal sets when certificates are renewed.
	Renewal Renewal `yaml:"renewal"`
}

// EAB is an External Account Binding: a key id and a base64url MAC key
// given by the CA.
type EAB struct {
	KeyID  string `yaml:"key_id"`
	MACKey string `yaml:"mac_key"`
}

// OnDemand guards on-demand certificates. A name qualifies when it is in
// Allow, matches Pattern, or Ask answers 2xx; with none of the three set,
// names inside a served DNS zone or matching a site host qualify.
type OnDemand struct {
	// Allow lists names (or *.example.org wildcards) that qualify.
	Allow []string `yaml:"allow"`
	// Pattern is an RE2 expression a whole name must match.
	Pattern string `yaml:"pattern"`
	// Ask is a URL asked GET ?domain=NAME before each issuance; a 2xx
	// answer allows it.
	Ask string `yaml:"ask"`
	// Interval is the minimum time between issuance attempts for one name
	// after the first two (default 10m; a burst of two is always allowed).
	Interval Duration `yaml:"interval"`
}

// Renewal sets when certificates are renewed. The CA's renewal window
// (ARI) wins when it offers one.
type Renewal struct {
	// Window is the fraction of a certificate's lifetime left when renewal
	// starts (default 0.33: day 60 of a 90-day certificate, day 4 of six).
	Window float64 `yaml:"window"`
	// CheckInterval is how often certificates are checked (default 10m).
	CheckInterval Duration `yaml:"check_interval"`
}

// Challenge type names as written in the config.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
	ChallengeDNS01     = "dns-01"
)

// HasChallenge reports whether challenge typ may be used.
func (a *ACME) HasChallenge(typ string) bool {
	if len(a.Challenges) == 0 {
		return true
	}
	for _, c := range a.Challenges {
		if c == typ {
			return true
		}
	}
	return false
}

// ZoneFor returns the served DNS zone that contains name (the longest
// one), or "" when gatehouse is not authoritative for it.
func (c *Config) ZoneFor(name string) string {
	if len(c.DNS.Listen) == 0 {
		return ""
	}
	name = strings.TrimPrefix(strings.ToLower(strings.TrimSuffix(name, ".")), "*.")
	best := ""
	for z := range c.DNS.Zones {
		z = strings.ToLower(strings.TrimSuffix(z, "."))
		if (name == z || strings.HasSuffix(name, "."+z)) && len(z) > len(best) {
			best = z
		}
	}
	return best
}

// IsPublicName reports whether a public CA could issue for h: not an IP
// address, not a single label, not a reserved or local-only suffix.
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

// ACMESite reports whether the site gets its certificate from ACME, by the
// same rule the certificate manager follows.
func (c *Config) ACMESite(s *Site) bool {
	switch s.TLS.Mode {
	case "acme":
		return true
	case "":
		if c.TLS.ACME == nil {
			return false
		}
		for _, h := range s.Hosts {
			if !IsPublicName(h) {
				return false
			}
		}
		return true
	}
	return false
}

func (c *Config) validateACME(errs *ErrorList) {
	a := c.TLS.ACME
	if a == nil {
		return
	}
	if a.Email != "" {
		if _, err := mail.ParseAddress(a.Email); err != nil || strings.ContainsAny(a.Email, "<> ") {
			errs.Add(c.PosOf(&a.Email), fmt.Sprintf("email %q is not an address: write ops@example.org", a.Email))
		}
	}
	if a.CARoot != "" {
		c.checkPEMRoots(errs, &a.CARoot)
	}
	if e := a.EAB; e != nil {
		if e.KeyID == "" || e.MACKey == "" {
			errs.Add(c.PosOf(e), "eab needs both key_id and mac_key, as the CA gave them")
		} else if _, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(e.MACKey, "=")); err != nil {
			errs.Add(c.PosOf(&e.MACKey), "eab mac_key is not base64url: paste it exactly as the CA gave it")
		}
	}
	if a.KeyType != "" {
		c.checkOneOf(errs, &a.KeyType, "key_type", "p256", "p384", "rsa2048", "rsa4096", "ed25519")
	}
	for i := range a.Challenges {
		ch := &a.Challenges[i]
		c.checkOneOf(errs, ch, "challenge", ChallengeHTTP01, ChallengeTLSALPN01, ChallengeDNS01)
		if *ch == ChallengeDNS01 && len(c.DNS.Listen) == 0 {
			errs.Add(c.PosOf(ch), "dns-01 is answered by gatehouse's own DNS server: set dns.listen and serve the sites' zones in dns.zones")
		}
	}
	if r := &a.Renewal; r.Window != 0 && (r.Window <= 0 || r.Window >= 1) {
		errs.Add(c.PosOf(&r.Window), "renewal window is the fraction of the lifetime left when renewal starts: write a number between 0 and 1, such as 0.33")
	}
	if r := &a.Renewal; r.CheckInterval < 0 {
		errs.Add(c.PosOf(&r.CheckInterval), "renewal check_interval must be positive, such as 10m")
	}
	if od := a.OnDemand; od != nil {
		for i := range od.Allow {
			if msg := checkHost(od.Allow[i]); msg != "" {
				errs.Add(c.PosOf(&od.Allow[i]), "on_demand allow: "+msg)
			}
		}
		if od.Pattern != "" {
			if _, err := regexp.Compile(od.Pattern); err != nil {
				errs.Add(c.PosOf(&od.Pattern), fmt.Sprintf("on_demand pattern %q does not compile: %v", od.Pattern, err))
			}
		}
		if od.Ask != "" {
			c.checkURL(errs, &od.Ask, "on_demand ask", "https", "http")
		}
		if od.Interval < 0 {
			errs.Add(c.PosOf(&od.Interval), "on_demand interval must be positive, such as 10m")
		}
	}
	for i := range c.Sites {
		c.validateACMESite(errs, &c.Sites[i])
	}
	c.warnFirewallBlocksChallenges(errs)
}

func (c *Config) checkPEMRoots(errs *ErrorList, file *string) {
	data, err := os.ReadFile(*file)
	if err != nil {
		errs.Add(c.PosOf(file), fmt.Sprintf("cannot read ca_root %q: %v: check the path and that gatehouse may read it", *file, unwrapPathErr(err)))
		return
	}
	n := 0
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		if b.Type == "CERTIFICATE" {
			if _, err := x509.ParseCertificate(b.Bytes); err != nil {
				errs.Add(c.PosOf(file), fmt.Sprintf("ca_root %q holds a certificate that does not parse: %v", *file, err))
				return
			}
			n++
		}
	}
	if n == 0 {
		errs.Add(c.PosOf(file), fmt.Sprintf("ca_root %q holds no PEM certificate: give the CA's root as -----BEGIN CERTIFICATE-----", *file))
	}
}

func (c *Config) validateACMESite(errs *ErrorList, s *Site) {
	if !c.ACMESite(s) {
		return
	}
	a := c.TLS.ACME
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if !IsPublicName(strings.TrimPrefix(*h, "*.")) {
			errs.Add(c.PosOf(h), fmt.Sprintf("no public CA issues for %q: use tls: internal for this site", *h))
			continue
		}
		if !strings.HasPrefix(*h, "*.") {
			if !a.HasChallenge(ChallengeHTTP01) && !a.HasChallenge(ChallengeTLSALPN01) && c.ZoneFor(*h) == "" {
				errs.Add(c.PosOf(h), fmt.Sprintf("%q can only be validated by dns-01, and gatehouse does not serve its zone: add the zone to dns.zones or allow http-01", *h))
			}
			continue
		}
		if (a.HasChallenge(ChallengeDNS01) && c.ZoneFor(*h) != "") || a.OnDemand != nil {
			continue
		}
		errs.Add(c.PosOf(h), fmt.Sprintf("wildcard %q needs the dns-01 challenge, which gatehouse answers only for zones it serves: add its zone to dns.zones (with dns.listen), or set tls.acme.on_demand to get one certificate per name", *h))
	}
}

// warnFirewallBlocksChallenges warns when the firewall would keep the CA
// from reaching the challenge a site relies on: the first cause of failed
// renewals with certbot is a closed port 80.
func (c *Config) warnFirewallBlocksChallenges(errs *ErrorList) {
	a := c.TLS.ACME
	if len(c.Firewall.Rules) == 0 && c.Firewall.Default != "deny" {
		return
	}
	uses := false
	for i := range c.Sites {
		uses = uses || c.ACMESite(&c.Sites[i])
	}
	if !uses && a.OnDemand == nil {
		return
	}
	type need struct {
		challenge, proto string
		port             int
		listening        bool
	}
	needs := []need{
		{ChallengeHTTP01, "tcp", 80, len(c.Listen.HTTP) > 0},
		{ChallengeTLSALPN01, "tcp", 443, len(c.Listen.HTTPS) > 0},
	}
	var open []string
	var blocked []need
	var blockedBy []Pos
	for _, n := range needs {
		if !a.HasChallenge(n.challenge) || !n.listening {
			continue
		}
		if ok, pos := c.firewallAllowsAnyone(n.proto, n.port); ok {
			open = append(open, n.challenge)
		} else {
			blocked = append(blocked, n)
			blockedBy = append(blockedBy, pos)
		}
	}
	if len(open) > 0 {
		return // one open challenge is enough to validate
	}
	for i, n := range blocked {
		errs.Warn(blockedBy[i], fmt.Sprintf("the firewall blocks %s/%d from the internet, so the CA cannot complete the ACME %s challenge and certificates will not be issued or renewed: allow %s port %d", n.proto, n.port, n.challenge, n.proto, n.port))
	}
}

// firewallAllowsAnyone reports whether a packet to proto/port from an
// arbitrary internet address passes the rules, and the position of what
// decided it.
func (c *Config) firewallAllowsAnyone(proto string, port int) (bool, Pos) {
	for i := range c.Firewall.Rules {
		r := &c.Firewall.Rules[i]
		if len(r.From) > 0 {
			continue // the CA's validation addresses are not published
		}
		verdict, p := "allow", r.Allow
		if r.Allow == "" {
			verdict, p = "deny", r.Deny+r.Reject
		}
		if p != proto && p != "any" {
			continue
		}
		if !portListed(r.Ports, port) {
			continue
		}
		return verdict == "allow", c.PosOf(r)
	}
	def := c.Firewall.Default
	if def == "" && len(c.Firewall.Rules) > 0 {
		def = "deny"
	}
	return def != "deny", c.PosOf(&c.Firewall.Default)
}

func portListed(ports []string, port int) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		lo, hi, isRange := strings.Cut(p, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 == nil && err2 == nil && a <= port && port <= b {
			return true
		}
	}
	return false
}
