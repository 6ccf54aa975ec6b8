package certs

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestOnDemandPolicy(t *testing.T) {
	ask := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("domain") == "asked.example.net" {
			return // 200
		}
		http.Error(w, "unknown customer", http.StatusNotFound)
	}))
	defer ask.Close()

	const sites = `
sites:
  - hosts: [www.example.com, "*.apps.example.com"]
    routes: [{path: /, respond: {status: 200}}]
`
	cases := []struct {
		desc, onDemand, extra string
		allowed, refused      []string
	}{
		{
			desc:     "defaults: site hosts and served zones",
			onDemand: "{}",
			extra:    "dns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.org: {}\n",
			allowed:  []string{"www.example.com", "x.apps.example.com", "example.org", "deep.sub.example.org"},
			refused:  []string{"evil.example.net", "a.b.apps.example.com", "localhost", "192.0.2.1", "example.org.evil.net"},
		},
		{
			desc:     "defaults without dns: zones do not count",
			onDemand: "{}",
			allowed:  []string{"x.apps.example.com"},
			refused:  []string{"shop.example.org"},
		},
		{
			desc:     "allow list replaces the defaults",
			onDemand: `{allow: [shop.example.net, "*.customers.example.net"]}`,
			allowed:  []string{"shop.example.net", "a.customers.example.net"},
			refused:  []string{"www.example.com", "other.example.net", "customers.example.net"},
		},
		{
			desc:     "pattern matches whole names",
			onDemand: `{pattern: "[a-z]+\\.tenant\\.example\\.net"}`,
			allowed:  []string{"acme.tenant.example.net"},
			refused:  []string{"x.acme.tenant.example.net.evil.com", "acme1.tenant.example.net"},
		},
		{
			desc:     "ask endpoint",
			onDemand: `{ask: "` + ask.URL + `/check"}`,
			allowed:  []string{"asked.example.net"},
			refused:  []string{"unasked.example.net"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			cfg := parseConfig(t, "tls:\n  acme:\n    email: ops@example.com\n    on_demand: "+tc.onDemand+"\n"+tc.extra+sites)
			p, err := newOnDemandPolicy(cfg, newNameLimiter(time.Hour, 100))
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			for _, n := range tc.allowed {
				if err := p.decide(ctx, n); err != nil {
					t.Errorf("%s: got %v, want allowed", n, err)
				}
			}
			for _, n := range tc.refused {
				if err := p.decide(ctx, n); err == nil {
					t.Errorf("%s: allowed, want refused", n)
				}
			}
		})
	}
}

func TestOnDemandRateLimit(t *testing.T) {
	cfg := parseConfig(t, "tls:\n  acme:\n    on_demand: {allow: [a.example.com, b.example.com]}\n")
	p, err := newOnDemandPolicy(cfg, newNameLimiter(time.Hour, onDemandBurst))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range onDemandBurst {
		if err := p.decide(ctx, "a.example.com"); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	err = p.decide(ctx, "a.example.com")
	if err == nil || !strings.Contains(err.Error(), "too many attempts") {
		t.Fatalf("attempt %d: got %v, want too many attempts", onDemandBurst+1, err)
	}
	if err := p.decide(ctx, "b.example.com"); err != nil {
		t.Fatalf("another name is limited on its own: %v", err)
	}
}

func TestNameLimiterIsBounded(t *testing.T) {
	l := newNameLimiter(time.Hour, 1)
	for i := range maxLimited + 10 {
		l.allow(strings.Repeat("x", i%50) + ".example.com" + string(rune('a'+i%26)) + time.Duration(i).String())
	}
	if n := len(l.m); n > maxLimited {
		t.Fatalf("limiter holds %d names, want at most %d", n, maxLimited)
	}
}

func TestFailureHint(t *testing.T) {
	cases := []struct{ msg, want string }{
		{`HTTP 400 urn:ietf:params:acme:error:connection - Timeout during connect (likely firewall problem)`, "ports 80 and 443"},
		{`HTTP 400 urn:ietf:params:acme:error:malformed - Error occurred while resolving URL "a.example.com": "dial tcp 127.0.0.1:53: connect: connection refused"`, "ports 80 and 443"},
		{`HTTP 403 urn:ietf:params:acme:error:unauthorized - Invalid response from http://a.example.com/.well-known/acme-challenge/x: 404`, "different answer"},
		{`HTTP 400 urn:ietf:params:acme:error:dns - DNS problem: NXDOMAIN looking up A for a.example.com`, "look the name up"},
		{`HTTP 429 urn:ietf:params:acme:error:rateLimited - too many certificates`, "rate limit"},
		{`HTTP 400 urn:ietf:params:acme:error:externalAccountRequired - EAB required`, "External Account Binding"},
		{`Get "https://acme.example.org/dir": dial tcp 192.0.2.1:443: connect: connection refused`, "talk to the CA's API"},
		{`Get "https://acme.example.org/dir": tls: failed to verify certificate: x509: certificate signed by unknown authority`, "ca_root"},
		{`HTTP 500 urn:ietf:params:acme:error:serverInternal - oops`, ""},
	}
	for _, tc := range cases {
		got := FailureHint(tc.msg)
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("FailureHint(%q) = %q, want one mentioning %q", tc.msg, got, tc.want)
		}
	}
}
