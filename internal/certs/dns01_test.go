package certs

import (
	"context"
	"testing"
	"time"

	"github.com/libdns/libdns"
	"github.com/mholt/acmez/v3/acme"
	"github.com/miekg/dns"

	"gatehouse/internal/certs/pebbletest"
)

// TestDNS01SolverPublishes presents a wildcard's challenge through the
// provider, reads it back with a real DNS client, and cleans it up.
func TestDNS01SolverPublishes(t *testing.T) {
	d := pebbletest.StartDNS(t)
	s := &dns01Solver{
		provider: &TXTProvider{Publisher: d},
		zoneFor: func(name string) string {
			if dns.IsSubDomain("example.net.", dns.Fqdn(name)) {
				return "example.net"
			}
			return ""
		},
		ttl: dns01TTL,
	}
	ch := acme.Challenge{Type: acme.ChallengeTypeDNS01, Token: "tok", KeyAuthorization: "tok.thumb", Identifier: acme.Identifier{Type: "dns", Value: "example.net"}}
	ctx := context.Background()
	if err := s.Present(ctx, ch); err != nil {
		t.Fatal(err)
	}
	txt := lookupTXT(t, d.Addr, "_acme-challenge.example.net.")
	if len(txt) != 1 || txt[0] != ch.DNS01KeyAuthorization() {
		t.Fatalf("got TXT %q, want %q", txt, ch.DNS01KeyAuthorization())
	}
	if err := s.CleanUp(ctx, ch); err != nil {
		t.Fatal(err)
	}
	if txt := lookupTXT(t, d.Addr, "_acme-challenge.example.net."); len(txt) != 0 {
		t.Fatalf("after clean-up got TXT %q, want none", txt)
	}

	outside := ch
	outside.Identifier.Value = "example.com"
	if err := s.Present(ctx, outside); err == nil {
		t.Fatal("presenting a challenge outside the served zones succeeded")
	}
}

func lookupTXT(t *testing.T, server, name string) []string {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeTXT)
	c := &dns.Client{Net: "tcp", Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if txt, ok := rr.(*dns.TXT); ok {
			out = append(out, txt.Txt...)
		}
	}
	return out
}

func TestTXTProvider(t *testing.T) {
	d := pebbletest.StartDNS(t)
	p := &TXTProvider{Publisher: d}
	ctx := context.Background()
	recs := []libdns.Record{
		libdns.TXT{Name: "_acme-challenge", Text: "one"},
		libdns.TXT{Name: "_acme-challenge", Text: "two"}, // example.org and *.example.org at once
	}
	if _, err := p.AppendRecords(ctx, "example.org.", recs); err != nil {
		t.Fatal(err)
	}
	if got := d.TXT("_acme-challenge.example.org"); len(got) != 2 {
		t.Fatalf("got %q, want both values", got)
	}
	if _, err := p.DeleteRecords(ctx, "example.org.", recs[:1]); err != nil {
		t.Fatal(err)
	}
	if got := d.TXT("_acme-challenge.example.org"); len(got) != 1 || got[0] != "two" {
		t.Fatalf("got %q, want only the other value", got)
	}
	if _, err := p.AppendRecords(ctx, "example.org.", []libdns.Record{libdns.Address{Name: "www"}}); err == nil {
		t.Fatal("appending an A record succeeded; only TXT is published")
	}
	if _, err := (&TXTProvider{}).AppendRecords(ctx, "example.org.", recs); err == nil {
		t.Fatal("appending without a DNS server succeeded")
	}
}
