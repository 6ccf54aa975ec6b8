package config

import (
	"fmt"
	"maps"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

func (c *Config) setDefaults() {
	if len(c.Listen.HTTP) == 0 {
		c.Listen.HTTP = []string{":80"}
	}
	if len(c.Listen.HTTPS) == 0 {
		c.Listen.HTTPS = []string{":443"}
	}
	s := &c.Server
	if s.ReadHeaderTimeout == 0 {
		s.ReadHeaderTimeout = Duration(10 * time.Second)
	}
	if s.IdleTimeout == 0 {
		s.IdleTimeout = Duration(2 * time.Minute)
	}
	if s.MaxHeaderBytes == 0 {
		s.MaxHeaderBytes = 64 << 10
	}
	if s.ShutdownTimeout == 0 {
		s.ShutdownTimeout = Duration(15 * time.Second)
	}
	if c.Journey.Keep == 0 {
		c.Journey.Keep = 200
	}
	if c.Log.Format == "" {
		c.Log.Format = "json"
	}
	if c.Log.Level == "" {
		c.Log.Level = "info"
	}
	if c.Log.Access == "" {
		c.Log.Access = "stderr"
	}
	for i := range c.Sites {
		site := &c.Sites[i]
		for j, h := range site.Hosts {
			site.Hosts[j] = strings.ToLower(strings.TrimSuffix(h, "."))
		}
		for j := range site.Routes {
			r := &site.Routes[j]
			if r.Path == "" {
				r.Path = "/"
			}
			if p := r.Proxy; p != nil {
				if p.Policy == "" {
					p.Policy = "round_robin"
				}
				if p.DialTimeout == 0 {
					p.DialTimeout = Duration(5 * time.Second)
				}
				if p.HeaderTimeout == 0 {
					p.HeaderTimeout = Duration(60 * time.Second)
				}
				if p.IdleTimeout == 0 {
					p.IdleTimeout = Duration(90 * time.Second)
				}
				if p.MaxIdle == 0 {
					p.MaxIdle = 1024
				}
			}
			if st := r.Static; st != nil {
				if len(st.Index) == 0 {
					st.Index = []string{"index.html"}
				}
				if st.SPA && st.Fallback == "" {
					st.Fallback = "/index.html"
				}
			}
			if rd := r.Redirect; rd != nil && rd.Status == 0 {
				rd.Status = 302
			}
			if rs := r.Respond; rs != nil {
				if rs.Status == 0 {
					rs.Status = 200
				}
				if rs.ContentType == "" {
					rs.ContentType = "text/plain; charset=utf-8"
				}
			}
		}
	}
}

func (c *Config) validate(errs *ErrorList) {
	for i := range c.Listen.HTTP {
		c.checkListenAddr(errs, &c.Listen.HTTP[i])
	}
	for i := range c.Listen.HTTPS {
		c.checkListenAddr(errs, &c.Listen.HTTPS[i])
	}
	if c.Demo != "" {
		c.checkListenAddr(errs, &c.Demo)
	}
	if c.Admin.Listen != "" {
		c.checkListenAddr(errs, &c.Admin.Listen)
		if host, _, err := net.SplitHostPort(c.Admin.Listen); err == nil {
			if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
				errs.Add(c.PosOf(&c.Admin.Listen), fmt.Sprintf("admin address %q is not a loopback address: the admin API must stay on this machine, use 127.0.0.1:2019", c.Admin.Listen))
			}
		}
	}
	if c.Admin.Token != "" && c.Admin.TokenFile != "" {
		errs.Add(c.PosOf(&c.Admin.TokenFile), "admin has both token and token_file: keep one")
	}
	if c.Admin.TokenFile != "" {
		if _, err := os.ReadFile(c.Admin.TokenFile); err != nil {
			errs.Add(c.PosOf(&c.Admin.TokenFile), fmt.Sprintf("cannot read admin token file %q: %v", c.Admin.TokenFile, unwrapPathErr(err)))
		}
	}
	for i := range c.Server.TrustedProxies {
		p := &c.Server.TrustedProxies[i]
		if _, err := ParsePrefix(*p); err != nil {
			errs.Add(c.PosOf(p), fmt.Sprintf("trusted proxy %q is not an address or CIDR: write 10.0.0.0/8 or 192.0.2.7", *p))
		}
	}
	c.checkOneOf(errs, &c.Log.Format, "log format", "json", "text")
	c.checkOneOf(errs, &c.Log.Level, "log level", "debug", "info", "warn", "error")
	if c.TLS.ACME != nil && c.TLS.ACME.CA != "" {
		c.checkURL(errs, &c.TLS.ACME.CA, "ACME directory", "https", "http")
	}

	hosts := map[string]Pos{}
	for i := range c.Sites {
		c.validateSite(errs, &c.Sites[i], hosts)
	}
	c.validateDNS(errs)
	c.validateFirewall(errs)
	c.validateCORS(errs)
	c.validateACME(errs)
}

func (c *Config) checkOneOf(errs *ErrorList, v *string, what string, allowed ...string) {
	for _, a := range allowed {
		if *v == a {
			return
		}
	}
	errs.Add(c.PosOf(v), fmt.Sprintf("%s %q is not known: use one of %s", what, *v, strings.Join(allowed, ", ")))
}

func (c *Config) checkListenAddr(errs *ErrorList, addr *string) {
	host, port, err := net.SplitHostPort(*addr)
	if err != nil {
		errs.Add(c.PosOf(addr), fmt.Sprintf("address %q is not host:port: write :443, 127.0.0.1:8443 or [::1]:8443", *addr))
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		errs.Add(c.PosOf(addr), fmt.Sprintf("port %q in %q is out of range: use 1 to 65535", port, *addr))
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			errs.Add(c.PosOf(addr), fmt.Sprintf("listen host %q is not an IP address: write an address such as 127.0.0.1 or ::, or leave it empty for all", host))
		}
	}
}

func (c *Config) checkURL(errs *ErrorList, v *string, what string, schemes ...string) *url.URL {
	u, err := url.Parse(*v)
	ok := err == nil && u.Host != ""
	if ok {
		ok = false
		for _, s := range schemes {
			ok = ok || u.Scheme == s
		}
	}
	if !ok {
		errs.Add(c.PosOf(v), fmt.Sprintf("%s %q is not a URL: write %s://host:port", what, *v, strings.Join(schemes, ":// or ")))
		return nil
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			errs.Add(c.PosOf(v), fmt.Sprintf("port %s in %s %q is out of range: use 1 to 65535", p, what, *v))
			return nil
		}
	}
	return u
}

func (c *Config) validateSite(errs *ErrorList, s *Site, seen map[string]Pos) {
	if len(s.Hosts) == 0 {
		errs.Add(c.PosOf(s), "site has no hosts: add hosts: [example.org]")
	}
	for i := range s.Hosts {
		h := &s.Hosts[i]
		if msg := checkHost(*h); msg != "" {
			errs.Add(c.PosOf(h), msg)
			continue
		}
		if prev, dup := seen[*h]; dup {
			errs.Add(c.PosOf(h), fmt.Sprintf("host %q is already served by the site at %s: a host belongs to one site", *h, prev))
			continue
		}
		seen[*h] = c.PosOf(h)
	}
	switch s.TLS.Mode {
	case "", "internal", "acme", "off":
	case "files":
		if s.TLS.Cert == "" || s.TLS.Key == "" {
			errs.Add(c.PosOf(&s.TLS), "tls mode files needs cert: and key: file paths")
		}
	default:
		errs.Add(c.PosOf(&s.TLS.Mode), fmt.Sprintf("tls %q is not known: use internal, acme, off, or {cert: FILE, key: FILE}", s.TLS.Mode))
	}
	if s.TLS.Mode == "acme" && c.TLS.ACME == nil {
		errs.Add(c.PosOf(&s.TLS.Mode), "tls acme needs an ACME account: add tls: {acme: {email: you@example.org}} at the top level")
	}
	if (s.TLS.Cert != "") != (s.TLS.Key != "") {
		errs.Add(c.PosOf(&s.TLS), "tls needs both cert: and key:")
	}
	if s.TLS.Cert != "" && s.TLS.Key != "" {
		if s.TLS.Mode != "" && s.TLS.Mode != "files" {
			errs.Add(c.PosOf(&s.TLS.Mode), fmt.Sprintf("tls %s cannot also have cert and key files: keep one", s.TLS.Mode))
		}
		s.TLS.Mode = "files"
		for _, f := range []*string{&s.TLS.Cert, &s.TLS.Key} {
			if _, err := os.ReadFile(*f); err != nil {
				errs.Add(c.PosOf(f), fmt.Sprintf("cannot read %q: %v: check the path and that gatehouse may read it", *f, unwrapPathErr(err)))
			}
		}
	}
	if len(s.Routes) == 0 {
		errs.Add(c.PosOf(s), "site has no routes: add routes: [{path: /, proxy: http://127.0.0.1:5000}]")
	}
	paths := map[string]Pos{}
	for i := range s.Routes {
		r := &s.Routes[i]
		c.validateRoute(errs, r)
		key := r.Path
		if r.Regex != "" {
			key = "~" + r.Regex
		} else if r.Exact {
			key = "=" + key
		}
		if prev, dup := paths[key]; dup {
			errs.Add(c.PosOf(&r.Path), fmt.Sprintf("path %q is already routed at %s: merge the two routes", r.Path, prev))
		}
		paths[key] = c.PosOf(&r.Path)
	}
}

func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// checkHost returns why h is not a valid site host, or "".
func checkHost(h string) string {
	if h == "" {
		return "empty host: write a name such as example.org"
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if strings.Contains(h, ":") {
		return fmt.Sprintf("host %q has a port: hosts are names; ports belong in listen", h)
	}
	name := h
	if strings.HasPrefix(h, "*.") {
		name = h[2:]
	}
	if len(name) > 253 {
		return fmt.Sprintf("host %q is longer than 253 characters", h)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Sprintf("host %q has an empty or over-long label", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				if r == '*' {
					return fmt.Sprintf("host %q: a wildcard may only be the whole first label, as in *.example.org", h)
				}
				return fmt.Sprintf("host %q has %q: use letters, digits and hyphens (punycode for other scripts)", h, r)
			}
		}
	}
	return ""
}

func (c *Config) validateRoute(errs *ErrorList, r *Route) {
	if r.Regex != "" {
		if _, err := regexp.Compile(r.Regex); err != nil {
			errs.Add(c.PosOf(&r.Regex), fmt.Sprintf("regex %q does not compile: %v", r.Regex, err))
		}
		if r.Exact || r.Final {
			errs.Add(c.PosOf(&r.Regex), "a regex route cannot also be exact or final")
		}
	}
	if !strings.HasPrefix(r.Path, "/") {
		errs.Add(c.PosOf(&r.Path), fmt.Sprintf("path %q must start with /", r.Path))
	}
	n := 0
	for _, set := range []bool{r.Proxy != nil, r.Static != nil, r.Redirect != nil, r.Respond != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		errs.Add(c.PosOf(r), "a route needs exactly one of proxy, static, redirect or respond")
	}
	if p := r.Proxy; p != nil {
		if len(p.To) == 0 {
			errs.Add(c.PosOf(p), "proxy needs at least one upstream: proxy: http://127.0.0.1:5000")
		}
		for i := range p.To {
			if u := c.checkURL(errs, &p.To[i], "upstream", "http", "https", "h2c"); u != nil {
				if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
					errs.Add(c.PosOf(&p.To[i]), fmt.Sprintf("upstream %q may have a path but no query, fragment or user", p.To[i]))
				}
			}
		}
		c.checkOneOf(errs, &p.Policy, "policy", "round_robin", "least_conn", "first", "ip_hash")
		if p.CA != "" {
			if _, err := os.ReadFile(p.CA); err != nil {
				errs.Add(c.PosOf(&p.CA), fmt.Sprintf("cannot read CA file %q: %v", p.CA, unwrapPathErr(err)))
			}
		}
		for _, ops := range []*HeaderOps{&p.Headers, &p.ResponseHeaders} {
			request := ops == &p.Headers
			for _, m := range []map[string]string{ops.Set, ops.Add} {
				for _, k := range slices.Sorted(maps.Keys(m)) { // errors in a stable order
					v := m[k]
					c.checkHeaderName(errs, ops, k, request)
					if strings.ContainsFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) {
						errs.Add(c.PosOf(ops), fmt.Sprintf("the value for header %q has a line break or control character: a header value is one line of text", k))
					}
				}
			}
			for _, k := range ops.Remove {
				c.checkHeaderName(errs, ops, k, request)
			}
		}
	}
	if s := r.Static; s != nil {
		if s.Root == "" {
			errs.Add(c.PosOf(s), "static needs a root folder: static: ./public")
		} else if fi, err := os.Stat(s.Root); err != nil || !fi.IsDir() {
			errs.Add(c.PosOf(&s.Root), fmt.Sprintf("static root %q is not a readable folder", s.Root))
		}
	}
	if rd := r.Redirect; rd != nil {
		if rd.To == "" {
			errs.Add(c.PosOf(rd), "redirect needs a target: redirect: https://example.org{uri}")
		}
		if rd.Status < 300 || rd.Status > 308 || rd.Status == 304 || rd.Status == 305 || rd.Status == 306 {
			errs.Add(c.PosOf(&rd.Status), fmt.Sprintf("redirect status %d is not a redirect: use 301, 302, 303, 307 or 308", rd.Status))
		}
	}
	if rs := r.Respond; rs != nil && (rs.Status < 100 || rs.Status > 599) {
		errs.Add(c.PosOf(&rs.Status), fmt.Sprintf("status %d is out of range: use 100 to 599", rs.Status))
	}
}

func (c *Config) checkHeaderName(errs *ErrorList, at *HeaderOps, name string, request bool) {
	for _, r := range name {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r) {
			errs.Add(c.PosOf(at), fmt.Sprintf("header name %q is not a valid token", name))
			return
		}
	}
	if why := ProxyOwned(name, request); why != "" {
		errs.Add(c.PosOf(at), why+"; remove the edit")
	}
}

// ProxyOwned says why a header edit may not name this header, or "" when
// it may: the proxy itself sets the framing and hop-by-hop headers on both
// sides, and the upstream request's Host is chosen with host:.
func ProxyOwned(name string, request bool) string {
	switch canon := textproto.CanonicalMIMEHeaderKey(name); {
	case request && canon == "Host":
		return "the Host header is chosen with host: (original, upstream or a name), not with a header edit"
	case proxyOwned[canon]:
		return fmt.Sprintf("header %q cannot be edited: the proxy sets it itself (message framing, hop-by-hop)", name)
	}
	return ""
}

// proxyOwned are the headers the proxy sets or drops itself on both sides:
// the message's framing and the hop-by-hop fields. An edit to one would be
// lost, or would break the framing the other side reads.
var proxyOwned = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true, "Te": true,
	"Trailer": true, "Transfer-Encoding": true, "Upgrade": true, "Content-Length": true,
}

// ParsePrefix reads an address or CIDR as a prefix (an address is a /32 or
// /128), the form every room uses for source matching.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}
