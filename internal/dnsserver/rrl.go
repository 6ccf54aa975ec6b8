package dnsserver

import (
	"net/netip"
	"sync"

	"golang.org/x/time/rate"

	"gatehouse/internal/config"
)

// Response rate limiting. A forged-source flood makes an authoritative
// server send its answers to a victim; limiting the answers per source
// network caps what reaches the victim. Limited answers "slip" out as
// empty truncated replies (no larger than the query, so nothing is
// amplified): a real resolver behind that network retries over TCP, which
// a forged source cannot, and still gets its answer. With the default slip
// of 1 no legitimate query is ever left unanswered; a larger slip or -1
// trades that for less reflected traffic.

// RateLimit configures response rate limiting; the zero value is the
// default.
type RateLimit struct {
	// Responses per second per network: default 5000; negative is off.
	Responses int
	// Burst answers at once (default 2×Responses).
	Burst int
	// Slip: every Nth limited answer is sent truncated (default 1: all of
	// them); negative drops them all.
	Slip int
	// IPv4Prefix and IPv6Prefix size a network (default 24 and 56).
	IPv4Prefix, IPv6Prefix int
	// LimitLoopback limits loopback sources too; they cannot be forged
	// from outside the machine, so they are exempt by default.
	LimitLoopback bool
}

// RateLimitFrom is the rate limit a config asks for.
func RateLimitFrom(c config.DNSRateLimit) RateLimit {
	return RateLimit{Responses: c.Responses, Burst: c.Burst, Slip: c.Slip, IPv4Prefix: c.IPv4Prefix, IPv6Prefix: c.IPv6Prefix}
}

func (r RateLimit) withDefaults() RateLimit {
	if r.Responses == 0 {
		r.Responses = 5000
	}
	if r.Burst <= 0 {
		r.Burst = 2 * r.Responses
	}
	if r.Slip == 0 {
		r.Slip = 1
	}
	if r.IPv4Prefix <= 0 || r.IPv4Prefix > 32 {
		r.IPv4Prefix = 24
	}
	if r.IPv6Prefix <= 0 || r.IPv6Prefix > 128 {
		r.IPv6Prefix = 56
	}
	return r
}

// SetRateLimit replaces the rate limit; counts start afresh.
func (s *Server) SetRateLimit(r RateLimit) {
	s.rrl.Store(&limiter{cfg: r.withDefaults(), nets: map[netip.Prefix]*bucket{}})
}

type verdict int

const (
	verdictSend verdict = iota
	verdictSlip
	verdictDrop
)

// maxNets bounds the networks tracked; a flood from many networks sweeps
// the idle ones away.
const maxNets = 1 << 16

type limiter struct {
	cfg  RateLimit
	mu   sync.Mutex
	nets map[netip.Prefix]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	over int
}

func (l *limiter) check(a netip.Addr) verdict {
	if l.cfg.Responses < 0 {
		return verdictSend
	}
	a = a.Unmap()
	bits := l.cfg.IPv4Prefix
	if a.Is6() {
		bits = l.cfg.IPv6Prefix
	}
	p, _ := a.Prefix(bits)
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.nets[p]
	if b == nil {
		if len(l.nets) >= maxNets {
			l.sweep()
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.cfg.Responses), l.cfg.Burst)}
		l.nets[p] = b
	}
	if b.lim.Allow() {
		return verdictSend
	}
	b.over++
	if l.cfg.Slip > 0 && b.over%l.cfg.Slip == 0 {
		return verdictSlip
	}
	return verdictDrop
}

// sweep forgets networks whose bucket is full again (nothing to remember),
// or all of them when every one is busy.
func (l *limiter) sweep() {
	for p, b := range l.nets {
		if b.lim.Tokens() >= float64(l.cfg.Burst) {
			delete(l.nets, p)
		}
	}
	if len(l.nets) >= maxNets {
		clear(l.nets)
	}
}
