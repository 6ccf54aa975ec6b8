package dnsserver

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/miekg/dns"

	"gatehouse/internal/atomicfile"
)

// Serials decides the serial each zone is served with, from the last one
// served and a digest of the records served with it, so that the serial
// moves when, and only when, the records do, and never goes back:
//
//   - the same records keep the serial last served (a serial gatehouse
//     made anew at a reload, or an own serial at or below it, is not
//     used; an own serial above it is);
//   - other records get the zone's own serial when it is above the last
//     one served, else one more than that.
//
// A secondary transfers a zone only when its serial rises: this is what
// makes a DNS-01 record that comes and goes reach it, a reload that
// changes nothing cost it nothing, and a restart not hide later changes
// behind a serial it already holds. Kept in a file, it holds across
// restarts; shared, across the DNS servers of one process.
type Serials struct {
	mu    sync.Mutex
	path  string // "" keeps them in memory only
	last  map[string]servedSerial
	dirty bool // the file is behind last: its last write failed
}

type servedSerial struct {
	Serial uint32 `json:"serial"`
	Digest string `json:"digest"` // of the records, the SOA's serial left out
}

// NewSerials returns serials kept in path (none yet), or in memory when
// path is "". Load fills them from the file.
func NewSerials(path string) *Serials {
	return &Serials{path: path, last: map[string]servedSerial{}}
}

// Load reads the serials kept by an earlier process.
func (s *Serials) Load(data []byte) error {
	m, err := decodeSerials(data)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = m
	return nil
}

// next is the serial to serve the zone at apex with, given its own serial,
// the digest of its records and whether gatehouse made its SOA.
func (s *Serials) next(apex string, own uint32, digest [sha256.Size]byte, made bool) uint32 {
	s.mu.Lock()
	kept, ok := s.last[apex]
	s.mu.Unlock()
	switch {
	case !ok:
		return own
	case kept.Digest == hex.EncodeToString(digest[:]):
		if made || !serialLess(kept.Serial, own) {
			return kept.Serial
		}
		return own
	case serialLess(kept.Serial, own):
		return own
	default:
		return kept.Serial + 1
	}
}

// served records what each zone is served with now, and writes the file
// when something changed.
func (s *Serials) served(zones map[string]servedSerial) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for apex, z := range zones {
		if s.last[apex] != z {
			s.last[apex] = z
			s.dirty = true
		}
	}
	if !s.dirty || s.path == "" {
		return nil
	}
	data, _ := json.MarshalIndent(s.last, "", "  ") // cannot fail: strings and numbers
	err := os.MkdirAll(filepath.Dir(s.path), 0o700)
	if err == nil {
		err = atomicfile.Write(s.path, append(data, '\n'), 0o600)
	}
	s.dirty = err != nil // tried again at the next change of zones
	return err
}

// decodeSerials reads a serials file:
// {"example.org.": {"serial": 2024010101, "digest": "…"}, …}.
func decodeSerials(data []byte) (map[string]servedSerial, error) {
	var m map[string]servedSerial
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("not a serials file: %w", err)
	}
	if m == nil {
		m = map[string]servedSerial{}
	}
	for apex, z := range m {
		if _, ok := dns.IsDomainName(apex); !ok || !dns.IsFqdn(apex) || dns.CanonicalName(apex) != apex {
			return nil, fmt.Errorf("zone %q is not a lowercase fully qualified name", apex)
		}
		b, err := hex.DecodeString(z.Digest)
		if err != nil || len(b) != sha256.Size {
			return nil, fmt.Errorf("zone %s: digest %q is not a SHA-256 in hex", apex, z.Digest)
		}
		z.Digest = hex.EncodeToString(b) // as next compares it: lowercase
		m[apex] = z
	}
	return m, nil
}

// serialLess is RFC 1982's order: a comes before b.
func serialLess(a, b uint32) bool { return a != b && b-a < 1<<31 }
