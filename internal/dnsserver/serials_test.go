package dnsserver

import (
	"encoding/hex"
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
// that serial on the next server (a reload to new addresses) and after a
// restart, though its own serial did not move; new records raise it.
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
	if second := soaSerial(t, addr2); second != raised {
		t.Errorf("a new server with the same records moved the serial from %d to %d", raised, second)
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
	if third := soaSerial(t, addr3); third != raised {
		t.Errorf("a restart with the same records moved the serial from %d to %d", raised, third)
	}
	// New records under the zone's own, now lower, serial: one above.
	changed := ownSerial + "        - {name: www, type: A, value: 192.0.2.80}\n"
	s4, addr4 := start(t, changed, func(s *Server) { s.Serials = restarted })
	if got := soaSerial(t, addr4); got != raised+1 {
		t.Errorf("new records served with %d, want %d", got, raised+1)
	}
	for range 3 { // reloads that change nothing move nothing
		if err := s4.Update(compile(t, changed)); err != nil {
			t.Fatal(err)
		}
	}
	if got := soaSerial(t, addr4); got != raised+1 {
		t.Errorf("after reloads with the same records: %d, want %d", got, raised+1)
	}
	// An own serial above the last served is served as written.
	ahead := strings.Replace(changed, "2024010101", "2024020101", 1)
	if err := s4.Update(compile(t, ahead)); err != nil {
		t.Fatal(err)
	}
	if got := soaSerial(t, addr4); got != 2024020101 {
		t.Errorf("an own serial ahead served as %d", got)
	}

	// A zone whose serial was never raised keeps its own; one whose SOA
	// gatehouse makes keeps the first serial made while its records stay.
	plain := NewSerials("")
	_, addr5 := start(t, ownSerial, func(s *Server) { s.Serials = plain })
	_, addr6 := start(t, ownSerial, func(s *Server) { s.Serials = plain })
	if a, b := soaSerial(t, addr5), soaSerial(t, addr6); a != 2024010101 || b != 2024010101 {
		t.Errorf("an unchanged zone moved: %d, %d", a, b)
	}
	madeSOA := "dns:\n  zones:\n    example.org:\n      records:\n        - {name: www, type: A, value: 192.0.2.1}\n"
	m, addr7 := start(t, madeSOA, func(s *Server) { s.Serials = plain })
	first := soaSerial(t, addr7)
	if err := m.Update(compile(t, madeSOA)); err != nil {
		t.Fatal(err)
	}
	if got := soaSerial(t, addr7); got != first {
		t.Errorf("a reload with the same records moved a made serial from %d to %d", first, got)
	}
}

func TestDecodeSerials(t *testing.T) {
	digest := `"` + strings.Repeat("ab", 32) + `"`
	for _, bad := range []string{`[`, `{"example.org": {"serial": 1, "digest": ` + digest + `}}`, `{"Example.org.": {"serial": 1, "digest": ` + digest + `}}`,
		`{"a..b.": {"serial": 1, "digest": ` + digest + `}}`, `{"example.org.": {"serial": -1, "digest": ` + digest + `}}`,
		`{"example.org.": {"serial": 1, "digest": "abc"}}`, `{"example.org.": 1}`} {
		if _, err := decodeSerials([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
	if m, err := decodeSerials([]byte(`null`)); err != nil || m == nil {
		t.Errorf("null: %v %v", m, err)
	}
}

func FuzzDecodeSerials(f *testing.F) {
	f.Add([]byte(`{"example.org.": {"serial": 2024010101, "digest": "` + strings.Repeat("0f", 32) + `"}}`))
	f.Add([]byte(`{}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeSerials(data)
		if err != nil {
			return
		}
		s := NewSerials("")
		if err := s.Load(data); err != nil {
			t.Fatalf("decoded, then refused: %v", err)
		}
		// What is kept decides as it says: the same digest keeps the serial.
		for apex, z := range m {
			var d [32]byte
			hex.Decode(d[:], []byte(z.Digest))
			if got := s.next(apex, z.Serial-1, d, true); got != z.Serial {
				t.Fatalf("%s: same records at %d served with %d", apex, z.Serial, got)
			}
		}
	})
}

// TestSerialsWriteRetried: a write that failed is made at the next call,
// even when nothing changed since.
func TestSerialsWriteRetried(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "dns")
	os.WriteFile(blocker, nil, 0o600) // a file where the folder should be
	s := NewSerials(filepath.Join(blocker, "serials.json"))
	zones := map[string]servedSerial{"example.org.": {Serial: 7, Digest: strings.Repeat("ab", 32)}}
	if err := s.served(zones); err == nil {
		t.Fatal("the write under a file did not fail")
	}
	os.Remove(blocker)
	if err := s.served(zones); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(blocker, "serials.json"))
	if err != nil || !strings.Contains(string(data), `"serial": 7`) {
		t.Errorf("not written once possible: %v\n%s", err, data)
	}
}

// TestResyncAfterReplace: a server that replaces another (a reload to new
// addresses) serves above what the other served in between.
func TestResyncAfterReplace(t *testing.T) {
	kept := NewSerials("")
	old, _ := start(t, ownSerial, func(s *Server) { s.Serials = kept })
	next, addr := start(t, ownSerial, func(s *Server) { s.Serials = kept })
	remove, err := old.PublishTXT("_acme-challenge.example.org", "token") // served at …02
	if err != nil {
		t.Fatal(err)
	}
	defer remove()
	old.Close()
	if got := soaSerial(t, addr); got != 2024010101 {
		t.Fatalf("before the resync: %d", got)
	}
	next.Resync()
	if got := soaSerial(t, addr); got != 2024010103 {
		t.Errorf("after the resync: %d, want 2024010103 (above the 2024010102 the old server served)", got)
	}
}
