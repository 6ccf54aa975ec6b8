package placeholder

import (
	"crypto/tls"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"gatehouse/internal/journey"
)

func TestFill(t *testing.T) {
	r := httptest.NewRequest("GET", "https://example.org/a%20b/c?x=1&y=2", nil)
	r.RemoteAddr = "[::ffff:192.0.2.7]:5555"
	r.TLS = &tls.ConnectionState{Version: tls.VersionTLS13}
	r.Header.Set("X-Team", "blue")
	for tmpl, want := range map[string]string{
		"plain text":             "plain text",
		"https://{host}{uri}":    "https://example.org/a%20b/c?x=1&y=2",
		"{scheme} {method}":      "https GET",
		"{path}|{query}":         "/a%20b/c|x=1&y=2",
		"{client_ip}":            "192.0.2.7",
		"team={header.x-team};":  "team=blue;",
		"{header.Missing}":       "",
		"{tls_version}":          "TLS 1.3",
		"{route} without record": " without record",
	} {
		if got := MustCompile(tmpl).Fill(r); got != want {
			t.Errorf("%q: got %q, want %q", tmpl, got, want)
		}
	}
	// With a journey record: the client it resolved, the route, the record.
	rec := &journey.Record{Client: netip.MustParseAddr("203.0.113.9"), Route: "/api"}
	r = r.WithContext(journey.With(r.Context(), rec))
	if got := MustCompile("{client_ip} {route}").Fill(r); got != "203.0.113.9 /api" {
		t.Errorf("with a record: %q", got)
	}
	if got := MustCompile("{journey}").Fill(r); got == "" || strings.ContainsAny(got, "+/=") {
		t.Errorf("journey: %q is not base64url", got)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, s := range []string{"{nope}", "{host", "{header.}"} {
		if _, err := Compile(s); err == nil {
			t.Errorf("%q compiled", s)
		}
	}
}
