package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// CORS is a cross-origin resource sharing policy, answered at the edge; see
// docs/cors.md. Written short as the allowed origins (`cors: "*"`).
type CORS struct {
	// Origins are allowed origins: exact (https://app.example.org), a
	// one-label wildcard (https://*.example.org), or "*" for any.
	Origins []string `yaml:"origins,short"`
	// Methods may be used in cross-origin requests (default GET, HEAD,
	// POST, which browsers allow without asking).
	Methods []string `yaml:"methods"`
	// Headers are request headers scripts may send beyond the safelisted
	// ones; "*" allows any (only without credentials).
	Headers []string `yaml:"headers"`
	// ExposeHeaders are response headers scripts may read beyond the
	// safelisted ones; "*" exposes all (only without credentials).
	ExposeHeaders []string `yaml:"expose_headers"`
	// Credentials lets scripts send cookies and HTTP auth and read the
	// answer (fetch with credentials: "include").
	Credentials bool `yaml:"credentials"`
	// MaxAge is how long browsers may cache a preflight answer; 0 leaves
	// it to the browser (5s in Chromium, which caps it at 2h).
	MaxAge Duration `yaml:"max_age"`
}

// RateLimit caps how fast one client may send requests to a route: a
// token bucket of Burst requests refilled at Requests per Per.
type RateLimit struct {
	Requests int      `yaml:"requests"`
	Per      Duration `yaml:"per"`   // default 1s
	Burst    int      `yaml:"burst"` // default Requests
}

// Origin is an allowed origin as written in a cors policy, normalised the
// way browsers serialise the Origin header: lower-case scheme and host, the
// default port left out.
type Origin struct {
	Scheme string // http or https
	// Host is a name or address ([::1] in brackets); Wildcard means any
	// single label in front of it (https://*.example.org has Host
	// example.org).
	Host     string
	Wildcard bool
	// Port is empty for the scheme's default port.
	Port string
}

// String is the origin as a browser sends it.
func (o Origin) String() string {
	s := o.Scheme + "://"
	if o.Wildcard {
		s += "*."
	}
	s += o.Host
	if o.Port != "" {
		s += ":" + o.Port
	}
	return s
}

// ParseOrigin reads an origin as written in a cors policy: scheme://host
// with an optional port, and no path, query or user. A leading "*." in the
// host allows any single label there.
func ParseOrigin(s string) (Origin, error) {
	var o Origin
	if s == "null" {
		return o, fmt.Errorf(`origin "null" is sent by sandboxed frames, local files and redirects, which any page can make: allowing it allows everyone; use "*" if that is meant`)
	}
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, fmt.Errorf("origin %q is not scheme://host: write https://app.example.org", s)
	}
	o.Scheme = strings.ToLower(scheme)
	if o.Scheme != "http" && o.Scheme != "https" {
		return o, fmt.Errorf("origin %q has scheme %q: use http or https", s, scheme)
	}
	if rest == "" || strings.ContainsAny(rest, "/?#@ \\") {
		return o, fmt.Errorf("origin %q must be scheme://host[:port] alone, with no path, query or user", s)
	}
	if strings.HasPrefix(rest, "*.") {
		o.Wildcard = true
		rest = rest[2:]
	}
	u, err := url.Parse(o.Scheme + "://" + rest)
	if err != nil || u.Host != rest || u.Hostname() == "" {
		return o, fmt.Errorf("origin %q has no valid host: write https://app.example.org", s)
	}
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	for _, label := range strings.Split(strings.Trim(host, "[]"), ".") {
		if label == "" || strings.Contains(label, "*") {
			return o, fmt.Errorf("origin %q: a wildcard may only stand for the first label, as in https://*.example.org", s)
		}
	}
	o.Host = host
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return o, fmt.Errorf("origin %q: port %s is out of range, use 1 to 65535", s, p)
		}
		if !(o.Scheme == "http" && n == 80 || o.Scheme == "https" && n == 443) {
			o.Port = strconv.Itoa(n)
		}
	}
	return o, nil
}

// validateCORS checks what each site and route asks of browsers and of
// third parties: cors policies, rate limits and the proxy's credential
// policy.
func (c *Config) validateCORS(errs *ErrorList) {
	for i := range c.Sites {
		s := &c.Sites[i]
		if s.CORS != nil {
			c.checkCORS(errs, s.CORS)
		}
		for j := range s.Routes {
			r := &s.Routes[j]
			if r.CORS != nil {
				c.checkCORS(errs, r.CORS)
			}
			if r.RateLimit != nil {
				c.checkRateLimit(errs, r.RateLimit)
			}
		}
	}
}

func (c *Config) checkCORS(errs *ErrorList, p *CORS) {
	if len(p.Origins) == 0 {
		errs.Add(c.PosOf(p), `cors needs origins: origins: [https://app.example.org] (or "*" for any)`)
	}
	any := false
	for i := range p.Origins {
		o := &p.Origins[i]
		if *o == "*" {
			any = true
			continue
		}
		if _, err := ParseOrigin(*o); err != nil {
			errs.Add(c.PosOf(o), err.Error())
		}
	}
	if any && len(p.Origins) > 1 {
		errs.Add(c.PosOf(&p.Origins), `origins has "*" beside other origins: "*" allows every origin, keep it alone or list the origins`)
	}
	if p.Credentials && any {
		errs.Add(c.PosOf(&p.Credentials), `cors credentials with origins "*": browsers refuse credentialed answers for any origin, list the origins allowed to send credentials`)
	}
	for i := range p.Methods {
		m := &p.Methods[i]
		if *m == "*" {
			if p.Credentials {
				errs.Add(c.PosOf(m), `methods "*" with credentials: browsers read it as a method named "*", list the methods`)
			}
			continue
		}
		if !isToken(*m) {
			errs.Add(c.PosOf(m), fmt.Sprintf("method %q is not a valid token: write GET, PUT, DELETE…", *m))
		} else if strings.ToUpper(*m) != *m {
			errs.Add(c.PosOf(m), fmt.Sprintf("method %q must be upper case (%s): methods are case-sensitive", *m, strings.ToUpper(*m)))
		}
	}
	for _, list := range []struct {
		v    []string
		what string
	}{{p.Headers, "headers"}, {p.ExposeHeaders, "expose_headers"}} {
		for i := range list.v {
			h := &list.v[i]
			if *h == "*" {
				if p.Credentials {
					errs.Add(c.PosOf(h), fmt.Sprintf(`%s "*" with credentials: browsers read it as a header named "*", list the headers`, list.what))
				}
				continue
			}
			if !isToken(*h) {
				errs.Add(c.PosOf(h), fmt.Sprintf("%s: %q is not a valid header name", list.what, *h))
			}
		}
	}
	if p.MaxAge < 0 || p.MaxAge.D()%time.Second != 0 {
		errs.Add(c.PosOf(&p.MaxAge), fmt.Sprintf("max_age %s must be whole seconds, 0 or more: write 10m or 2h", p.MaxAge.D()))
	}
}

func (c *Config) checkRateLimit(errs *ErrorList, rl *RateLimit) {
	if rl.Requests < 1 {
		errs.Add(c.PosOf(rl), "rate_limit needs requests of 1 or more: rate_limit: {requests: 10, per: 1s, burst: 20}")
	}
	if rl.Per < 0 {
		errs.Add(c.PosOf(&rl.Per), fmt.Sprintf("rate_limit per %s must be positive: write 1s or 1m", rl.Per.D()))
	}
	if rl.Burst < 0 {
		errs.Add(c.PosOf(&rl.Burst), fmt.Sprintf("rate_limit burst %d must be 1 or more", rl.Burst))
	}
}

// isToken reports whether s is an RFC 9110 token (a method or header name).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			return false
		}
	}
	return true
}
