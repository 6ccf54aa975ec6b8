package dnsserver

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/config"
	"gatehouse/internal/systest"
	"gatehouse/internal/zone"
)

// defaultSnippet is the dns section of the embedded default config.
const defaultSnippet = `
dns:
  listen: ["127.0.0.1:8053"]
  zones:
    gatehouse.test:
      records:
        - {name: demo, type: A, value: 127.0.0.1}
        - {name: demo, type: AAAA, value: "::1"}
        - {name: www, type: CNAME, value: demo.gatehouse.test.}
`

var testZones = `
dns:
  listen: ["127.0.0.1:0"]
  publish: {ipv4: 203.0.113.10}
  zones:
    example.org:
      ttl: 600
      transfer: [127.0.0.2]
      notify: []
      records:
        - {name: "@", type: A, value: 192.0.2.1}
        - {name: "@", type: MX, value: "10 mail"}
        - {name: mail, type: A, value: 192.0.2.25}
        - {name: www, type: CNAME, value: example.org.}
        - {name: chain, type: CNAME, value: www}
        - {name: loop1, type: CNAME, value: loop2}
        - {name: loop2, type: CNAME, value: loop1}
        - {name: "*.apps", type: A, value: 192.0.2.80}
        - {name: explicit.apps, type: A, value: 192.0.2.81}
` + bigRRset + `
    transfer.test:
      transfer: [127.0.0.0/8]
      records:
        - {name: a, type: A, value: 192.0.2.9}
`

// bigRRset is 80 TXT records at one name: about 3 KB, more than fits in a
// UDP answer.
var bigRRset = func() string {
	var b strings.Builder
	for i := range 80 {
		fmt.Fprintf(&b, "        - {name: big, type: TXT, value: \"record number %02d of a large set\"}\n", i)
	}
	return b.String()
}()

func compile(t testing.TB, text string, hosts ...string) *zone.Set {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	set, err := zone.Compile(cfg.DNS, hosts)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// start serves text's zones on a loopback port and returns the address.
func start(t testing.TB, text string, configure ...func(*Server)) (*Server, string) {
	t.Helper()
	s := New([]string{"127.0.0.1:0"})
	s.Logger = slog.New(slog.DiscardHandler)
	for _, f := range configure {
		f(s)
	}
	if err := s.Update(compile(t, text, "site.example.org")); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, s.Addrs[0]
}

func exchange(t testing.TB, network, addr string, m *dns.Msg) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second, UDPSize: 65535}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %v: %v", network, m.Question, err)
	}
	return r
}

func query(name string, qtype uint16) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = false
	return m
}

func rrs(rrs []dns.RR) []string {
	var out []string
	for _, r := range rrs {
		if r.Header().Rrtype == dns.TypeOPT {
			continue
		}
		out = append(out, strings.ReplaceAll(r.String(), "\t", " "))
	}
	return out
}

// TestProtocol asks each question over UDP and over TCP.
func TestProtocol(t *testing.T) {
	_, addr := start(t, testZones)
	soa := func(r *dns.Msg) string {
		if len(r.Ns) != 1 {
			return fmt.Sprintf("%d authority records", len(r.Ns))
		}
		s, ok := r.Ns[0].(*dns.SOA)
		if !ok || s.Hdr.Name != "example.org." || s.Hdr.Ttl != 600 || s.Minttl != 600 {
			return "authority " + r.Ns[0].String()
		}
		return ""
	}
	tests := []struct {
		desc  string
		q     func() *dns.Msg
		check func(r *dns.Msg) string
	}{
		{"authoritative answer", func() *dns.Msg { return query("example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if !r.Authoritative || r.Rcode != 0 || !slices.Equal(rrs(r.Answer), []string{"example.org. 600 IN A 192.0.2.1"}) || r.RecursionAvailable {
				return r.String()
			}
			return ""
		}},
		{"question echoed in the client's case", func() *dns.Msg { return query("MaIl.ExAmPlE.OrG.", dns.TypeA) }, func(r *dns.Msg) string {
			if r.Question[0].Name != "MaIl.ExAmPlE.OrG." || len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.25" {
				return r.String()
			}
			return ""
		}},
		{"RD copied, RA never set", func() *dns.Msg { m := query("example.org.", dns.TypeA); m.RecursionDesired = true; return m }, func(r *dns.Msg) string {
			if !r.RecursionDesired || r.RecursionAvailable {
				return r.String()
			}
			return ""
		}},
		{"NXDOMAIN with SOA", func() *dns.Msg { return query("nope.example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeNameError || !r.Authoritative || len(r.Answer) > 0 {
				return r.String()
			}
			return soa(r)
		}},
		{"NODATA with SOA", func() *dns.Msg { return query("mail.example.org.", dns.TypeAAAA) }, func(r *dns.Msg) string {
			if r.Rcode != 0 || !r.Authoritative || len(r.Answer) > 0 {
				return r.String()
			}
			return soa(r)
		}},
		{"REFUSED outside every zone", func() *dns.Msg { return query("example.com.", dns.TypeA) }, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeRefused || r.Authoritative || len(r.Answer)+len(r.Ns) > 0 {
				return r.String()
			}
			return ""
		}},
		{"CNAME chain followed", func() *dns.Msg { return query("chain.example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if len(r.Answer) != 3 || r.Answer[2].Header().Rrtype != dns.TypeA {
				return r.String()
			}
			return ""
		}},
		{"CNAME loop stops", func() *dns.Msg { return query("loop1.example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if r.Rcode != 0 || len(r.Answer) != 2 {
				return r.String()
			}
			return ""
		}},
		{"wildcard", func() *dns.Msg { return query("any.apps.example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if len(r.Answer) != 1 || r.Answer[0].Header().Name != "any.apps.example.org." || r.Answer[0].(*dns.A).A.String() != "192.0.2.80" {
				return r.String()
			}
			return ""
		}},
		{"explicit beats wildcard", func() *dns.Msg { return query("explicit.apps.example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "192.0.2.81" {
				return r.String()
			}
			return ""
		}},
		{"published site record", func() *dns.Msg { return query("site.example.org.", dns.TypeA) }, func(r *dns.Msg) string {
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "203.0.113.10" {
				return r.String()
			}
			return ""
		}},
		{"EDNS0 echoed with 1232", func() *dns.Msg { m := query("example.org.", dns.TypeA); m.SetEdns0(4096, true); return m }, func(r *dns.Msg) string {
			o := r.IsEdns0()
			if o == nil || o.UDPSize() != 1232 || o.Version() != 0 || !o.Do() || len(r.Answer) != 1 {
				return r.String()
			}
			return ""
		}},
		{"EDNS version 1 is BADVERS", func() *dns.Msg {
			m := query("example.org.", dns.TypeA)
			m.SetEdns0(1232, false)
			m.Extra[0].(*dns.OPT).SetVersion(1)
			return m
		}, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeBadVers || len(r.Answer) > 0 {
				return r.String()
			}
			return ""
		}},
		{"ANY answered minimally (RFC 8482)", func() *dns.Msg { return query("example.org.", dns.TypeANY) }, func(r *dns.Msg) string {
			if len(r.Answer) != 1 || r.Rcode != 0 {
				return r.String()
			}
			return ""
		}},
		{"NOTIMP for NOTIFY", func() *dns.Msg { m := query("example.org.", dns.TypeSOA); m.Opcode = dns.OpcodeNotify; return m }, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeNotImplemented || r.Opcode != dns.OpcodeNotify {
				return r.String()
			}
			return ""
		}},
		{"NOTIMP for UPDATE", func() *dns.Msg { m := query("example.org.", dns.TypeSOA); m.Opcode = dns.OpcodeUpdate; return m }, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeNotImplemented {
				return r.String()
			}
			return ""
		}},
		{"FORMERR for two questions", func() *dns.Msg {
			m := query("example.org.", dns.TypeA)
			m.Question = append(m.Question, m.Question[0])
			return m
		}, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeFormatError {
				return r.String()
			}
			return ""
		}},
		{"FORMERR for an answer in a query", func() *dns.Msg {
			m := query("example.org.", dns.TypeA)
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: "x.", Rrtype: dns.TypeA, Class: dns.ClassINET}, A: net.IPv4(1, 2, 3, 4)}}
			return m
		}, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeFormatError {
				return r.String()
			}
			return ""
		}},
		{"CHAOS class refused", func() *dns.Msg {
			m := query("version.bind.", dns.TypeTXT)
			m.Question[0].Qclass = dns.ClassCHAOS
			return m
		}, func(r *dns.Msg) string {
			if r.Rcode != dns.RcodeRefused {
				return r.String()
			}
			return ""
		}},
	}
	for _, network := range []string{"udp", "tcp"} {
		for _, tc := range tests {
			t.Run(network+"/"+tc.desc, func(t *testing.T) {
				q := tc.q()
				r := exchange(t, network, addr, q)
				if r.Id != q.Id || !r.Response {
					t.Fatalf("id %d response %v", r.Id, r.Response)
				}
				if msg := tc.check(r); msg != "" {
					t.Errorf("got %s", msg)
				}
			})
		}
	}
}

func TestTruncation(t *testing.T) {
	_, addr := start(t, testZones)
	for _, tc := range []struct {
		desc    string
		network string
		edns    uint16
		tc      bool
		max     int
	}{
		{"UDP without EDNS fits 512 bytes", "udp", 0, true, 512},
		{"UDP with EDNS fits 1232 bytes", "udp", 4096, true, 1232},
		{"UDP with a small EDNS buffer fits 512 bytes", "udp", 600, true, 600},
		{"TCP carries it whole", "tcp", 0, false, 65535},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			q := query("big.example.org.", dns.TypeTXT)
			if tc.edns > 0 {
				q.SetEdns0(tc.edns, false)
			}
			r := exchange(t, tc.network, addr, q)
			r.Compress = true // as sent
			if r.Truncated != tc.tc || r.Len() > tc.max {
				t.Errorf("TC %v, %d bytes; want TC %v, at most %d", r.Truncated, r.Len(), tc.tc, tc.max)
			}
			if !tc.tc && len(r.Answer) != 80 {
				t.Errorf("%d records, want 80", len(r.Answer))
			}
		})
	}
}

func TestTransfer(t *testing.T) {
	_, addr := start(t, testZones)
	axfr := func(zone string) ([]dns.RR, error) {
		m := new(dns.Msg)
		m.SetAxfr(zone)
		ch, err := (&dns.Transfer{}).In(m, addr)
		if err != nil {
			return nil, err
		}
		var out []dns.RR
		for env := range ch {
			if env.Error != nil {
				return out, env.Error
			}
			out = append(out, env.RR...)
		}
		return out, nil
	}
	got, err := axfr("transfer.test.")
	if err != nil || len(got) != 4 || got[0].Header().Rrtype != dns.TypeSOA || got[3].Header().Rrtype != dns.TypeSOA {
		t.Errorf("allowed transfer: %v %v", got, err)
	}
	if _, err := axfr("example.org."); err == nil {
		t.Error("transfer to a client not allowed succeeded")
	}
	r := exchange(t, "tcp", addr, func() *dns.Msg { m := new(dns.Msg); m.SetAxfr("example.org."); return m }())
	if r.Rcode != dns.RcodeRefused {
		t.Errorf("not allowed: %s", dns.RcodeToString[r.Rcode])
	}
	r = exchange(t, "udp", addr, func() *dns.Msg { m := new(dns.Msg); m.SetAxfr("transfer.test."); return m }())
	if r.Rcode != dns.RcodeNotImplemented {
		t.Errorf("over UDP: %s", dns.RcodeToString[r.Rcode])
	}
}

// TestSilence: packets that could only be used to reflect get no reply.
func TestSilence(t *testing.T) {
	s, addr := start(t, testZones)
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	resp := query("example.org.", dns.TypeA)
	resp.Response = true
	respBytes, _ := resp.Pack()
	for _, pkt := range [][]byte{{1, 2, 3}, respBytes} {
		c.Write(pkt)
	}
	// A valid query sent after them is answered first: nothing else came.
	ok, _ := query("example.org.", dns.TypeA).Pack()
	c.Write(ok)
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	var r dns.Msg
	if err != nil || r.Unpack(buf[:n]) != nil || r.Rcode != 0 || len(r.Answer) != 1 {
		t.Fatalf("first reply: %v %v", err, &r)
	}
	if st := s.Status(); st.Responses["NOERROR"] != 1 {
		t.Errorf("status %+v", st)
	}
}

func TestFirewallHook(t *testing.T) {
	_, addr := start(t, testZones, func(s *Server) {
		s.Allow = func(src netip.AddrPort, network string) bool { return false }
	})
	for _, network := range []string{"udp", "tcp"} {
		c := &dns.Client{Net: network, Timeout: 300 * time.Millisecond}
		if r, _, err := c.Exchange(query("example.org.", dns.TypeA), addr); err == nil {
			t.Errorf("%s: denied client got %v", network, r)
		}
	}
}

func TestPublishTXT(t *testing.T) {
	s, addr := start(t, testZones)
	ask := func() *dns.Msg { return exchange(t, "udp", addr, query("_acme-challenge.example.org.", dns.TypeTXT)) }
	if r := ask(); r.Rcode != dns.RcodeNameError {
		t.Fatalf("before: %v", r)
	}
	serial := s.Status().Zones[0].Serial
	remove, err := s.PublishTXT("_acme-challenge.example.org", "token-1")
	if err != nil {
		t.Fatal(err)
	}
	if r := ask(); len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "token-1" {
		t.Fatalf("published: %v", r)
	}
	if s.Status().Zones[0].Serial == serial {
		t.Error("serial unchanged")
	}
	// A reload keeps it.
	if err := s.Update(compile(t, testZones)); err != nil {
		t.Fatal(err)
	}
	if r := ask(); len(r.Answer) != 1 {
		t.Fatalf("after Update: %v", r)
	}
	remove()
	remove()
	if r := ask(); r.Rcode != dns.RcodeNameError {
		t.Fatalf("removed: %v", r)
	}
	for _, bad := range []string{"example.com", "www.example.org"} {
		if _, err := s.PublishTXT(bad, "x"); err == nil {
			t.Errorf("%s: published", bad)
		}
	}
}

// TestSharedTXT: a server sharing another's TXTRecords serves the records
// published before it started, at the serial the first served them at,
// and a removal made through the first reaches it.
func TestSharedTXT(t *testing.T) {
	txt, serials := NewTXTRecords(), NewSerials("")
	share := func(s *Server) { s.TXT, s.Serials = txt, serials }
	old, _ := start(t, testZones, share)
	remove, err := old.PublishTXT("_acme-challenge.example.org", "token")
	if err != nil {
		t.Fatal(err)
	}
	serial := old.Status().Zones[0].Serial
	old.Close()
	s, addr := start(t, testZones, share)
	ask := func() *dns.Msg { return exchange(t, "udp", addr, query("_acme-challenge.example.org.", dns.TypeTXT)) }
	if r := ask(); len(r.Answer) != 1 || r.Answer[0].(*dns.TXT).Txt[0] != "token" {
		t.Fatalf("the new server: %v", r)
	}
	if got := s.Status().Zones[0].Serial; got != serial {
		t.Errorf("the new server serves serial %d, the old one served %d for the same records", got, serial)
	}
	remove()
	if r := ask(); r.Rcode != dns.RcodeNameError {
		t.Fatalf("after the removal through the old server: %v", r)
	}
	if s.Status().Published != 0 {
		t.Errorf("%d records still published", s.Status().Published)
	}
}

// TestUpdate swaps zones while serving.
func TestUpdate(t *testing.T) {
	s, addr := start(t, testZones)
	if err := s.Update(compile(t, defaultSnippet)); err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, "udp", addr, query("example.org.", dns.TypeA)); r.Rcode != dns.RcodeRefused {
		t.Errorf("old zone still served: %v", r)
	}
	if r := exchange(t, "udp", addr, query("demo.gatehouse.test.", dns.TypeA)); len(r.Answer) != 1 {
		t.Errorf("new zone not served: %v", r)
	}
}

// TestDefaultZone serves the embedded default's zone.
func TestDefaultZone(t *testing.T) {
	_, addr := start(t, strings.Replace(defaultSnippet, "127.0.0.1:8053", "127.0.0.1:0", 1))
	r := exchange(t, "udp", addr, query("www.gatehouse.test.", dns.TypeA))
	if got := rrs(r.Answer); !slices.Equal(got, []string{"www.gatehouse.test. 300 IN CNAME demo.gatehouse.test.", "demo.gatehouse.test. 300 IN A 127.0.0.1"}) {
		t.Errorf("got %q", got)
	}
	r = exchange(t, "tcp", addr, query("demo.gatehouse.test.", dns.TypeAAAA))
	if got := rrs(r.Answer); !slices.Equal(got, []string{"demo.gatehouse.test. 300 IN AAAA ::1"}) {
		t.Errorf("got %q", got)
	}
}

func TestRateLimit(t *testing.T) {
	for _, tc := range []struct {
		desc                   string
		slip                   int
		full, truncated, quiet int
	}{
		{"slip 1 answers every query", 1, 5, 15, 0},
		{"slip 2 truncates every other", 2, 5, 7, 8},
		{"slip -1 drops", -1, 5, 0, 15},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s, addr := start(t, testZones)
			s.SetRateLimit(RateLimit{Responses: 1, Burst: 5, Slip: tc.slip, LimitLoopback: true})
			c, err := net.Dial("udp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			full, truncated := 0, 0
			buf := make([]byte, 1500)
			for i := range 20 {
				q := query("example.org.", dns.TypeA)
				q.Id = uint16(i)
				b, _ := q.Pack()
				c.Write(b)
				c.SetReadDeadline(time.Now().Add(60 * time.Millisecond))
				n, err := c.Read(buf)
				if err != nil {
					continue
				}
				var r dns.Msg
				if err := r.Unpack(buf[:n]); err != nil || r.Id != uint16(i) {
					t.Fatalf("reply %v %v", err, &r)
				}
				if r.Truncated {
					if len(r.Answer) > 0 || n > len(b) {
						t.Errorf("a truncated reply of %d bytes for a %d-byte query: %v", n, len(b), &r)
					}
					truncated++
				} else {
					full++
				}
			}
			// One token a second may come back while the test runs.
			if full < tc.full || full > tc.full+1 || truncated > tc.truncated || truncated < tc.truncated-1 {
				t.Errorf("full %d truncated %d; want %d and %d", full, truncated, tc.full, tc.truncated)
			}
			st := s.Status()
			if int(st.Slipped) != truncated || st.Dropped+st.Slipped+uint64(full) != 20 {
				t.Errorf("status %+v", st)
			}
		})
	}
}

func TestDig(t *testing.T) {
	dig := systest.Program(t, "dig", "bind9-dnsutils")
	_, addr := start(t, strings.Replace(defaultSnippet, "127.0.0.1:8053", "127.0.0.1:0", 1))
	host, port, _ := net.SplitHostPort(addr)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"demo.gatehouse.test", "A", "+short"}, []string{"127.0.0.1"}},
		{[]string{"www.gatehouse.test", "AAAA", "+short", "+tcp"}, []string{"demo.gatehouse.test.", "::1"}},
		{[]string{"nope.gatehouse.test", "A", "+noall", "+comments"}, []string{"status: NXDOMAIN", "flags: qr aa;"}},
		{[]string{"example.com", "A", "+noall", "+comments"}, []string{"status: REFUSED"}},
	} {
		args := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1", "+norecurse"}, tc.args...)
		out, err := exec.Command(dig, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("dig %v: %v\n%s", args, err, out)
		}
		for _, w := range tc.want {
			if !strings.Contains(string(out), w) {
				t.Errorf("dig %v: %q not in\n%s", tc.args, w, out)
			}
		}
	}
}

// The UDP loop reads each datagram's source from the raw socket address:
// IPv4 and IPv6 sockets both answer, and the firewall hook sees the real
// source, port included.
func TestUDPSources(t *testing.T) {
	for _, listen := range []string{"127.0.0.1:0", "[::1]:0"} {
		var mu sync.Mutex
		var seen []netip.AddrPort
		s := New([]string{listen})
		s.Logger = slog.New(slog.DiscardHandler)
		s.Allow = func(src netip.AddrPort, network string) bool {
			mu.Lock()
			seen = append(seen, src)
			mu.Unlock()
			return true
		}
		if err := s.Update(compile(t, testZones)); err != nil {
			t.Fatal(err)
		}
		if err := s.Start(); err != nil {
			if strings.Contains(listen, "::1") {
				t.Logf("no IPv6 loopback here: %v", err)
				continue
			}
			t.Fatal(err)
		}
		defer s.Close()
		conn, err := net.Dial("udp", s.Addrs[0])
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		for range 3 {
			r, _, err := c.ExchangeWithConn(query("example.org.", dns.TypeA), &dns.Conn{Conn: conn})
			if err != nil {
				t.Fatalf("%s: %v", listen, err)
			}
			if got := rrs(r.Answer); !slices.Equal(got, []string{"example.org. 600 IN A 192.0.2.1"}) {
				t.Fatalf("%s: %v", listen, got)
			}
		}
		want := addrPortOf(t, conn.LocalAddr())
		mu.Lock()
		for _, src := range seen {
			if src != want {
				t.Errorf("%s: the hook saw %v, the client is %v", listen, src, want)
			}
		}
		mu.Unlock()
	}
}

func addrPortOf(t *testing.T, a net.Addr) netip.AddrPort {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap
}
