package dnsserver

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

const ownSerial = "dns:\n  zones:\n    example.org:\n      records:\n        - {name: \"@\", type: SOA, value: \"ns1 hostmaster 2024010101 3600 600 604800 300\"}\n        - {name: \"@\", type: NS, value: ns1}\n        - {name: ns1, type: A, value: 192.0.2.53}\n"

func soaSerial(t *testing.T, addr string) uint32 {
	t.Helper()
	r := exchange(t, "udp", addr, query("example.org.", dns.TypeSOA))
	if len(r.Answer) != 1 {
		t.Fatalf("no SOA: %v", r)
	}
	return r.Answer[0].(*dns.SOA).Serial
}

// TestSerialsNeverGoBack: a zone whose serial a DNS-01 record raised keeps
// a higher serial on the next server (a reload to new addresses) and after
// a restart, though its own serial did not move.
func TestSerialsNeverGoBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dns", "serials.json")
	kept := NewSerials(path)
	s1, addr1 := start(t, ownSerial, func(s *Server) { s.Serials = kept })
	if got := soaSerial(t, addr1); got != 2024010101 {
		t.Fatalf("the zone's own serial is not served: %d", got)
	}
	remove, err := s1.PublishTXT("_acme-challenge.example.org", "token")
	if err != nil {
		t.Fatal(err)
	}
	remove()
	raised := soaSerial(t, addr1)
	if raised != 2024010103 {
		t.Fatalf("after a record came and went: %d, want 2024010103", raised)
	}
	s1.Close()

	_, addr2 := start(t, ownSerial, func(s *Server) { s.Serials = kept })
	second := soaSerial(t, addr2)
	if !serialLess(raised, second) {
		t.Errorf("a new server went back from %d to %d", raised, second)
	}

	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("serials not kept: %v", err)
	}
	if !strings.Contains(string(data), `"example.org.":`) {
		t.Errorf("serials file: %s", data)
	}
	restarted := NewSerials(path)
	if err := restarted.Load(data); err != nil {
		t.Fatal(err)
	}
	_, addr3 := start(t, ownSerial, func(s *Server) { s.Serials = restarted })
	if third := soaSerial(t, addr3); !serialLess(second, third) && third != second {
		t.Errorf("after a restart the serial went back from %d to %d", second, third)
	}

	// A zone whose serial was never raised keeps its own.
	plain := NewSerials("")
	_, addr4 := start(t, ownSerial, func(s *Server) { s.Serials = plain })
	_, addr5 := start(t, ownSerial, func(s *Server) { s.Serials = plain })
	if a, b := soaSerial(t, addr4), soaSerial(t, addr5); a != 2024010101 || b != 2024010101 {
		t.Errorf("an unchanged zone moved: %d, %d", a, b)
	}
}

func TestDecodeSerials(t *testing.T) {
	for _, bad := range []string{`[`, `{"example.org": 1}`, `{"Example.org.": 1}`, `{"a..b.": 1}`, `{"example.org.": -1}`} {
		if _, err := DecodeSerials([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if m, err := DecodeSerials([]byte(`null`)); err != nil || m == nil {
		t.Errorf("null: %v %v", m, err)
	}
}

func FuzzDecodeSerials(f *testing.F) {
	f.Add([]byte(`{"example.org.": 2024010101, "gatehouse.test.": 1796607945}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeSerials(data)
		if err != nil {
			return
		}
		s := NewSerials("")
		if err := s.Load(data); err != nil {
			t.Fatalf("decoded, then refused: %v", err)
		}
		for apex, n := range m {
			if got, ok := s.Last(apex); !ok || got != n {
				t.Fatalf("%s: %d %v, want %d", apex, got, ok, n)
			}
		}
	})
}
