package dnsserver

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/miekg/dns"

	"gatehouse/internal/atomicfile"
)

// Serials remembers the last serial served for each zone, across the
// servers of one process and, kept in a file, across restarts. A served
// serial never goes back: a secondary holding a higher one ignores every
// change until the zone's own serial passes it. That happens when a DNS-01
// record came and went (each raised the serial) and gatehouse restarts, or
// when a reload moves DNS to new addresses (a new server).
type Serials struct {
	mu   sync.Mutex
	path string // "" keeps them in memory only
	last map[string]uint32
}

// NewSerials returns serials kept in path (none yet), or in memory when
// path is "". Load fills them from the file.
func NewSerials(path string) *Serials {
	return &Serials{path: path, last: map[string]uint32{}}
}

// Load reads the serials kept by an earlier process.
func (s *Serials) Load(data []byte) error {
	m, err := DecodeSerials(data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = m
	return nil
}

// Last returns the last serial served for the zone at apex.
func (s *Serials) Last(apex string) (uint32, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, ok := s.last[apex]
	return n, ok
}

// served records the serials of the zones now served and writes the file
// when one changed.
func (s *Serials) served(zones map[string]uint32) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := false
	for apex, n := range zones {
		if old, ok := s.last[apex]; !ok || old != n {
			s.last[apex] = n
			changed = true
		}
	}
	if !changed || s.path == "" {
		return nil
	}
	data, _ := json.MarshalIndent(s.last, "", "  ") // cannot fail: a map of strings to numbers
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return err
	}
	return atomicfile.Write(s.path, append(data, '\n'), 0o600)
}

// DecodeSerials reads a serials file: {"example.org.": 2024010101, …}.
func DecodeSerials(data []byte) (map[string]uint32, error) {
	var m map[string]uint32
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a serials file: %w", err)
	}
	if m == nil {
		m = map[string]uint32{}
	}
	for apex := range m {
		if _, ok := dns.IsDomainName(apex); !ok || !dns.IsFqdn(apex) || dns.CanonicalName(apex) != apex {
			return nil, fmt.Errorf("zone %q is not a lowercase fully qualified name", apex)
		}
	}
	return m, nil
}

// serialLess is RFC 1982's order: a comes before b.
func serialLess(a, b uint32) bool { return a != b && b-a < 1<<31 }
