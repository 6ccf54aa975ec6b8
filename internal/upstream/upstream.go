// Package upstream owns where a proxied request goes: a Pool of upstream
// hosts behind one route, the policy that picks one, the connection pools
// (keep-alive, HTTP/1.1, h2c or TLS) and passive health — a host that
// refuses connections is skipped for a while and the request is retried on
// another when that is safe.
package upstream

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"gatehouse/internal/journey"
)

// Options configure a Pool.
type Options struct {
	Policy        string // round_robin, least_conn, first, ip_hash
	DialTimeout   time.Duration
	HeaderTimeout time.Duration
	IdleTimeout   time.Duration
	MaxIdle       int
	// CAFile verifies https:// upstreams instead of the system roots.
	CAFile string
	// Transports, when set, shares connection pools with other pools.
	Transports *Transports
	// Resolver looks up hosts named by a name, for every dial; nil is the
	// system's.
	Resolver *net.Resolver
}

// Host is one upstream.
type Host struct {
	URL    *url.URL // as configured
	name   string   // URL as a string, made once
	scheme string   // http or https on the wire (h2c is http)
	prefix string   // path prefix from the URL, without trailing slash
	rt     http.RoundTripper
	// direct, for a plain HTTP/1.1 host, sends the requests without a
	// body (see direct); nil for h2c and TLS hosts.
	direct *direct
	// literal is the address when the URL names an IP and port: such a
	// host can be reached without a resolver.
	literal  netip.AddrPort
	inflight atomic.Int64
	downTill atomic.Int64 // unix nanoseconds; 0 when healthy

	// A host named by a name: what it resolved to (see DialAddr), and
	// which of the addresses to dial first.
	resolver  *net.Resolver
	resolved  atomic.Pointer[resolution]
	resolving atomic.Bool
	first     atomic.Uint32
}

// resolution is what a host's name resolved to, and when.
type resolution struct {
	addrs []netip.AddrPort
	at    time.Time
}

// resolveEvery is how long a name's addresses are used before they are
// looked up again (in the background: requests keep the old ones until
// the answer comes).
const resolveEvery = 30 * time.Second

// Addr is host:port as dialled.
func (h *Host) Addr() string { return h.URL.Host }

// Pool is the upstreams of one route. It implements http.RoundTripper: it
// picks a host, points the request at it and sends it.
type Pool struct {
	Hosts  []*Host
	opts   Options
	policy string
	next   atomic.Uint64
	seed   maphash.Seed
}

// MaxHeadBytes bounds an upstream answer's head (status line and header
// fields): a larger one fails the request with 502 on every path, the
// loops' read buffer being the same size.
const MaxHeadBytes = 64 << 10

// failTimeout is how long a host that refused a connection is passed over.
const failTimeout = 10 * time.Second

// New builds a pool for the upstream URLs.
func New(urls []string, o Options) (*Pool, error) {
	p := &Pool{policy: o.Policy, opts: o, seed: maphash.MakeSeed()}
	ts := o.Transports
	if ts == nil {
		ts = NewTransports()
	}
	for _, raw := range urls {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		h := &Host{URL: u, name: raw, scheme: u.Scheme, prefix: strings.TrimSuffix(u.Path, "/"), resolver: o.Resolver}
		if h.resolver == nil {
			h.resolver = net.DefaultResolver
		}
		if u.Scheme == "h2c" {
			h.scheme = "http"
		}
		if u.Port() == "" {
			port := "80"
			if u.Scheme == "https" {
				port = "443"
			}
			u.Host = net.JoinHostPort(u.Hostname(), port)
		}
		if ap, err := netip.ParseAddrPort(u.Host); err == nil {
			h.literal = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		}
		t, err := ts.get(u.Scheme, o)
		if err != nil {
			return nil, err
		}
		h.rt, h.direct = t.rt, t.direct

		p.Hosts = append(p.Hosts, h)
	}
	return p, nil
}

// Transports shares connection pools between every route and every config
// generation that reach upstreams the same way: ten thousand sites proxying
// to one backend keep one pool of connections to it, and a reload keeps the
// warm ones. It lives as long as the instance.
type Transports struct {
	mu sync.Mutex
	m  map[transportKey]*transport
}

// transport is one way of reaching upstreams: net/http's Transport and,
// for plain HTTP/1.1, a direct client sharing its dialer.
type transport struct {
	rt     *http.Transport
	direct *direct
}

type transportKey struct {
	scheme             string
	dial, header, idle time.Duration
	maxIdle            int
	caSum              [32]byte
	resolver           *net.Resolver
}

// NewTransports returns an empty set of shared transports.
func NewTransports() *Transports { return &Transports{m: map[transportKey]*transport{}} }

func (ts *Transports) get(scheme string, o Options) (*transport, error) {
	k := transportKey{scheme: scheme, dial: o.DialTimeout, header: o.HeaderTimeout, idle: o.IdleTimeout, maxIdle: o.MaxIdle, resolver: o.Resolver}
	var roots *x509.CertPool
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, fmt.Errorf("reading upstream CA: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream CA %s holds no PEM certificate", o.CAFile)
		}
		k.caSum = sha256.Sum256(pem)
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t, ok := ts.m[k]; ok {
		return t, nil
	}
	t := newTransport(scheme, o, roots)
	ts.m[k] = t
	return t, nil
}

// CloseIdle drops every idle upstream connection (at shutdown).
func (ts *Transports) CloseIdle() {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	for _, t := range ts.m {
		t.rt.CloseIdleConnections()
		if t.direct != nil {
			t.direct.closeIdle()
		}
	}
}

func newTransport(scheme string, o Options, roots *x509.CertPool) *transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second, Resolver: o.Resolver}
	t := &http.Transport{
		Proxy:                  nil, // never route upstream traffic through $HTTP_PROXY
		DialContext:            d.DialContext,
		MaxIdleConnsPerHost:    o.MaxIdle,
		IdleConnTimeout:        o.IdleTimeout,
		ResponseHeaderTimeout:  o.HeaderTimeout,
		MaxResponseHeaderBytes: MaxHeadBytes,
		ExpectContinueTimeout:  time.Second,
		TLSHandshakeTimeout:    o.DialTimeout,
		// Bodies pass through as the upstream encoded them.
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	switch scheme {
	case "h2c":
		t.Protocols.SetUnencryptedHTTP2(true)
	case "https":
		// HTTP/1.1 to TLS upstreams, as nginx does, so WebSocket upgrades
		// work on every upstream.
		t.Protocols.SetHTTP1(true)
		t.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	default:
		t.Protocols.SetHTTP1(true)
		return &transport{rt: t, direct: newDirect(d.DialContext, o)}
	}
	return &transport{rt: t}
}

// HostStatus is one upstream's state for the admin API.
type HostStatus struct {
	URL      string `json:"url"`
	InFlight int64  `json:"in_flight"`
	Down     bool   `json:"down"`
}

// Status reports the pool's hosts.
func (p *Pool) Status() []HostStatus {
	now := time.Now().UnixNano()
	out := make([]HostStatus, len(p.Hosts))
	for i, h := range p.Hosts {
		d := h.downTill.Load()
		out[i] = HostStatus{URL: h.name, InFlight: h.inflight.Load(), Down: d != 0 && d > now}
	}
	return out
}

// RoundTrip sends req to a host picked by the policy. When a host refuses
// the connection, it is marked down and, if the request can be sent again
// (no body, or a body that can be replayed), the next host is tried.
func (p *Pool) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := journey.From(req.Context())
	tried := 0
	path, rawPath := req.URL.Path, req.URL.RawPath
	var client netip.Addr
	if rec != nil {
		client = rec.Client
	}
	for {
		h := p.Pick(client)
		if rec != nil {
			rec.Upstream = h.name
			rec.Tries++
		}
		req.URL.Scheme = h.scheme
		req.URL.Host = h.URL.Host
		if h.prefix != "" {
			req.URL.Path = h.prefix + path
			if rawPath != "" {
				req.URL.RawPath = h.prefix + rawPath
			}
		}
		start := time.Now()
		h.inflight.Add(1)
		var resp *http.Response
		var err error
		if h.direct != nil && directable(req) {
			resp, err = h.direct.roundTrip(req)
		} else {
			resp, err = h.rt.RoundTrip(req)
		}
		h.inflight.Add(-1)
		if rec != nil {
			rec.UpstreamTime = time.Since(start)
		}
		if err == nil {
			h.MarkUp()
			if rec != nil {
				rec.UpstreamStatus = resp.StatusCode
			}
			return resp, nil
		}
		tried++
		if !isDialError(err) || req.Context().Err() != nil {
			// Not a refusal, or a dial the client cut short by leaving:
			// no host is to blame.
			return nil, &Error{Upstream: h.name, Err: err}
		}
		h.MarkDown()
		if tried >= len(p.Hosts) || !replayable(req) {
			return nil, &Error{Upstream: h.name, Err: err}
		}
		if req.GetBody != nil && req.Body != nil && req.Body != http.NoBody {
			body, gerr := req.GetBody()
			if gerr != nil {
				return nil, &Error{Upstream: h.name, Err: err}
			}
			req.Body = body
		}
	}
}

// Error is an upstream failure, naming the upstream.
type Error struct {
	Upstream string
	Err      error
}

func (e *Error) Error() string { return e.Upstream + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func replayable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// Pick returns the host the policy chooses for a request from client (used
// by ip_hash). Hosts recently marked down are passed over.
func (p *Pool) Pick(client netip.Addr) *Host {
	if len(p.Hosts) == 1 {
		return p.Hosts[0]
	}
	now := time.Now().UnixNano()
	up := func(h *Host) bool { d := h.downTill.Load(); return d == 0 || d < now }
	n := len(p.Hosts)
	switch p.policy {
	case "first":
		for _, h := range p.Hosts {
			if up(h) {
				return h
			}
		}
	case "least_conn":
		var best *Host
		start := int(p.next.Add(1)) // rotate ties
		for i := range n {
			h := p.Hosts[(start+i)%n]
			if up(h) && (best == nil || h.inflight.Load() < best.inflight.Load()) {
				best = h
			}
		}
		if best != nil {
			return best
		}
	case "ip_hash":
		b := client.As16()
		start := int(maphash.Bytes(p.seed, b[:]) % uint64(n))
		for i := range n {
			if h := p.Hosts[(start+i)%n]; up(h) {
				return h
			}
		}
	default:
		for range n {
			if h := p.Hosts[int(p.next.Add(1)-1)%n]; up(h) {
				return h
			}
		}
	}
	// Every host is marked down: try one anyway rather than fail without
	// asking, since "down" is only a guess from a past failure.
	return p.Hosts[int(p.next.Add(1)-1)%n]
}

// Options returns the pool's settings (timeouts, idle connections).
func (p *Pool) Options() Options { return p.opts }

// Plain reports whether every host is plain HTTP/1.1 (not h2c, not TLS):
// upstreams a server can reach on its own sockets, at the addresses
// DialAddr gives.
func (p *Pool) Plain() bool {
	for _, h := range p.Hosts {
		if h.URL.Scheme != "http" {
			return false
		}
	}
	return true
}

// Name is the host's URL as configured, for logs and the journey.
func (h *Host) Name() string { return h.name }

// Prefix is the path the URL adds before every request path, without a
// trailing slash.
func (h *Host) Prefix() string { return h.prefix }

// DialAddr returns the address to dial: the URL's IP literal, or one of
// the addresses the URL's name resolved to — the first that has not
// refused a connection (DialFailed). ok is false until the name has
// resolved; the lookup then runs in the background, and meanwhile the
// request is for a client that resolves as it dials (net/http's).
func (h *Host) DialAddr() (addr netip.AddrPort, ok bool) {
	if h.literal.IsValid() {
		return h.literal, true
	}
	r := h.resolved.Load()
	if r == nil || time.Since(r.at) > resolveEvery {
		h.refresh()
	}
	if r == nil || len(r.addrs) == 0 {
		return addr, false
	}
	return r.addrs[int(h.first.Load())%len(r.addrs)], true
}

// Addrs is how many addresses the host has: 1 for an IP literal, those
// its name resolved to otherwise.
func (h *Host) Addrs() int {
	if r := h.resolved.Load(); !h.literal.IsValid() && r != nil && len(r.addrs) > 0 {
		return len(r.addrs)
	}
	return 1
}

// DialFailed notes that addr refused a connection, so that the next dial
// tries the name's next address, and returns how many addresses the name
// has (1 for an IP literal).
func (h *Host) DialFailed(addr netip.AddrPort) int {
	r := h.resolved.Load()
	if h.literal.IsValid() || r == nil || len(r.addrs) == 0 {
		return 1
	}
	if i := h.first.Load(); r.addrs[int(i)%len(r.addrs)] == addr {
		h.first.CompareAndSwap(i, i+1)
	}
	return len(r.addrs)
}

// refresh looks the host's name up again, unless a lookup is under way.
// A failed lookup keeps the addresses there were.
func (h *Host) refresh() {
	if !h.resolving.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer h.resolving.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		port, _ := strconv.ParseUint(h.URL.Port(), 10, 16)
		ips, err := h.resolver.LookupNetIP(ctx, "ip", h.URL.Hostname())
		old := h.resolved.Load()
		next := &resolution{at: time.Now()}
		if err != nil || len(ips) == 0 {
			if old != nil {
				next.addrs = old.addrs
			}
			h.resolved.Store(next)
			return
		}
		for _, ip := range ips {
			next.addrs = append(next.addrs, netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		}
		if old == nil || !slices.Equal(old.addrs, next.addrs) {
			h.first.Store(0)
		}
		h.resolved.Store(next)
	}()
}

// Begin and End count a request in flight to h (least_conn, status).
func (h *Host) Begin() { h.inflight.Add(1) }
func (h *Host) End()   { h.inflight.Add(-1) }

// MarkDown passes h over for a while after it refused a connection;
// MarkUp ends that when it answered.
func (h *Host) MarkDown() { h.downTill.Store(time.Now().Add(failTimeout).UnixNano()) }
func (h *Host) MarkUp() {
	if h.downTill.Load() != 0 {
		h.downTill.Store(0)
	}
}
