// Package placeholder compiles strings such as "https://{host}{uri}" once,
// at config time, into templates that are filled per request without
// parsing again. It serves redirect targets and header values alike.
package placeholder

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"

	"gatehouse/internal/journey"
	"gatehouse/internal/tlsterm"
)

// Template is a compiled string with placeholders.
type Template struct {
	parts  []part
	static string // the whole value when it has no placeholders
}

type part struct {
	lit  string
	kind kind
	arg  string // header name for {header.X}
}

type kind uint8

const (
	literal kind = iota
	host
	clientIP
	scheme
	method
	path
	query
	uri
	header
	route
	tlsVersion
	journeyRec
)

var names = map[string]kind{
	"host": host, "client_ip": clientIP, "scheme": scheme, "method": method,
	"path": path, "query": query, "uri": uri, "route": route, "tls_version": tlsVersion, "journey": journeyRec,
}

// Names lists the placeholders, for error messages.
const Names = "{host}, {client_ip}, {scheme}, {method}, {path}, {query}, {uri}, {route}, {tls_version}, {journey}, {header.Name}"

// Compile parses s. Text in braces that is not a known placeholder is an
// error, so a typo is caught at config time rather than sent literally.
func Compile(s string) (*Template, error) {
	t := &Template{}
	rest := s
	for rest != "" {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			t.parts = append(t.parts, part{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, part{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return nil, fmt.Errorf("%q has { without a closing }", s)
		}
		name := rest[i+1 : i+j]
		if k, ok := names[name]; ok {
			t.parts = append(t.parts, part{kind: k})
		} else if h, ok := strings.CutPrefix(name, "header."); ok && h != "" {
			t.parts = append(t.parts, part{kind: header, arg: http.CanonicalHeaderKey(h)})
		} else {
			return nil, fmt.Errorf("unknown placeholder {%s} in %q: use %s", name, s, Names)
		}
		rest = rest[i+j+1:]
	}
	if len(t.parts) == 1 && t.parts[0].kind == literal {
		t.static = t.parts[0].lit
		t.parts = nil
	} else if len(t.parts) == 0 {
		t.parts = nil
	}
	return t, nil
}

// MustCompile is Compile for strings known at build time.
func MustCompile(s string) *Template {
	t, err := Compile(s)
	if err != nil {
		panic(err)
	}
	return t
}

// Static reports whether the template has no placeholders.
func (t *Template) Static() bool { return t.parts == nil }

// Source is what a template reads of a request. Fill reads an
// *http.Request; the event loops, which build none, read their own.
type Source interface {
	Host() string
	// ClientIP is the client's address as the journey resolved it.
	ClientIP() netip.Addr
	TLS() bool
	// TLSVersion is "TLS 1.3" and so on; empty without TLS.
	TLSVersion() string
	Method() string
	EscapedPath() string
	RawQuery() string
	Header(canonicalName string) string
	// Journey is the request's record so far, or nil.
	Journey() *journey.Record
}

// Fill returns the template's value for r.
func (t *Template) Fill(r *http.Request) string {
	if t.parts == nil {
		return t.static
	}
	return string(t.Append(nil, httpSource{r}))
}

// Append appends the template's value for the request src describes.
func (t *Template) Append(b []byte, src Source) []byte {
	if t.parts == nil {
		return append(b, t.static...)
	}
	for _, p := range t.parts {
		switch p.kind {
		case literal:
			b = append(b, p.lit...)
		case host:
			b = append(b, src.Host()...)
		case clientIP:
			if a := src.ClientIP(); a.IsValid() {
				b = a.AppendTo(b)
			}
		case scheme:
			if src.TLS() {
				b = append(b, "https"...)
			} else {
				b = append(b, "http"...)
			}
		case method:
			b = append(b, src.Method()...)
		case path:
			b = append(b, src.EscapedPath()...)
		case query:
			b = append(b, src.RawQuery()...)
		case uri:
			b = append(b, src.EscapedPath()...)
			if q := src.RawQuery(); q != "" {
				b = append(append(b, '?'), q...)
			}
		case header:
			b = append(b, src.Header(p.arg)...)
		case route:
			if rec := src.Journey(); rec != nil {
				b = append(b, rec.Route...)
			}
		case tlsVersion:
			b = append(b, src.TLSVersion()...)
		case journeyRec:
			// The journey so far, as base64url JSON, for a backend that
			// wants to show it (the demo app does).
			if rec := src.Journey(); rec != nil {
				j, _ := json.Marshal(rec.View())
				b = base64.RawURLEncoding.AppendEncode(b, j)
			}
		}
	}
	return b
}

// httpSource reads an *http.Request.
type httpSource struct{ r *http.Request }

func (s httpSource) Host() string { return s.r.Host }

func (s httpSource) ClientIP() netip.Addr {
	if rec := journey.From(s.r.Context()); rec != nil && rec.Client.IsValid() {
		return rec.Client
	}
	if ap, err := netip.ParseAddrPort(s.r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

func (s httpSource) TLS() bool { return s.r.TLS != nil }

func (s httpSource) TLSVersion() string {
	if s.r.TLS == nil {
		return ""
	}
	return tlsterm.VersionName(s.r.TLS.Version)
}

func (s httpSource) Method() string                     { return s.r.Method }
func (s httpSource) EscapedPath() string                { return s.r.URL.EscapedPath() }
func (s httpSource) RawQuery() string                   { return s.r.URL.RawQuery }
func (s httpSource) Header(canonicalName string) string { return s.r.Header.Get(canonicalName) }
func (s httpSource) Journey() *journey.Record           { return journey.From(s.r.Context()) }
