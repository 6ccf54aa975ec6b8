package dnsserver

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/miekg/dns"
)

var testSrc = netip.MustParseAddrPort("192.0.2.1:5353")

func packedQuery(name string, qtype uint16, edns bool) []byte {
	m := query(name, qtype)
	if edns {
		m.SetEdns0(1232, false)
	}
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

// FuzzRespond feeds arbitrary packets to the query path over UDP and TCP:
// it must not panic, and every reply must be a well-formed response to
// the query's ID that fits the transport.
func FuzzRespond(f *testing.F) {
	s := New(nil)
	s.Update(compile(f, testZones, "site.example.org"))
	f.Add(packedQuery("example.org.", dns.TypeA, false), false)                                                  // the fast path
	f.Add(packedQuery("WwW.Example.Org.", dns.TypeAAAA, true), false)                                            // mixed case, EDNS, CNAME to NODATA
	f.Add(packedQuery("x.apps.example.org.", dns.TypeA, true), false)                                            // a wildcard
	f.Add(packedQuery("big.example.org.", dns.TypeTXT, false), false)                                            // truncated over UDP
	f.Add(packedQuery("big.example.org.", dns.TypeTXT, true), true)                                              // whole over TCP
	f.Add(packedQuery("example.org.", dns.TypeANY, false), false)                                                // ANY
	f.Add(packedQuery("transfer.test.", dns.TypeAXFR, false), true)                                              // a transfer
	f.Add(packedQuery("nope.example.com.", dns.TypeMX, false), false)                                            // refused
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xC0, 12, 0, 1, 0, 1}, false)                               // a compression pointer in the question
	f.Add([]byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 1, 0, 0, 41, 0x10, 0, 0, 1, 0, 0, 0, 0}, false) // EDNS version 1
	f.Fuzz(func(t *testing.T, q []byte, tcp bool) {
		w := newWorker(s)
		reply := s.answer(w, q, testSrc, !tcp)
		if reply == nil {
			return
		}
		var r dns.Msg
		if err := r.Unpack(reply); err != nil {
			t.Fatalf("reply does not unpack: %v\n% x", err, reply)
		}
		if !r.Response || r.Id != binary.BigEndian.Uint16(q) {
			t.Fatalf("not a response to the query: %v", &r)
		}
		if !tcp && len(reply) > EDNSSize && len(reply) > len(q) {
			t.Fatalf("UDP reply of %d bytes", len(reply))
		}
	})
}

func TestFastPathAllocs(t *testing.T) {
	s := New(nil)
	s.Update(compile(t, testZones))
	w := newWorker(s)
	q := packedQuery("www.example.org.", dns.TypeA, true)
	allocs := testing.AllocsPerRun(100, func() { s.answer(w, q, testSrc, true) })
	if allocs != 0 {
		t.Errorf("%v allocations per query on the packed path", allocs)
	}
}

// The handler benchmarks measure the whole query path without sockets:
// parse, look up, reply. Compare with BenchmarkUDP for the system calls.
func benchRespond(b *testing.B, name string, qtype uint16) {
	s := New(nil)
	s.Update(compile(b, testZones, "site.example.org"))
	w := newWorker(s)
	q := packedQuery(name, qtype, true)
	b.ReportAllocs()
	for b.Loop() {
		if s.answer(w, q, testSrc, true) == nil {
			b.Fatal("no reply")
		}
	}
}

func BenchmarkRespondA(b *testing.B)        { benchRespond(b, "example.org.", dns.TypeA) }
func BenchmarkRespondCNAME(b *testing.B)    { benchRespond(b, "chain.example.org.", dns.TypeA) }
func BenchmarkRespondNODATA(b *testing.B)   { benchRespond(b, "mail.example.org.", dns.TypeAAAA) }
func BenchmarkRespondNXDOMAIN(b *testing.B) { benchRespond(b, "nope.example.org.", dns.TypeA) }
func BenchmarkRespondWildcard(b *testing.B) { benchRespond(b, "x.apps.example.org.", dns.TypeA) }

// BenchmarkUDP is one query and its reply over a loopback socket.
func BenchmarkUDP(b *testing.B) {
	_, addr := start(b, testZones)
	c, err := (&dns.Client{}).Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	q := packedQuery("www.example.org.", dns.TypeA, true)
	buf := make([]byte, 1500)
	b.ReportAllocs()
	for b.Loop() {
		c.Conn.Write(q)
		if _, err := c.Conn.Read(buf); err != nil {
			b.Fatal(err)
		}
	}
}
