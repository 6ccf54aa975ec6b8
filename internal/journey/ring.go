package journey

import "sync"

// Ring keeps the last N records, for the admin API. Its memory is bounded
// by N: records are copied into fixed slots, oldest overwritten.
type Ring struct {
	mu   sync.Mutex
	buf  []Record
	next int
	full bool
}

// NewRing returns a ring of n records; n <= 0 returns nil, which keeps
// nothing.
func NewRing(n int) *Ring {
	if n <= 0 {
		return nil
	}
	return &Ring{buf: make([]Record, n)}
}

// Len is the ring's size; 0 for nil.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.buf)
}

// Add copies rec into the ring.
func (r *Ring) Add(rec *Record) {
	if r == nil {
		return
	}
	r.mu.Lock()
	r.buf[r.next] = *rec
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Views returns the kept records, newest first.
func (r *Ring) Views() []View {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	out := make([]View, 0, n)
	for i := 1; i <= n; i++ {
		out = append(out, r.buf[(r.next-i+len(r.buf))%len(r.buf)].View())
	}
	return out
}
