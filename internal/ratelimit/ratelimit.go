// Package ratelimit owns per-client request limits on a route: a token
// bucket (golang.org/x/time/rate) per client address, answered with 429
// and Retry-After when empty. It protects what is behind a route, such as
// a third-party API key's quota, from one client using it all.
//
// Memory is bounded: at most Max clients are remembered. A client idle
// long enough for its bucket to refill is forgotten without loss (a new
// bucket starts full too); when the table is full of active clients, one
// of them is forgotten at random, which can only favour that client.
package ratelimit

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"gatehouse/internal/journey"
)

// DefaultMax is how many clients a Limiter remembers by default.
const DefaultMax = 10000

// Limiter limits each client to Requests per Per with bursts of Burst. It
// is per config generation: a reload starts new buckets.
type Limiter struct {
	limit  rate.Limit
	burst  int
	max    int
	refill time.Duration // time for an empty bucket to fill

	mu        sync.Mutex
	clients   map[netip.Prefix]*client
	lastSweep time.Time
}

type client struct {
	lim  *rate.Limiter
	seen time.Time
}

// New returns a Limiter of requests per per (1s when 0) with bursts of
// burst (requests when 0), remembering at most max clients (DefaultMax
// when 0).
func New(requests int, per time.Duration, burst, max int) *Limiter {
	if per <= 0 {
		per = time.Second
	}
	if requests < 1 {
		requests = 1
	}
	if burst < 1 {
		burst = requests
	}
	if max < 1 {
		max = DefaultMax
	}
	l := rate.Limit(float64(requests) / per.Seconds())
	return &Limiter{
		limit: l, burst: burst, max: max,
		refill:  time.Duration(float64(burst) / float64(l) * float64(time.Second)),
		clients: make(map[netip.Prefix]*client),
	}
}

// Key is the bucket a client address falls in: the address itself for
// IPv4, its /64 for IPv6, since one host is handed a whole /64.
func Key(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	bits := 32
	if a.Is6() {
		bits = 64
	}
	p, _ := a.Prefix(bits)
	return p
}

// Reserve takes one token for the client at now, and returns 0 when the
// request may go or how long until it could.
func (l *Limiter) Reserve(a netip.Addr, now time.Time) time.Duration {
	key := Key(a)
	l.mu.Lock()
	c := l.clients[key]
	if c == nil {
		if len(l.clients) >= l.max {
			l.evict(now)
		}
		c = &client{lim: rate.NewLimiter(l.limit, l.burst)}
		l.clients[key] = c
	}
	c.seen = now
	l.mu.Unlock()
	// rate.Limiter has its own lock; ours only guards the table.
	r := c.lim.ReserveN(now, 1)
	if !r.OK() {
		return time.Duration(math.MaxInt64)
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now) // a refused request spends nothing
		return d
	}
	return 0
}

// evict makes room in a full table: first everyone idle long enough to be
// back at a full bucket (at most once a second, as it walks the table),
// then, if that freed nothing, one client at random. Called with mu held.
func (l *Limiter) evict(now time.Time) {
	if now.Sub(l.lastSweep) >= time.Second {
		l.lastSweep = now
		for k, c := range l.clients {
			if now.Sub(c.seen) >= l.refill {
				delete(l.clients, k)
			}
		}
	}
	if len(l.clients) < l.max {
		return
	}
	for k := range l.clients {
		delete(l.clients, k)
		return
	}
}

// Len is how many clients are remembered.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}

// Wrap returns next behind the limit. The client is the one the journey
// attributes the request to (after trusted proxies), else the TCP peer.
func (l *Limiter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := l.Reserve(clientOf(r), time.Now())
		if d == 0 {
			next.ServeHTTP(w, r)
			return
		}
		if rec := journey.From(r.Context()); rec != nil {
			rec.Handler = "rate-limit" // refused here; the handler never ran
		}
		secs := int64(math.Ceil(d.Seconds()))
		if d == time.Duration(math.MaxInt64) {
			secs = 3600
		}
		h := w.Header()
		h["Retry-After"] = []string{strconv.FormatInt(secs, 10)}
		h["Content-Type"] = []string{"text/plain; charset=utf-8"}
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte("429 Too Many Requests\n"))
	})
}

func clientOf(r *http.Request) netip.Addr {
	if rec := journey.From(r.Context()); rec != nil && rec.Client.IsValid() {
		return rec.Client
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	a, _ := netip.ParseAddr(host)
	return a
}
