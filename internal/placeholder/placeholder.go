// Package placeholder compiles strings such as "https://{host}{uri}" once,
// at config time, into templates that are filled per request without
// parsing again. It serves redirect targets and header values alike.
package placeholder

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
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

// Fill returns the template's value for r.
func (t *Template) Fill(r *http.Request) string {
	if t.parts == nil {
		return t.static
	}
	var b strings.Builder
	for _, p := range t.parts {
		switch p.kind {
		case literal:
			b.WriteString(p.lit)
		case host:
			b.WriteString(r.Host)
		case clientIP:
			if rec := journey.From(r.Context()); rec != nil && rec.Client.IsValid() {
				b.WriteString(rec.Client.String())
			} else if i := strings.LastIndexByte(r.RemoteAddr, ':'); i > 0 {
				b.WriteString(strings.Trim(r.RemoteAddr[:i], "[]"))
			}
		case scheme:
			if r.TLS != nil {
				b.WriteString("https")
			} else {
				b.WriteString("http")
			}
		case method:
			b.WriteString(r.Method)
		case path:
			b.WriteString(r.URL.EscapedPath())
		case query:
			b.WriteString(r.URL.RawQuery)
		case uri:
			b.WriteString(r.URL.RequestURI())
		case header:
			b.WriteString(r.Header.Get(p.arg))
		case route:
			if rec := journey.From(r.Context()); rec != nil {
				b.WriteString(rec.Route)
			}
		case tlsVersion:
			if r.TLS != nil {
				b.WriteString(tlsterm.VersionName(r.TLS.Version))
			}
		case journeyRec:
			// The journey so far, as base64url JSON, for a backend that
			// wants to show it (the demo app does).
			if rec := journey.From(r.Context()); rec != nil {
				j, _ := json.Marshal(rec.View())
				b.WriteString(base64.RawURLEncoding.EncodeToString(j))
			}
		}
	}
	return b.String()
}
