package firewall

import (
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Violation is something a source did that counts towards a ban.
type Violation uint8

const (
	ViolationConnections  Violation = iota // over the open-connections cap
	ViolationConnRate                      // over the new-connections rate
	ViolationRequestRate                   // over the HTTP requests rate
	ViolationTLSHandshake                  // a failed TLS handshake
	ViolationHTTPError                     // a 4xx answer, counted towards floods
	numViolations
)

func (v Violation) String() string {
	return [...]string{"connections", "connection rate", "request rate", "TLS handshake", "HTTP 4xx"}[v]
}

// Ban is a source shut out until a time.
type Ban struct {
	// Source is an IPv4 address (/32) or an IPv6 /64.
	Source netip.Prefix
	Until  time.Time
	// Reason is the violation that tipped the count.
	Reason Violation
}

// Guard enforces Policies on gatehouse's own sockets. It lives across
// reloads (Update swaps the policy) and keeps what must survive them:
// per-source connection counts, rate limiters, violations and bans.
// Set its fields before first use; the zero value is not ready, use NewGuard.
type Guard struct {
	// Logger receives a sampled log of denials (at most a few a second)
	// and every ban. Nil logs nothing.
	Logger *slog.Logger
	// OnBan, when set, is called (outside any lock, on the path that saw
	// the violation) for every new ban, so that a kernel backend can drop
	// the source too.
	OnBan func(Ban)

	policy atomic.Pointer[Policy]
	seed   maphash.Seed
	shards [numShards]shard
	banned atomic.Int64 // active bans, so lookups are skipped when none

	// Denials kept for Status, sampled.
	sampleMu  sync.Mutex
	sampler   *rate.Limiter
	samples   [sampleKeep]Denial
	sampleN   int
	denied    atomic.Uint64
	sampled   atomic.Uint64
	limitHits [numViolations]atomic.Uint64
	bansTotal atomic.Uint64
	// Denials by bans and by each limit, for the metrics.
	banDenied   atomic.Uint64
	limitDenied [3]atomic.Uint64

	// Verdicts on bans and limits name these rules.
	banRule   Rule
	limitRule [3]Rule
}

const (
	numShards  = 32
	sampleKeep = 64
	// maxSources bounds the state kept per shard; past it, new sources go
	// unlimited rather than evicting the state of sources being limited.
	maxSources = 1 << 14
	sweepEvery = 10 * time.Second
)

type shard struct {
	mu        sync.Mutex
	m         map[netip.Addr]*source
	lastSweep time.Time
}

// source is the state kept for one IPv4 address or IPv6 /64.
type source struct {
	conns       int
	connRate    *rate.Limiter
	reqRate     *rate.Limiter
	violations  []time.Time // ring of the last bans.after violations
	vnext       int
	bannedUntil time.Time
	banReason   Violation
	seen        time.Time
}

// NewGuard returns a Guard enforcing p (which may be nil: allow all until
// the first Update).
func NewGuard(p *Policy) *Guard {
	g := &Guard{seed: maphash.MakeSeed(), sampler: rate.NewLimiter(5, 20)}
	for i := range g.shards {
		g.shards[i].m = map[netip.Addr]*source{}
	}
	g.banRule = Rule{Kind: KindBan, Action: Deny, Proto: Any, idx: -1}
	for i, what := range []string{"connections", "connection rate", "request rate"} {
		g.limitRule[i] = Rule{Kind: KindLimit, Action: Deny, Proto: Any, Description: what, idx: -1}
	}
	if p != nil {
		g.policy.Store(p)
	}
	return g
}

// Update makes p the policy for every check from now on. Limiter and ban
// state carries over; limiters pick up new rates at their next use.
func (g *Guard) Update(p *Policy) { g.policy.Store(p) }

// Policy returns the policy in force (nil before the first).
func (g *Guard) Policy() *Policy { return g.policy.Load() }

// sourceKey groups a source as limits and bans see it: an IPv4 address or
// an IPv6 /64, since one IPv6 host usually holds a whole /64.
func sourceKey(a netip.Addr) netip.Addr {
	a = a.Unmap()
	if a.Is6() {
		pf, _ := a.Prefix(64)
		return pf.Addr()
	}
	return a
}

func (g *Guard) shardOf(k netip.Addr) *shard {
	b := k.As16()
	return &g.shards[maphash.Bytes(g.seed, b[:])%numShards]
}

// get returns k's state, creating it when create is set; the shard must be
// locked. It sweeps idle sources now and then.
func (g *Guard) get(s *shard, k netip.Addr, now time.Time, create bool) *source {
	if now.Sub(s.lastSweep) > sweepEvery {
		s.lastSweep = now
		for a, src := range s.m {
			if src.idle(now) {
				delete(s.m, a)
			}
		}
	}
	src := s.m[k]
	if src == nil && create && len(s.m) < maxSources {
		src = &source{}
		s.m[k] = src
	}
	if src != nil {
		src.seen = now
	}
	return src
}

// idle reports whether forgetting the source loses nothing: no open
// connection, no ban, and limiters long refilled.
func (s *source) idle(now time.Time) bool {
	if s.conns > 0 || now.Before(s.bannedUntil) {
		return false
	}
	if n := len(s.violations); n > 0 {
		last := s.violations[(s.vnext+n-1)%n]
		if now.Sub(last) < time.Hour {
			return false
		}
	}
	return now.Sub(s.seen) > time.Minute
}

func isBanned(src *source, now time.Time) bool {
	return src != nil && now.Before(src.bannedUntil)
}

// limiter returns l set to r/burst, made when missing.
func limiter(l **rate.Limiter, r float64, burst int, now time.Time) *rate.Limiter {
	if burst <= 0 {
		burst = max(1, int(2*r))
	}
	if *l == nil {
		*l = rate.NewLimiter(rate.Limit(r), burst)
		return *l
	}
	if (*l).Limit() != rate.Limit(r) {
		(*l).SetLimitAt(now, rate.Limit(r))
	}
	if (*l).Burst() != burst {
		(*l).SetBurstAt(now, burst)
	}
	return *l
}

// admitConn decides a new TCP connection to port from src. When allowed
// and tracked, release must be called once the connection closes.
func (g *Guard) admitConn(port uint16, src netip.Addr) (v Verdict, tracked bool) {
	p := g.policy.Load()
	if p == nil {
		return Verdict{Action: Allow}, false
	}
	// A rule's counters count what it decided: a connection its allow
	// let through, not one a ban or a limit shut out after it.
	v = p.Check(TCP, port, src)
	if !v.Allowed() {
		p.count(v)
		g.sample(TCP, port, src, v)
		return v, false
	}
	lim := &p.limits
	limited := lim.Connections > 0 || lim.ConnectionsPerSecond > 0
	if !limited && g.banned.Load() == 0 || p.exempted(src) {
		p.count(v)
		return v, false
	}
	now := time.Now()
	k := sourceKey(src)
	s := g.shardOf(k)
	s.mu.Lock()
	st := g.get(s, k, now, limited)
	var hit Violation
	switch {
	case st == nil:
		s.mu.Unlock()
		p.count(v)
		return v, false
	case isBanned(st, now):
		s.mu.Unlock()
		v = Verdict{Action: Deny, Rule: &g.banRule}
		g.sample(TCP, port, src, v)
		return v, false
	case lim.Connections > 0 && st.conns >= lim.Connections:
		hit = ViolationConnections
	case lim.ConnectionsPerSecond > 0 && !limiter(&st.connRate, lim.ConnectionsPerSecond, lim.ConnectionBurst, now).AllowN(now, 1):
		hit = ViolationConnRate
	default:
		st.conns++
		s.mu.Unlock()
		p.count(v)
		return v, true
	}
	s.mu.Unlock()
	v = Verdict{Action: Deny, Rule: &g.limitRule[hit]}
	g.sample(TCP, port, src, v)
	g.Report(src, hit)
	return v, false
}

// release ends a tracked connection from src.
func (g *Guard) release(src netip.Addr) {
	k := sourceKey(src)
	s := g.shardOf(k)
	s.mu.Lock()
	if st := s.m[k]; st != nil && st.conns > 0 {
		st.conns--
	}
	s.mu.Unlock()
}

// AllowPacket decides a datagram (network "udp") or a connection (network
// "tcp") to local port from src, for servers that are not behind Listener,
// such as the DNS server. Denied traffic is counted and sampled; UDP cannot
// be reset from user space, so reject drops it too.
func (g *Guard) AllowPacket(network string, local uint16, src netip.AddrPort) bool {
	p := g.policy.Load()
	if p == nil {
		return true
	}
	proto := UDP
	if network == "tcp" || network == "tcp4" || network == "tcp6" {
		proto = TCP
	}
	a := src.Addr()
	v := p.Check(proto, local, a)
	if v.Allowed() && g.banned.Load() > 0 && !p.exempted(a) && g.isBannedAddr(a) {
		v = Verdict{Action: Deny, Rule: &g.banRule}
	}
	p.count(v)
	if !v.Allowed() {
		g.sample(proto, local, a, v)
	}
	return v.Allowed()
}

func (g *Guard) isBannedAddr(a netip.Addr) bool {
	k := sourceKey(a)
	s := g.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	return isBanned(s.m[k], time.Now())
}

// Report records a violation by src. When bans are on and src broke the
// rules bans.after times within bans.within, it is banned for bans.for.
// Exempt sources are never banned.
func (g *Guard) Report(src netip.Addr, kind Violation) {
	if kind < numViolations {
		g.limitHits[kind].Add(1)
	}
	p := g.policy.Load()
	if p == nil || p.bans.After <= 0 || p.exempted(src.Unmap()) {
		return
	}
	now := time.Now()
	k := sourceKey(src)
	s := g.shardOf(k)
	s.mu.Lock()
	st := g.get(s, k, now, true)
	if st == nil || isBanned(st, now) {
		s.mu.Unlock()
		return
	}
	n := p.bans.After
	if cap(st.violations) != n {
		st.violations, st.vnext = make([]time.Time, 0, n), 0
	}
	if len(st.violations) < n {
		st.violations = append(st.violations, now)
	} else {
		st.violations[st.vnext] = now
		st.vnext = (st.vnext + 1) % n
	}
	// The ring holds the last n violations; the oldest is at vnext.
	if len(st.violations) < n || now.Sub(st.violations[st.vnext%n]) > p.bans.BanWindow() {
		s.mu.Unlock()
		return
	}
	st.bannedUntil, st.banReason = now.Add(p.bans.BanTime()), kind
	st.violations, st.vnext = st.violations[:0], 0
	s.mu.Unlock()

	g.bansTotal.Add(1)
	b := Ban{Source: banPrefix(k), Until: now.Add(p.bans.BanTime()), Reason: kind}
	g.countBan(b.Until)
	if g.Logger != nil {
		g.Logger.Warn("firewall: source banned", "source", b.Source.String(), "until", b.Until.Format(time.RFC3339), "reason", kind.String(), "violations", n)
	}
	if g.OnBan != nil {
		g.OnBan(b)
	}
}

// Bans returns the bans in force, for a kernel backend that replaces its
// table and for the admin view.
func (g *Guard) Bans() []Ban {
	if g.banned.Load() == 0 {
		return nil
	}
	now := time.Now()
	var out []Ban
	for i := range g.shards {
		s := &g.shards[i]
		s.mu.Lock()
		for k, st := range s.m {
			if isBanned(st, now) {
				out = append(out, Ban{Source: banPrefix(k), Until: st.bannedUntil, Reason: st.banReason})
			}
		}
		s.mu.Unlock()
	}
	return out
}

// countBan counts a ban in force until until. The count only tells lookups
// whether any ban may be in force, so it may run high (a ban lifted early,
// or lengthened) but never low.
func (g *Guard) countBan(until time.Time) {
	g.banned.Add(1)
	time.AfterFunc(time.Until(until), func() { g.banned.Add(-1) })
}

// banPrefix is the prefix a ban on the source key k covers.
func banPrefix(k netip.Addr) netip.Prefix {
	if k.Is6() {
		return netip.PrefixFrom(k, 64)
	}
	return netip.PrefixFrom(k, 32)
}

// Restore puts back bans kept from an earlier process (see EncodeBans),
// those not yet over, and returns how many it put back. A source already
// banned keeps the later of the two ends.
func (g *Guard) Restore(bans []Ban) int {
	now := time.Now()
	n := 0
	for _, b := range bans {
		if !b.Until.After(now) {
			continue
		}
		// A time read from a file has no monotonic reading: the end is
		// made again from now, so that a wall clock stepping back cannot
		// make countBan's timer fire before the ban ends.
		until := now.Add(b.Until.Sub(now))
		k := sourceKey(b.Source.Addr())
		s := g.shardOf(k)
		s.mu.Lock()
		st := g.get(s, k, now, true)
		later := st != nil && until.After(st.bannedUntil)
		if later {
			st.bannedUntil, st.banReason = until, b.Reason
		}
		s.mu.Unlock()
		if later {
			g.countBan(until)
			n++
		}
	}
	return n
}

// Unban lifts a ban on the source holding a (for the admin API), and
// returns the prefix the ban covered, if there was one.
func (g *Guard) Unban(a netip.Addr) (netip.Prefix, bool) {
	k := sourceKey(a)
	s := g.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.m[k]
	if !isBanned(st, time.Now()) {
		return netip.Prefix{}, false
	}
	st.bannedUntil = time.Time{}
	return banPrefix(k), true
}
