package dnsserver

import (
	"maps"
	"slices"
	"sync"

	"gatehouse/internal/zone"
)

// TXTRecords are the run-time TXT records (ACME DNS-01) served beside the
// zones. Share one across servers, as Serials: a server that replaces
// another serves them from its first answer, and a record whose zone is
// gone is kept for when the zone returns. A Server without one has its
// own.
type TXTRecords struct {
	mu      sync.Mutex
	recs    map[uint64]zone.TXT
	last    uint64
	servers map[*Server]bool // serving them: told of every change
}

// NewTXTRecords returns an empty set.
func NewTXTRecords() *TXTRecords {
	return &TXTRecords{recs: map[uint64]zone.TXT{}, servers: map[*Server]bool{}}
}

// list returns the records in the order they were published.
func (t *TXTRecords) list() []zone.TXT {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := slices.Sorted(maps.Keys(t.recs))
	out := make([]zone.TXT, len(ids))
	for i, id := range ids {
		out[i] = t.recs[id]
	}
	return out
}

func (t *TXTRecords) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.recs)
}

func (t *TXTRecords) add(r zone.TXT) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.last++
	t.recs[t.last] = r
	return t.last
}

func (t *TXTRecords) remove(id uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.recs, id)
}

// serve makes s one of the servers told of changes, until it closes.
func (t *TXTRecords) serve(s *Server, on bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if on {
		t.servers[s] = true
	} else {
		delete(t.servers, s)
	}
}

// changed makes every server other than except serve the records as they
// are now.
// No lock of t is held while a server's is taken: a server holds its own
// when it reads t.
func (t *TXTRecords) changed(except *Server) {
	t.mu.Lock()
	servers := slices.Collect(maps.Keys(t.servers))
	t.mu.Unlock()
	for _, s := range servers {
		if s != except {
			s.Resync()
		}
	}
}
