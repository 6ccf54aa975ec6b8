// Package route owns the decision of which handler serves a request: the
// compiled, immutable host → site → path table of one config generation,
// the HTTP → HTTPS redirect, and the 404 for names and paths nobody serves.
//
// Matching, in order: the exact host, else a one-label wildcard
// (*.example.org); then within the site an exact path, else the longest
// prefix on a segment boundary, unless a regex route matches first and that
// prefix is not final — nginx's location precedence, so imported nginx
// configs keep their meaning.
package route

import (
	"fmt"
	"net/http"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gatehouse/internal/journey"
)

// SiteSpec describes a site for New.
type SiteSpec struct {
	Hosts []string
	// TLS means the site is served on HTTPS and plain HTTP requests for it
	// are redirected there; otherwise it is served on plain HTTP only.
	TLS    bool
	Routes []RouteSpec
}

// RouteSpec describes a route for New; see config.Route for the fields.
type RouteSpec struct {
	Path        string
	Exact       bool
	Regex       string
	Final       bool
	StripPrefix bool
	MaxBody     int64
	// Kind names the handler for the journey (proxy, static, …).
	Kind    string
	Handler http.Handler
	// NoLog leaves the route's requests out of the access log.
	NoLog bool
}

// Options are table-wide settings.
type Options struct {
	// HTTPSPort is the port HTTP requests are redirected to (443 is left
	// out of the URL).
	HTTPSPort int
	// Challenge, when set, answers /.well-known/acme-challenge/ on plain
	// HTTP before any redirect, for ACME HTTP-01.
	Challenge http.Handler
}

// Table is the compiled routing table. It is immutable and safe for
// concurrent use; a reload builds a new one.
type Table struct {
	exact     map[string]*Site
	wildcard  map[string]*Site // by parent: "example.org" for *.example.org
	httpsPort string           // ":8443", or "" for 443
	challenge http.Handler
}

// Site is one compiled site.
type Site struct {
	Name   string // the first host, for logs and the journey
	TLS    bool
	exact  map[string]*Route
	prefix []*Route // longest first
	regex  []*Route // in config order
}

// Route is one compiled route.
type Route struct {
	Pattern string // as people read it: "/api", "= /healthz", "~ \.php$"
	Kind    string
	Handler http.Handler
	NoLog   bool // its requests are left out of the access log
	path    string
	re      *regexp.Regexp
	final   bool
	strip   bool
	maxBody int64
}

// New compiles sites into a Table.
func New(sites []SiteSpec, opts Options) (*Table, error) {
	t := &Table{
		exact:     map[string]*Site{},
		wildcard:  map[string]*Site{},
		challenge: opts.Challenge,
	}
	if opts.HTTPSPort != 443 && opts.HTTPSPort != 0 {
		t.httpsPort = ":" + strconv.Itoa(opts.HTTPSPort)
	}
	for _, ss := range sites {
		if len(ss.Hosts) == 0 {
			return nil, fmt.Errorf("route: site without hosts")
		}
		s := &Site{Name: ss.Hosts[0], TLS: ss.TLS, exact: map[string]*Route{}}
		for _, rs := range ss.Routes {
			r := &Route{Kind: rs.Kind, Handler: rs.Handler, NoLog: rs.NoLog, path: rs.Path, final: rs.Final, strip: rs.StripPrefix, maxBody: rs.MaxBody}
			switch {
			case rs.Regex != "":
				re, err := regexp.Compile(rs.Regex)
				if err != nil {
					return nil, fmt.Errorf("route: %w", err)
				}
				r.re, r.Pattern = re, "~ "+rs.Regex
				s.regex = append(s.regex, r)
			case rs.Exact:
				r.Pattern = "= " + rs.Path
				s.exact[rs.Path] = r
			default:
				r.Pattern = rs.Path
				s.prefix = append(s.prefix, r)
			}
		}
		sort.SliceStable(s.prefix, func(i, j int) bool { return len(s.prefix[i].path) > len(s.prefix[j].path) })
		for _, h := range ss.Hosts {
			h = strings.ToLower(h)
			m := t.exact
			if parent, ok := strings.CutPrefix(h, "*."); ok {
				m, h = t.wildcard, parent
			}
			if _, dup := m[h]; dup {
				return nil, fmt.Errorf("route: host %q in two sites", h)
			}
			m[h] = s
		}
	}
	return t, nil
}

// Site returns the site serving host (already without port, lower case).
func (t *Table) Site(host string) *Site {
	if s, ok := t.exact[host]; ok {
		return s
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		return t.wildcard[host[i+1:]]
	}
	return nil
}

// Match returns the route for a cleaned path, or nil.
func (s *Site) Match(p string) *Route {
	if r, ok := s.exact[p]; ok {
		return r
	}
	var best *Route
	for _, r := range s.prefix {
		if hasPathPrefix(p, r.path) {
			best = r
			break
		}
	}
	if best != nil && best.final {
		return best
	}
	for _, r := range s.regex {
		if r.re.MatchString(p) {
			return r
		}
	}
	return best
}

// hasPathPrefix reports whether prefix matches p on a segment boundary:
// /api matches /api and /api/x, not /apiary; /api/ matches /api/x.
func hasPathPrefix(p, prefix string) bool {
	if !strings.HasPrefix(p, prefix) {
		return false
	}
	return len(p) == len(prefix) || prefix[len(prefix)-1] == '/' || p[len(prefix)] == '/'
}

// ServeHTTP routes one request.
func (t *Table) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := journey.From(r.Context())
	host := HostOnly(r.Host)
	site := t.Site(host)
	if r.TLS == nil {
		if t.challenge != nil && strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			note(rec, site, nil, "acme-challenge")
			t.challenge.ServeHTTP(w, r)
			return
		}
		if site != nil && site.TLS {
			note(rec, site, nil, "https-redirect")
			t.redirectToHTTPS(w, r, host)
			return
		}
	} else if site != nil && !site.TLS {
		site = nil // a plain-HTTP-only site is not served over TLS
	}
	if site == nil {
		note(rec, nil, nil, "unknown-host")
		notFound(w)
		return
	}
	p := r.URL.Path
	if needsClean(p) {
		// Match on the normalised path and send that on, as nginx does, so
		// /static/../admin can never reach a route meant for /admin through
		// one meant for /static.
		p = cleanPath(p)
		r = withPath(r, p)
	}
	rt := site.Match(p)
	note(rec, site, rt, "")
	if rt == nil {
		notFound(w)
		return
	}
	if rt.maxBody > 0 && r.ContentLength > rt.maxBody {
		http.Error(w, "Request Entity Too Large", http.StatusRequestEntityTooLarge)
		return
	}
	if rt.maxBody > 0 && r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, rt.maxBody)
	}
	if up := rt.UpstreamPath(p); len(up) != len(p) {
		r = withPath(r, up)
	}
	rt.Handler.ServeHTTP(w, r)
}

// UpstreamPath is the path the route's handler sees for the cleaned path p:
// p without the route's prefix when the route strips it.
func (rt *Route) UpstreamPath(p string) string {
	if !rt.strip || rt.path == "/" {
		return p
	}
	rest := strings.TrimPrefix(p, strings.TrimSuffix(rt.path, "/"))
	if rest == "" {
		rest = "/"
	}
	return rest
}

// MaxBody is the route's request body limit; 0 for none.
func (rt *Route) MaxBody() int64 { return rt.maxBody }

// Direct returns the route serving a request for host (as sent, with any
// port) and path, on TLS or plain HTTP, when a route serves it as-is: nil
// when the answer is the ACME challenge, the HTTPS redirect or a 404, or
// when the path must be normalised first. It is the decision ServeHTTP
// makes, for servers that route before building an http.Request.
func (t *Table) Direct(host, p string, tls bool) (*Site, *Route) {
	if needsClean(p) || !tls && t.challenge != nil && strings.HasPrefix(p, "/.well-known/acme-challenge/") {
		return nil, nil
	}
	site := t.Site(HostOnly(host))
	if site == nil || site.TLS != tls {
		return nil, nil
	}
	return site, site.Match(p)
}

func note(rec *journey.Record, s *Site, rt *Route, handler string) {
	if rec == nil {
		return
	}
	if s != nil {
		rec.Site = s.Name
	}
	if rt != nil {
		rec.Route, rec.Handler, rec.NoLog = rt.Pattern, rt.Kind, rt.NoLog
	} else {
		rec.Handler = handler
	}
}

func (t *Table) redirectToHTTPS(w http.ResponseWriter, r *http.Request, host string) {
	if strings.IndexByte(host, ':') >= 0 {
		host = "[" + host + "]" // an IPv6 literal
	}
	target := "https://" + host + t.httpsPort + r.URL.RequestURI()
	// 301 keeps what browsers and the seed's nginx do for GET and HEAD; 308
	// for the rest, so a POST is not turned into a GET.
	code := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		code = http.StatusPermanentRedirect
	}
	w.Header()["Location"] = []string{target}
	w.WriteHeader(code)
}

var notFoundBody = []byte("404 Not Found\n")

// notFound answers 404 with no detail, as nginx's `return 404` does.
func notFound(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = []string{"text/plain; charset=utf-8"}
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(http.StatusNotFound)
	w.Write(notFoundBody)
}

// HostOnly returns the lower-case host of a Host header, without port or
// trailing dot and without brackets around an IPv6 literal.
func HostOnly(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && !strings.HasSuffix(h, "]") {
		h = h[:i]
	}
	h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

func needsClean(p string) bool {
	return p == "" || p[0] != '/' || strings.Contains(p, "//") || strings.Contains(p, "/.") || strings.IndexByte(p, '\\') >= 0
}

// cleanPath resolves . and .. and repeated slashes, keeping a trailing slash.
func cleanPath(p string) string {
	p = strings.ReplaceAll(p, "\\", "/")
	c := path.Clean("/" + p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

// withPath returns a shallow copy of r whose URL path is p.
func withPath(r *http.Request, p string) *http.Request {
	r2 := new(http.Request)
	*r2 = *r
	u := *r.URL
	u.Path, u.RawPath = p, ""
	r2.URL = &u
	return r2
}
