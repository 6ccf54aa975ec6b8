package instance

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"gatehouse/internal/certs"
	"gatehouse/internal/config"
	"gatehouse/internal/route"
)

// ExplainStep is one line of `gatehouse explain`.
type ExplainStep struct {
	Name string `json:"step"`
	OK   bool   `json:"ok"`
	Text string `json:"text"`
}

// configRoute lets the explain table hand back the config route it matched.
type configRoute struct{ r *config.Route }

func (configRoute) ServeHTTP(http.ResponseWriter, *http.Request) {}

// Explain says, from the config alone, what would happen to a request for
// rawURL from the address from: which DNS record answers, which firewall
// rule decides, where the certificate comes from, which site and route
// match, and where the request goes. Nothing is started.
func Explain(cfg *config.Config, rawURL string, from netip.Addr) ([]ExplainStep, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q is not an http:// or https:// URL", rawURL)
	}
	host := route.HostOnly(u.Host)
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	var steps []ExplainStep
	add := func(name string, ok bool, format string, args ...any) {
		steps = append(steps, ExplainStep{name, ok, fmt.Sprintf(format, args...)})
	}

	dnsText, dnsOK := explainDNS(cfg, host)
	add("DNS", dnsOK, "%s", dnsText)
	if !dnsOK {
		return steps, nil
	}
	p, _ := strconv.Atoi(port)
	fw, fwOK := explainFirewall(cfg, from, uint16(p))
	add("Firewall", fwOK, "%s", fw)
	if !fwOK {
		return steps, nil
	}
	if !listens(cfg, u.Scheme, port) {
		add("Listener", false, "nothing in this config listens for %s on port %s (listen.%s is %v)", u.Scheme, port, u.Scheme, listenOf(cfg, u.Scheme))
		return steps, nil
	}

	var specs []route.SiteSpec
	for i := range cfg.Sites {
		s := &cfg.Sites[i]
		spec := route.SiteSpec{Hosts: s.Hosts, TLS: certs.SiteSource(cfg, s) != 0}
		for j := range s.Routes {
			r := &s.Routes[j]
			spec.Routes = append(spec.Routes, route.RouteSpec{Path: r.Path, Exact: r.Exact, Regex: r.Regex, Final: r.Final, Handler: configRoute{r}})
		}
		specs = append(specs, spec)
	}
	table, err := route.New(specs, route.Options{})
	if err != nil {
		return nil, err
	}
	site := table.Site(host)
	if site == nil {
		add("Route", false, "no site serves %s: gatehouse answers 404", host)
		return steps, nil
	}
	var cs *config.Site
	for i := range cfg.Sites {
		if cfg.Sites[i].Hosts[0] == site.Name {
			cs = &cfg.Sites[i]
		}
	}
	src := certs.SiteSource(cfg, cs)
	switch {
	case u.Scheme == "http" && src != 0:
		add("Redirect", true, "http:// is redirected to https:// (301 for GET and HEAD, 308 otherwise)")
		u.Scheme = "https"
		add("TLS", true, "certificate for %s from %s", host, describeSource(src, cs))
	case u.Scheme == "https" && src == 0:
		add("TLS", false, "site %s has tls: off: it is served on plain HTTP only, and HTTPS answers 404", site.Name)
		return steps, nil
	case src != 0:
		add("TLS", true, "certificate for %s from %s", host, describeSource(src, cs))
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	rt := site.Match(path)
	if rt == nil {
		add("Route", false, "site %s has no route for %s: gatehouse answers 404", site.Name, path)
		return steps, nil
	}
	r := rt.Handler.(configRoute).r
	quiet := ""
	if r.Quiet() {
		quiet = " (left out of the access log)"
	}
	add("Route", true, "site %s, route %q%s", site.Name, rt.Pattern, quiet)
	switch {
	case r.Proxy != nil:
		add("Proxy", true, "to %s (%s), sending the client's Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host%s", strings.Join(r.Proxy.To, ", "), r.Proxy.Policy, headerNames(r.Proxy.Headers))
	case r.Static != nil:
		add("Static", true, "files from %s", r.Static.Root)
	case r.Redirect != nil:
		add("Redirect", true, "%d to %s", r.Redirect.Status, r.Redirect.To)
	case r.Respond != nil:
		add("Respond", true, "%d with a fixed body (%d bytes)", r.Respond.Status, len(r.Respond.Body))
	}
	return steps, nil
}

// headerNames lists configured header names, never their values: they may
// hold secrets.
func headerNames(h config.HeaderOps) string {
	var names []string
	for k := range h.Set {
		names = append(names, k)
	}
	for k := range h.Add {
		names = append(names, "+"+k)
	}
	if len(names) == 0 {
		return ""
	}
	slices.Sort(names)
	return ", and sets " + strings.Join(names, ", ")
}

func describeSource(src certs.Source, s *config.Site) string {
	switch src {
	case certs.Internal:
		return "gatehouse's local CA (tls: internal)"
	case certs.Files:
		return "the files " + s.TLS.Cert + " and " + s.TLS.Key
	case certs.ACME:
		return "ACME (issued and renewed automatically)"
	}
	return "nowhere"
}

func listens(cfg *config.Config, scheme, port string) bool {
	for _, a := range listenOf(cfg, scheme) {
		if _, p, _ := net.SplitHostPort(a); p == port {
			return true
		}
	}
	return false
}

func listenOf(cfg *config.Config, scheme string) []string {
	if scheme == "https" {
		return cfg.Listen.HTTPS
	}
	return cfg.Listen.HTTP
}
