package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateDNS(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.zone"), []byte("@ 300 IN SOA ns1 h 1 2 3 4 5\nwww 300 IN AAAA 192.0.2.1\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "good.zone"), []byte("@ 300 IN A 192.0.2.1\n"), 0o644)
	tests := []struct {
		desc, yaml, want string
	}{
		{"bad listen address", `dns: {listen: ["localhost"]}`, `t.yaml:1:16: address "localhost" is not host:port`},
		{"publish not IPv4", `dns: {publish: {ipv4: "::1"}}`, `t.yaml:1:23: publish ipv4 "::1" is not an IPv4 address`},
		{"publish not IPv6", `dns: {publish: {ipv6: 192.0.2.1}}`, `t.yaml:1:23: publish ipv6 "192.0.2.1" is not an IPv6 address`},
		{"rate limit prefix", `dns: {rate_limit: {ipv4_prefix: 33}}`, `t.yaml:1:33: rate_limit ipv4_prefix must be between 0 and 32`},
		{"zone name", "dns:\n  zones:\n    \"bad..name\": {}", `t.yaml:3:18: zone name "bad..name" is not a domain name`},
		{"unknown type", "dns:\n  zones:\n    example.org:\n      records: [{name: a, type: LOC, value: x}]", `t.yaml:4:33: record type "LOC" is not supported`},
		{"bad value", "dns:\n  zones:\n    example.org:\n      records: [{name: a, type: MX, value: mail}]", `t.yaml:4:44: MX value "mail" does not parse`},
		{"missing value", "dns:\n  zones:\n    example.org:\n      records: [{name: a, type: A}]", `has no value`},
		{"outside the zone", "dns:\n  zones:\n    example.org:\n      records: [{name: a.example.net., type: A, value: 192.0.2.1}]", `t.yaml:4:24: record name "a.example.net." is outside the zone example.org`},
		{"CNAME beside data", "dns:\n  zones:\n    example.org:\n      records:\n        - {name: a, type: CNAME, value: b}\n        - {name: a, type: TXT, value: x}", `t.yaml:6:11: a.example.org is a CNAME, so it cannot have other records`},
		{"two CNAMEs", "dns:\n  zones:\n    example.org:\n      records:\n        - {name: a, type: CNAME, value: b}\n        - {name: a, type: CNAME, value: c}", `t.yaml:6:11: a.example.org already has a CNAME`},
		{"SOA below the apex", "dns:\n  zones:\n    example.org:\n      records: [{name: a, type: SOA, value: ns h 1 2 3 4 5}]", `a zone has one SOA record, at its apex`},
		{"bad transfer", "dns:\n  zones:\n    example.org:\n      transfer: [everyone]", `t.yaml:4:18: transfer "everyone" is not an address or CIDR`},
		{"bad notify", "dns:\n  zones:\n    example.org:\n      notify: [192.0.2.53, ns2.example.net]", `t.yaml:4:28: notify "ns2.example.net" is not an address with an optional port`},
		{"notify port 0", "dns:\n  zones:\n    example.org:\n      notify: [\"192.0.2.53:0\"]", `t.yaml:4:16: notify "192.0.2.53:0" is not an address`},
		{"file and records", "dns:\n  zones:\n    example.org:\n      file: good.zone\n      records: [{name: a, type: A, value: 192.0.2.1}]", `a zone has either a file or records`},
		{"zone file error has its line", "dns:\n  zones:\n    example.org: {file: bad.zone}", `bad.zone:2:`},
		{"zone file missing", "dns:\n  zones:\n    example.org: {file: none.zone}", `cannot read zone file`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestValidateDNSGood(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "good.zone"), []byte("@ 300 IN A 192.0.2.1\n"), 0o644)
	c, err := Parse(filepath.Join(dir, "g.yaml"), []byte(`dns:
  listen: ["127.0.0.1:8053", "[::1]:8053"]
  publish: {ipv4: 203.0.113.10, ipv6: "2001:db8::10"}
  rate_limit: {responses: 100, slip: 2}
  zones:
    example.org:
      ttl: 60
      transfer: [192.0.2.53, 198.51.100.0/24]
      records:
        - {name: "@", type: A, value: 192.0.2.1}
        - {name: "@", type: MX, value: "10 mail"}
        - {name: "@", type: TXT, value: "v=spf1 mx -all"}
        - {name: "@", type: CAA, value: '0 issue "letsencrypt.org"'}
        - {name: _sip._tcp, type: SRV, value: "10 5 5060 sip.example.org."}
        - {name: "*.apps", type: CNAME, value: example.org.}
        - {name: www.example.org., type: AAAA, value: "2001:db8::1", ttl: 30}
    backend.com: {file: good.zone}
`))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings; len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	if got := c.DNS.ZoneFile(c.DNS.Zones["backend.com"]); got != filepath.Join(dir, "good.zone") {
		t.Errorf("zone file resolved to %s", got)
	}
	if p := c.DNS.PosOf(&c.DNS.Zones["example.org"].Records[1].Value); p.Line != 11 {
		t.Errorf("position %v", p)
	}
	if _, err := Parse("w.yaml", []byte("dns:\n  zones:\n    example.org: {}\n")); err != nil {
		t.Fatal(err)
	}
}

func TestTXTValue(t *testing.T) {
	long := strings.Repeat("k", 300)
	for _, tc := range []struct{ value, want string }{
		{"v=spf1 include:_spf.example.org ~all", `"v=spf1 include:_spf.example.org ~all"`},
		{`"two" "strings"`, `"two" "strings"`},
		{long, `"` + long[:255] + `" "` + long[255:] + `"`},
	} {
		r := Record{Name: "t", Type: "txt", Value: tc.value}
		rr, err := r.RR("example.org.", 300)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.SplitN(rr.String(), "\t", 5)[4]; got != tc.want {
			t.Errorf("got %s, want %s", got, tc.want)
		}
	}
}

// FuzzRecord feeds record fields to the parser: no panic, and an accepted
// record is inside its zone, of the type asked, and prints back into a
// record that parses.
func FuzzRecord(f *testing.F) {
	f.Add("www", "A", "192.0.2.1")                 // plain
	f.Add("@", "MX", "10 mail")                    // relative target
	f.Add("*.apps", "CNAME", "x.example.net.")     // wildcard
	f.Add("a", "TXT", `"quoted" "strings"`)        // quoted TXT
	f.Add("a", "CAA", `0 issue "letsencrypt.org"`) // CAA
	f.Add("a", "A", "192.0.2.1 ( 1")               // an open parenthesis
	f.Add("a.example.org.", "SRV", "1 2 3 t")      // absolute name
	f.Add("a", "NS", "$ORIGIN evil.")              // a directive
	f.Fuzz(func(t *testing.T, name, typ, value string) {
		r := Record{Name: name, Type: typ, Value: value}
		rr, err := r.RR("example.org.", 300)
		if err != nil {
			return
		}
		h := rr.Header()
		if h.Rrtype != RecordTypes[strings.ToUpper(strings.TrimSpace(typ))] || h.Name != strings.ToLower(h.Name) || !strings.HasSuffix(h.Name, "example.org.") {
			t.Fatalf("accepted %q %q %q as %v", name, typ, value, rr)
		}
	})
}

func TestNotifyTargets(t *testing.T) {
	for _, tc := range []struct {
		zone string
		want string
	}{
		{"transfer: [192.0.2.53, 198.51.100.0/24, \"2001:db8::53\"]", "[192.0.2.53:53 [2001:db8::53]:53]"},
		{"transfer: [192.0.2.53]\n      notify: [\"192.0.2.54:5353\", \"2001:db8::54\", \"[2001:db8::55]:5300\"]", "[192.0.2.54:5353 [2001:db8::54]:53 [2001:db8::55]:5300]"},
		{"transfer: [192.0.2.53]\n      notify: []", "[]"},
	} {
		c, err := Parse("t.yaml", []byte("dns:\n  zones:\n    example.org:\n      "+tc.zone+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.zone, err)
		}
		if got := fmt.Sprint(c.DNS.Zones["example.org"].NotifyTargets()); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.zone, got, tc.want)
		}
	}
}

func TestNotifyOutsideTransferWarns(t *testing.T) {
	c, err := Parse("t.yaml", []byte("dns:\n  listen: [\":53\"]\n  zones:\n    example.org:\n      transfer: [192.0.2.0/24]\n      notify: [192.0.2.53, \"198.51.100.53:5353\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `t.yaml:6:28: warning: notify 198.51.100.53:5353 is not in this zone's transfer list`
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings.Error(), want) {
		t.Errorf("warnings:\n%v\nwant one with %q", c.Warnings, want)
	}
}
