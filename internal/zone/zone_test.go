package zone

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"gatehouse/internal/config"
)

const testConfig = `
dns:
  listen: ["127.0.0.1:0"]
  publish: {ipv4: 203.0.113.10, ipv6: "2001:db8::10"}
  zones:
    example.org:
      ttl: 600
      records:
        - {name: "@", type: A, value: 192.0.2.1}
        - {name: "@", type: MX, value: "10 mail"}
        - {name: mail, type: A, value: 192.0.2.25}
        - {name: www, type: CNAME, value: example.org.}
        - {name: chain, type: CNAME, value: www}
        - {name: out, type: CNAME, value: elsewhere.example.net.}
        - {name: loop1, type: CNAME, value: loop2}
        - {name: loop2, type: CNAME, value: loop1}
        - {name: dangling, type: CNAME, value: nothing}
        - {name: "*.apps", type: A, value: 192.0.2.80}
        - {name: explicit.apps, type: TXT, value: "written here"}
        - {name: deep.ent.tree, type: A, value: 192.0.2.7, ttl: 30}
        - {name: txt, type: TXT, value: "v=spf1 -all"}
        - {name: sub, type: NS, value: ns.sub}
        - {name: ns.sub, type: A, value: 192.0.2.53}
        - {name: site, type: MX, value: "10 mail"}
        - {name: own, type: A, value: 192.0.2.99}
        - {name: _sip._tcp, type: SRV, value: "10 5 5060 sip"}
        - {name: "@", type: CAA, value: '0 issue "letsencrypt.org"'}
    other.test:
      records:
        - {name: target, type: A, value: 192.0.2.200}
`

// compileYAML parses text as a whole config and compiles its zones, with
// sites' hosts given separately.
func compileYAML(t *testing.T, text string, hosts ...string) (*Set, error) {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(text))
	if err != nil {
		return nil, err
	}
	return compile(cfg.DNS, hosts, 1700000000)
}

func rr(s string) dns.RR {
	r, err := dns.NewRR(s)
	if err != nil {
		panic(err)
	}
	return r
}

func strs(rrs []dns.RR) []string {
	var out []string
	for _, r := range rrs {
		out = append(out, strings.ReplaceAll(r.String(), "\t", " "))
	}
	return out
}

func TestLookup(t *testing.T) {
	text := strings.Replace(testConfig, "    other.test:\n", "    other.test:\n      records:\n        - {name: chain, type: CNAME, value: www.example.org.}\n", 1)
	text = strings.Replace(text, "      records:\n        - {name: target", "        - {name: target", 1)
	s, err := compileYAML(t, text, "site.example.org", "own.example.org", "*.wild.example.org", "unrelated.example.com")
	if err != nil {
		t.Fatal(err)
	}
	soa := "example.org. 600 IN SOA ns1.example.org. hostmaster.example.org. 1700000000 3600 600 604800 600"
	tests := []struct {
		desc   string
		qname  string
		qtype  uint16
		rcode  int
		aa     bool
		answer []string
		ns     []string
		extra  []string
	}{
		{"apex A", "example.org.", dns.TypeA, 0, true, []string{"example.org. 600 IN A 192.0.2.1"}, nil, nil},
		{"case does not matter", "ExAmPlE.oRg", dns.TypeA, 0, true, []string{"example.org. 600 IN A 192.0.2.1"}, nil, nil},
		{"made SOA", "example.org.", dns.TypeSOA, 0, true, []string{soa}, nil, nil},
		{"made NS", "example.org.", dns.TypeNS, 0, true, []string{"example.org. 600 IN NS ns1.example.org."}, nil, nil},
		{"relative MX target", "example.org.", dns.TypeMX, 0, true, []string{"example.org. 600 IN MX 10 mail.example.org."}, nil, nil},
		{"CAA", "example.org.", dns.TypeCAA, 0, true, []string{`example.org. 600 IN CAA 0 issue "letsencrypt.org"`}, nil, nil},
		{"SRV", "_sip._tcp.example.org.", dns.TypeSRV, 0, true, []string{"_sip._tcp.example.org. 600 IN SRV 10 5 5060 sip.example.org."}, nil, nil},
		{"TXT is one text", "txt.example.org.", dns.TypeTXT, 0, true, []string{`txt.example.org. 600 IN TXT "v=spf1 -all"`}, nil, nil},
		{"NODATA has the SOA", "mail.example.org.", dns.TypeAAAA, 0, true, nil, []string{soa}, nil},
		{"NXDOMAIN has the SOA", "nope.example.org.", dns.TypeA, dns.RcodeNameError, true, nil, []string{soa}, nil},
		{"empty non-terminal is NODATA", "tree.example.org.", dns.TypeA, 0, true, nil, []string{soa}, nil},
		{"below an empty non-terminal", "x.tree.example.org.", dns.TypeA, dns.RcodeNameError, true, nil, []string{soa}, nil},
		{"record TTL", "deep.ent.tree.example.org.", dns.TypeA, 0, true, []string{"deep.ent.tree.example.org. 30 IN A 192.0.2.7"}, nil, nil},
		{"CNAME followed", "www.example.org.", dns.TypeA, 0, true, []string{"www.example.org. 600 IN CNAME example.org.", "example.org. 600 IN A 192.0.2.1"}, nil, nil},
		{"CNAME asked for", "www.example.org.", dns.TypeCNAME, 0, true, []string{"www.example.org. 600 IN CNAME example.org."}, nil, nil},
		{"CNAME chain", "chain.example.org.", dns.TypeA, 0, true, []string{"chain.example.org. 600 IN CNAME www.example.org.", "www.example.org. 600 IN CNAME example.org.", "example.org. 600 IN A 192.0.2.1"}, nil, nil},
		{"CNAME chain to NODATA", "www.example.org.", dns.TypeAAAA, 0, true, []string{"www.example.org. 600 IN CNAME example.org."}, []string{soa}, nil},
		{"CNAME chain across zones", "chain.other.test.", dns.TypeA, 0, true, []string{"chain.other.test. 300 IN CNAME www.example.org.", "www.example.org. 600 IN CNAME example.org.", "example.org. 600 IN A 192.0.2.1"}, nil, nil},
		{"CNAME out of our zones as is", "out.example.org.", dns.TypeA, 0, true, []string{"out.example.org. 600 IN CNAME elsewhere.example.net."}, nil, nil},
		{"CNAME loop stops", "loop1.example.org.", dns.TypeA, 0, true, []string{"loop1.example.org. 600 IN CNAME loop2.example.org.", "loop2.example.org. 600 IN CNAME loop1.example.org."}, nil, nil},
		{"CNAME to nothing is NXDOMAIN (RFC 6604)", "dangling.example.org.", dns.TypeA, dns.RcodeNameError, true, []string{"dangling.example.org. 600 IN CNAME nothing.example.org."}, []string{soa}, nil},
		{"wildcard", "x.apps.example.org.", dns.TypeA, 0, true, []string{"x.apps.example.org. 600 IN A 192.0.2.80"}, nil, nil},
		{"wildcard NODATA", "x.apps.example.org.", dns.TypeAAAA, 0, true, nil, []string{soa}, nil},
		{"explicit name beats wildcard", "explicit.apps.example.org.", dns.TypeA, 0, true, nil, []string{soa}, nil},
		{"wildcard covers one closest encloser", "a.b.apps.example.org.", dns.TypeA, 0, true, []string{"a.b.apps.example.org. 600 IN A 192.0.2.80"}, nil, nil},
		{"referral", "host.sub.example.org.", dns.TypeA, 0, false, nil, []string{"sub.example.org. 600 IN NS ns.sub.example.org."}, []string{"ns.sub.example.org. 600 IN A 192.0.2.53"}},
		{"referral at the cut", "sub.example.org.", dns.TypeA, 0, false, nil, []string{"sub.example.org. 600 IN NS ns.sub.example.org."}, []string{"ns.sub.example.org. 600 IN A 192.0.2.53"}},
		{"outside every zone", "example.com.", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		{"parent of a zone", "org.", dns.TypeA, dns.RcodeRefused, false, nil, nil, nil},
		{"ANY is one RRset", "example.org.", dns.TypeANY, 0, true, []string{"example.org. 600 IN A 192.0.2.1"}, nil, nil},
		{"published A and AAAA", "site.example.org.", dns.TypeA, 0, true, []string{"site.example.org. 600 IN A 203.0.113.10"}, nil, nil},
		{"published AAAA", "site.example.org.", dns.TypeAAAA, 0, true, []string{"site.example.org. 600 IN AAAA 2001:db8::10"}, nil, nil},
		{"written A wins over published", "own.example.org.", dns.TypeA, 0, true, []string{"own.example.org. 600 IN A 192.0.2.99"}, nil, nil},
		{"published wildcard host", "a.wild.example.org.", dns.TypeA, 0, true, []string{"a.wild.example.org. 600 IN A 203.0.113.10"}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			a := s.Lookup(tc.qname, tc.qtype)
			if a.Rcode != tc.rcode || a.Authoritative != tc.aa {
				t.Errorf("rcode %s aa %v, want %s aa %v", dns.RcodeToString[a.Rcode], a.Authoritative, dns.RcodeToString[tc.rcode], tc.aa)
			}
			for _, sec := range []struct {
				name      string
				got, want []string
			}{{"answer", strs(a.Answer), tc.answer}, {"authority", strs(a.Ns), tc.ns}, {"additional", strs(a.Extra), tc.extra}} {
				if !slices.Equal(sec.got, sec.want) {
					t.Errorf("%s:\n got %q\nwant %q", sec.name, sec.got, sec.want)
				}
			}
		})
	}
}

// TestPackedAgreesWithLookup checks the compile-time answers against
// Lookup for every name and a spread of types.
func TestPackedAgreesWithLookup(t *testing.T) {
	s, err := compileYAML(t, testConfig, "site.example.org")
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	types := []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeCNAME, dns.TypeNS, dns.TypeSOA, dns.TypeSRV, dns.TypeCAA, dns.TypeHINFO, dns.TypePTR}
	checked := 0
	for _, z := range s.zones {
		for name := range z.nodes {
			n, _ := dns.PackDomainName(name, buf, 0, nil, false)
			for _, qt := range types {
				b := s.Packed(buf[:n], qt)
				if b == nil {
					t.Errorf("%s %s: no packed answer", name, dns.TypeToString[qt])
					continue
				}
				var got dns.Msg
				if err := got.Unpack(b); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				want := s.Lookup(name, qt)
				// The packed "other" answer carries the probe type: the
				// server writes the client's type over it.
				if g := strs(got.Answer); !slices.Equal(g, strs(want.Answer)) || got.Rcode != want.Rcode || got.Authoritative != want.Authoritative ||
					!slices.Equal(strs(got.Ns), strs(want.Ns)) || !slices.Equal(strs(got.Extra), strs(want.Extra)) {
					t.Errorf("%s %s: packed %v, Lookup %+v", name, dns.TypeToString[qt], &got, want)
				}
				checked++
			}
		}
	}
	if checked < 100 {
		t.Fatalf("checked only %d answers", checked)
	}
}

func TestCompileErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.zone")
	os.WriteFile(bad, []byte("$TTL 300\n@ IN SOA ns1 hostmaster 1 2 3 4 5\nwww IN A 300.1.1.1\n"), 0o644)
	tests := []struct{ desc, zone, want string }{
		{"unknown type", `records: [{name: www, type: HINFO, value: "x y"}]`, `t.yaml:5:35: record type "HINFO" is not supported`},
		{"bad address", `records: [{name: www, type: A, value: 300.1.2.3}]`, `t.yaml:5:45: A value "300.1.2.3" does not parse`},
		{"AAAA given an IPv4 address", `records: [{name: www, type: AAAA, value: 192.0.2.1}]`, `t.yaml:5:48: AAAA value "192.0.2.1" does not parse`},
		{"name outside the zone", `records: [{name: www.example.com., type: A, value: 192.0.2.1}]`, `t.yaml:5:24: record name "www.example.com." is outside the zone example.org`},
		{"CNAME beside other data", "records:\n        - {name: www, type: A, value: 192.0.2.1}\n        - {name: www, type: CNAME, value: example.org.}", `t.yaml:7:11: www.example.org has other records, so it cannot also be a CNAME`},
		{"CNAME at the apex", `records: [{name: "@", type: CNAME, value: example.net.}]`, `t.yaml:5:17: a CNAME cannot be at the zone apex`},
		{"zone file line", "file: " + bad, bad + ":3:"},
		{"missing zone file", "file: " + filepath.Join(dir, "none.zone"), "cannot read zone file"},
		{"bad wildcard", `records: [{name: "a*", type: A, value: 192.0.2.1}]`, `record name "a*" has a * that is not the whole first label`},
		{"zone-file syntax in a value", `records: [{name: a, type: A, value: "$INCLUDE /etc/passwd"}]`, `holds zone-file syntax`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := compileYAML(t, "dns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.org:\n      "+tc.zone+"\n")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

func TestZoneFile(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "backend.com.zone"), []byte(`$ORIGIN backend.com.
$TTL 3600
@     IN SOA ns1 hostmaster 2024010101 7200 900 1209600 60
@     IN NS  ns1
ns1   IN A   192.0.2.53
www   IN CNAME @
@     IN A   192.0.2.10
`), 0o644)
	cfgPath := filepath.Join(dir, "gatehouse.yaml")
	cfg, err := config.Parse(cfgPath, []byte("dns:\n  listen: [\":53\"]\n  zones:\n    backend.com: {file: backend.com.zone}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Compile(cfg.DNS, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := s.Lookup("www.backend.com.", dns.TypeA)
	if got := strs(a.Answer); !slices.Equal(got, []string{"www.backend.com. 3600 IN CNAME backend.com.", "backend.com. 3600 IN A 192.0.2.10"}) {
		t.Errorf("got %q", got)
	}
	a = s.Lookup("nope.backend.com.", dns.TypeA)
	if got := strs(a.Ns); len(got) != 1 || !strings.Contains(got[0], "backend.com. 60 IN SOA ns1.backend.com. hostmaster.backend.com. 2024010101") {
		t.Errorf("negative TTL is min(SOA TTL, minimum): got %q", got)
	}
	if st := s.Status(); len(st) != 1 || st[0].Serial != 2024010101 || st[0].Records != 5 {
		t.Errorf("status %+v", st)
	}
	tr := s.Zone("backend.com").Transfer()
	if len(tr) != 6 || tr[0].Header().Rrtype != dns.TypeSOA || tr[5].Header().Rrtype != dns.TypeSOA {
		t.Errorf("transfer %v", tr)
	}
}

func TestWithTXT(t *testing.T) {
	s, err := compileYAML(t, "dns:\n  zones:\n    example.org:\n      records:\n        - {name: www, type: CNAME, value: example.org.}\n        - {name: sub, type: NS, value: ns.example.net.}\n")
	if err != nil {
		t.Fatal(err)
	}
	s2, err := s.WithTXT([]TXT{{"_acme-challenge.example.org", "token1"}, {"_acme-challenge.example.org.", "token2"}}, map[string]uint32{"example.org.": 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := strs(s2.Lookup("_acme-challenge.example.org.", dns.TypeTXT).Answer); len(got) != 2 {
		t.Errorf("got %q", got)
	}
	if a := s.Lookup("_acme-challenge.example.org.", dns.TypeTXT); a.Rcode != dns.RcodeNameError {
		t.Errorf("the base set changed: %v", a)
	}
	if s2.Zone("example.org").SOA().Serial != s.Zone("example.org").SOA().Serial+1 {
		t.Error("serial not raised")
	}
	// The record gone, the serial stays raised: back at the base's, a
	// secondary holding the record would never transfer its removal.
	s3, err := s.WithTXT(nil, map[string]uint32{"example.org.": 2, "gone.example.": 5})
	if err != nil {
		t.Fatal(err)
	}
	if s3.Zone("example.org").SOA().Serial != s.Zone("example.org").SOA().Serial+2 {
		t.Error("serial not raised for a zone that held a record")
	}
	if got := s3.Lookup("_acme-challenge.example.org.", dns.TypeTXT); got.Rcode != dns.RcodeNameError {
		t.Errorf("a held zone serves a record: %v", got)
	}
	for _, bad := range []string{"www.example.org", "x.sub.example.org", "example.net", "a..b"} {
		if _, err := s.WithTXT([]TXT{{bad, "v"}}, map[string]uint32{"example.org.": 1}); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// FuzzParseZone feeds master-file text and record values to the parsers;
// whatever compiles must answer lookups without panicking.
func FuzzParseZone(f *testing.F) {
	f.Add("$TTL 300\n@ IN SOA ns1 h 1 2 3 4 5\nwww IN CNAME @\n@ IN A 192.0.2.1\n", "www", "A", "192.0.2.1") // a plain zone
	f.Add("* IN TXT \"x\"\na.b IN NS ns.a.b\nns.a.b IN AAAA ::1\n", "*.x", "TXT", "hello")                   // wildcard and delegation
	f.Add("$GENERATE 1-3 h$ A 192.0.2.$\n", "@", "MX", "10 mail")                                            // $GENERATE
	f.Add("x IN CNAME y\ny IN CNAME x\n", "s", "SRV", "1 2 3 t")                                             // a CNAME loop
	f.Add("$INCLUDE /etc/passwd\n", "c", "CAA", `0 issue "ca.example"`)                                      // include refused
	f.Add("@ IN A 1.2.3.4 ( \n", "y", "CNAME", "z.")                                                         // unbalanced
	f.Fuzz(func(t *testing.T, file, name, typ, value string) {
		apex := "example.org."
		rrs, err := config.ParseZone(strings.NewReader(file), "f.zone", apex, 300)
		if err != nil {
			rrs = nil
		}
		r := config.Record{Name: name, Type: typ, Value: value}
		if x, err := r.RR(apex, 300); err == nil {
			if x.Header().Name != dns.CanonicalName(x.Header().Name) || !dns.IsSubDomain(apex, x.Header().Name) {
				t.Fatalf("record %v outside the zone or not canonical", x)
			}
			rrs = append(rrs, x)
		}
		if len(config.CheckZone(apex, rrs)) > 0 {
			return
		}
		withSOA, _ := withSOAandNS(rrs, apex, 300, 1)
		s := build([]zoneInput{{apex: apex, rrs: withSOA}})
		for _, rr := range rrs {
			for _, qt := range []uint16{dns.TypeA, rr.Header().Rrtype, dns.TypeANY} {
				s.Lookup(rr.Header().Name, qt)
				s.Lookup("zz."+rr.Header().Name, qt)
			}
		}
	})
}
