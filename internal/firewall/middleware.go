package firewall

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"gatehouse/internal/journey"
)

// Middleware enforces the per-source HTTP request rate (limits
// requests_per_second): a request over it gets 429 with Retry-After and
// counts as a violation towards a ban. A source banned while its
// connection stays open gets 403 and the connection is closed.
//
// The source is the request's client as the journey record names it (set
// from a trusted proxy's forwarded header, when one is configured), else
// the peer of the connection: behind a proxy, limits and bans must fall on
// the clients, not on the proxy all of them share.
func (g *Guard) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := g.policy.Load()
		if !g.checksRequests(p) {
			next.ServeHTTP(w, r)
			return
		}
		src, ok := requestClient(r)
		if !ok || p.exempted(src) {
			next.ServeHTTP(w, r)
			return
		}
		now := time.Now()
		k := sourceKey(src)
		s := g.shardOf(k)
		s.mu.Lock()
		st := g.get(s, k, now, p.limits.RequestsPerSecond > 0)
		banned := isBanned(st, now)
		over := !banned && st != nil && p.limits.RequestsPerSecond > 0 &&
			!limiter(&st.reqRate, p.limits.RequestsPerSecond, p.limits.RequestBurst, now).AllowN(now, 1)
		s.mu.Unlock()
		switch {
		case banned:
			g.sample(TCP, localPort(r), src, Verdict{Action: Deny, Rule: &g.banRule})
			w.Header().Set("Connection", "close")
			http.Error(w, "403 forbidden", http.StatusForbidden)
		case over:
			g.sample(TCP, localPort(r), src, Verdict{Action: Deny, Rule: &g.limitRule[ViolationRequestRate]})
			g.Report(src, ViolationRequestRate)
			w.Header().Set("Retry-After", retryAfter(p.limits.RequestsPerSecond))
			http.Error(w, "429 too many requests", http.StatusTooManyRequests)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// requestClient is the address a request is attributed to.
func requestClient(r *http.Request) (netip.Addr, bool) {
	if rec := journey.From(r.Context()); rec != nil && rec.Client.IsValid() {
		return rec.Client.Unmap(), true
	}
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// retryAfter is the whole seconds until one more request fits a rate of
// perSecond (RFC 9110 §10.2.3 allows only whole seconds).
func retryAfter(perSecond float64) string {
	return strconv.Itoa(int(max(1, math.Ceil(1/perSecond))))
}

func localPort(r *http.Request) uint16 {
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		if ta, ok := a.(*net.TCPAddr); ok {
			return uint16(ta.Port)
		}
	}
	return 0
}

// ChecksRequests reports whether requests must pass the Middleware now: a
// request-rate limit is set or a source is banned. When it is false, a
// server may skip the Middleware.
func (g *Guard) ChecksRequests() bool { return g.checksRequests(g.policy.Load()) }

func (g *Guard) checksRequests(p *Policy) bool {
	return p != nil && (p.limits.RequestsPerSecond > 0 || g.banned.Load() != 0)
}
