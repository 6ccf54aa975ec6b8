// Package cors owns cross-origin resource sharing at the edge: a Policy
// compiled once from a site's or route's cors section answers preflight
// requests itself, without touching the handler behind it, and puts the
// Access-Control-* headers on actual responses for the origins it allows.
//
// The edge owns CORS on a route with a policy: Access-Control-* headers the
// handler writes are replaced, so a backend that also answers CORS cannot
// produce the duplicate or contradictory headers browsers reject. An origin
// the policy does not allow gets no CORS headers at all (and 403 on a
// preflight); the browser then blocks the script from reading the answer.
package cors

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/journey"
)

// Policy is a compiled cors policy. It is immutable and safe for
// concurrent use; a reload compiles a new one.
type Policy struct {
	anyOrigin bool
	exact     map[string]bool
	wild      []wildcard

	credentials bool
	anyMethod   bool
	methods     map[string]bool
	anyHeader   bool
	headers     map[string]bool // lower case

	// Header values built once, assigned to responses as they are.
	allowMethods  []string
	allowHeaders  []string
	exposeHeaders []string
	maxAge        []string
}

// wildcard is https://*.example.org[:port]: prefix "https://", suffix
// ".example.org[:port]".
type wildcard struct{ prefix, suffix string }

var (
	valTrue        = []string{"true"}
	valStar        = []string{"*"}
	varyPreflight  = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers"
	safeMethods    = map[string]bool{"GET": true, "HEAD": true, "POST": true}
	defaultMethods = []string{"GET", "HEAD", "POST"}
)

// New compiles a policy; c is assumed validated by config.Parse, but New
// checks again and returns an error rather than allowing more than written.
func New(c config.CORS) (*Policy, error) {
	p := &Policy{exact: map[string]bool{}, methods: map[string]bool{}, headers: map[string]bool{}, credentials: c.Credentials}
	for _, o := range c.Origins {
		if o == "*" {
			p.anyOrigin = true
			continue
		}
		org, err := config.ParseOrigin(o)
		if err != nil {
			return nil, err
		}
		if org.Wildcard {
			suffix := "." + org.Host
			if org.Port != "" {
				suffix += ":" + org.Port
			}
			p.wild = append(p.wild, wildcard{prefix: org.Scheme + "://", suffix: suffix})
		} else {
			p.exact[org.String()] = true
		}
	}
	if len(c.Origins) == 0 {
		return nil, errorf("cors needs origins")
	}
	if p.anyOrigin && p.credentials {
		return nil, errorf(`cors credentials with origins "*" is refused by browsers`)
	}
	methods := c.Methods
	if len(methods) == 0 {
		methods = defaultMethods
	}
	for _, m := range methods {
		if m == "*" {
			p.anyMethod = true
		}
		p.methods[m] = true
	}
	for _, h := range c.Headers {
		if h == "*" {
			p.anyHeader = true
		}
		p.headers[strings.ToLower(h)] = true
	}
	if p.credentials && (p.anyMethod || p.anyHeader) {
		return nil, errorf(`cors "*" in methods or headers means a literal "*" to browsers when credentials are on`)
	}
	p.allowMethods = []string{strings.Join(methods, ", ")}
	if len(c.Headers) > 0 {
		p.allowHeaders = []string{strings.Join(c.Headers, ", ")}
	}
	if len(c.ExposeHeaders) > 0 {
		p.exposeHeaders = []string{strings.Join(c.ExposeHeaders, ", ")}
	}
	if c.MaxAge > 0 {
		p.maxAge = []string{strconv.FormatInt(int64(c.MaxAge.D()/time.Second), 10)}
	}
	return p, nil
}

type policyError string

func (e policyError) Error() string { return string(e) }

func errorf(s string) error { return policyError(s) }

// Allows reports whether a request from origin (an Origin header value, as
// browsers send it: lower case, no default port) may read answers.
func (p *Policy) Allows(origin string) bool {
	if p.anyOrigin {
		return true
	}
	if p.exact[origin] {
		return true
	}
	for _, w := range p.wild {
		if len(origin) > len(w.prefix)+len(w.suffix) &&
			strings.HasPrefix(origin, w.prefix) && strings.HasSuffix(origin, w.suffix) &&
			isLabel(origin[len(w.prefix):len(origin)-len(w.suffix)]) {
			return true
		}
	}
	return false
}

// isLabel reports whether s is one DNS label as browsers serialise it:
// lower-case letters, digits and hyphens (punycode for the rest).
func isLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Wrap returns next behind the policy.
func (p *Policy) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.serve(w, r, next)
	})
}

func (p *Policy) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	origins := r.Header["Origin"]
	if r.Method == http.MethodOptions && len(origins) > 0 && len(r.Header["Access-Control-Request-Method"]) > 0 {
		p.preflight(w, r, origins)
		return
	}
	if len(origins) == 0 {
		// A cache in between must not serve this answer, without CORS
		// headers, to a cross-origin request; with "*" it would be the same.
		if !p.constant() {
			w.Header()["Vary"] = append(w.Header()["Vary"], "Origin")
		}
		next.ServeHTTP(w, r)
		return
	}
	cw := &writer{ResponseWriter: w, p: p, allowed: len(origins) == 1 && p.Allows(origins[0]), origin: origins}
	next.ServeHTTP(cw, r)
	if !cw.wrote {
		// Nothing was written: net/http sends 200 with these headers.
		cw.decorate()
	}
}

// constant reports whether answers are the same whatever the origin.
func (p *Policy) constant() bool { return p.anyOrigin && !p.credentials }

// preflight answers an OPTIONS request asking whether a cross-origin
// request may be sent. The handler behind never sees it.
func (p *Policy) preflight(w http.ResponseWriter, r *http.Request, origins []string) {
	if rec := journey.From(r.Context()); rec != nil {
		rec.Handler = "cors-preflight" // answered here, not by the route's handler
	}
	h := w.Header()
	h["Vary"] = []string{varyPreflight}
	reason := ""
	method := r.Header.Get("Access-Control-Request-Method")
	switch {
	case len(origins) != 1 || !p.Allows(origins[0]):
		reason = "origin not allowed"
	case !p.anyMethod && !p.methods[method] && !safeMethods[method]:
		reason = "method not allowed"
	default:
		if p.badHeader(r.Header["Access-Control-Request-Headers"]) != "" {
			reason = "header not allowed"
		}
	}
	if reason != "" {
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		h["X-Content-Type-Options"] = []string{"nosniff"}
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte("403 Forbidden: CORS preflight refused, " + reason + "\n"))
		return
	}
	p.allowOrigin(h, origins)
	h["Access-Control-Allow-Methods"] = p.allowMethods
	if p.anyHeader {
		h["Access-Control-Allow-Headers"] = valStar
	} else if p.allowHeaders != nil {
		h["Access-Control-Allow-Headers"] = p.allowHeaders
	}
	if p.maxAge != nil {
		h["Access-Control-Max-Age"] = p.maxAge
	}
	w.WriteHeader(http.StatusNoContent)
}

// badHeader returns the first requested header the policy does not allow.
// Browsers send the list lower-cased and comma-separated.
func (p *Policy) badHeader(lines []string) string {
	if p.anyHeader {
		return ""
	}
	for _, line := range lines {
		for line != "" {
			var name string
			name, line, _ = strings.Cut(line, ",")
			name = strings.TrimSpace(name)
			if name == "" {
				continue
			}
			if !p.headers[name] && !p.headers[strings.ToLower(name)] {
				return name
			}
		}
	}
	return ""
}

func (p *Policy) allowOrigin(h http.Header, origins []string) {
	if p.constant() {
		h["Access-Control-Allow-Origin"] = valStar
		return
	}
	// The origin itself, never "*": required with credentials, and it
	// tells a cache the answer is for this origin alone (Vary: Origin).
	h["Access-Control-Allow-Origin"] = []string{origins[0]}
	if p.credentials {
		h["Access-Control-Allow-Credentials"] = valTrue
	}
}

// corsHeaders are the response headers the policy owns.
var corsHeaders = []string{
	"Access-Control-Allow-Origin",
	"Access-Control-Allow-Credentials",
	"Access-Control-Allow-Methods",
	"Access-Control-Allow-Headers",
	"Access-Control-Expose-Headers",
	"Access-Control-Max-Age",
}

// writer puts the policy's headers on the response just before its header
// is written, replacing whatever CORS headers the handler set.
type writer struct {
	http.ResponseWriter
	p       *Policy
	origin  []string
	allowed bool
	wrote   bool
}

func (cw *writer) decorate() {
	cw.wrote = true
	h := cw.ResponseWriter.Header()
	for _, name := range corsHeaders {
		delete(h, name)
	}
	if !cw.p.constant() && !varies(h["Vary"]) {
		h["Vary"] = append(h["Vary"], "Origin")
	}
	if !cw.allowed {
		return
	}
	cw.p.allowOrigin(h, cw.origin)
	if cw.p.exposeHeaders != nil {
		h["Access-Control-Expose-Headers"] = cw.p.exposeHeaders
	}
}

// varies reports whether Vary already names Origin (or is "*").
func varies(vary []string) bool {
	for _, line := range vary {
		for line != "" {
			var v string
			v, line, _ = strings.Cut(line, ",")
			v = strings.TrimSpace(v)
			if v == "*" || strings.EqualFold(v, "Origin") {
				return true
			}
		}
	}
	return false
}

func (cw *writer) WriteHeader(code int) {
	if !cw.wrote && code >= 200 {
		cw.decorate()
	}
	cw.ResponseWriter.WriteHeader(code)
}

func (cw *writer) Write(b []byte) (int, error) {
	if !cw.wrote {
		cw.decorate()
	}
	return cw.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach Flush and Hijack beneath, for
// streamed answers (server-sent events) and upgrades.
func (cw *writer) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// Flush is called directly by handlers that test for http.Flusher.
func (cw *writer) Flush() {
	if !cw.wrote {
		cw.decorate()
	}
	http.NewResponseController(cw.ResponseWriter).Flush()
}
