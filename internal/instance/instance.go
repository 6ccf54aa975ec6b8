// Package instance owns one running gatehouse: it compiles a Config into the
// rooms of the request path and wires them together, in the order a request
// meets them. It is the only package that sees every room.
//
// A request on a public listener travels:
//
//	listen.Socket (outlives reloads)
//	  → h1.Engine: plain HTTP/1.1 proxy requests served on event loops;
//	    everything else handed on                               HTTP only
//	  → TLS (tlsterm.Config, certificate from certs.Manager)   HTTPS only
//	  → http.Server (timeouts, header limits, HTTP/2 via ALPN)
//	  → accesslog.Middleware  (opens the journey record, logs the outcome)
//	  → route.Table           (site, HTTPS redirect, path, 404)
//	  → proxy.Handler → upstream.Pool | static | respond
//
// What lives across reloads is held by the Instance: sockets, the
// certificate manager (and its local CA). What a config defines is compiled
// into a generation and swapped in whole with one atomic store, so no
// request ever sees half a config.
package instance

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"gatehouse/internal/accesslog"
	"gatehouse/internal/certs"
	"gatehouse/internal/clientip"
	"gatehouse/internal/config"
	"gatehouse/internal/dnsserver"
	"gatehouse/internal/firewall"
	"gatehouse/internal/firewall/nft"
	"gatehouse/internal/h1"
	"gatehouse/internal/journey"
	"gatehouse/internal/metrics"
	"gatehouse/internal/route"
	"gatehouse/internal/upstream"
	"gatehouse/internal/zone"
)

// Options are what the command line adds to a config.
type Options struct {
	// DataDir holds the local CA and certificates.
	DataDir string
	// Log receives gatehouse's own log lines; AccessLog the access log
	// (nil for none).
	Log       *slog.Logger
	AccessLog *accesslog.Writer
	// Metrics records metrics; nil makes a new registry.
	Metrics *metrics.Metrics
	// Load reads the config file again on reload; nil is config.Load. The
	// command line sets it to also read nginx files.
	Load func(path string) (*config.Config, error)
}

// Instance is a running gatehouse.
type Instance struct {
	opts    Options
	log     *slog.Logger
	certs   *certs.Manager
	metrics *metrics.Metrics

	gen atomic.Pointer[generation]
	// ring keeps recent journeys across reloads, replaced only when the
	// configured size changes.
	ring atomic.Pointer[journey.Ring]
	// transports pool upstream connections across routes and reloads.
	transports *upstream.Transports

	// dns is the DNS server, replaced only when its addresses change;
	// dnsMu guards reading it from outside the reload path.
	dns       *dnsserver.Server
	dnsListen []string
	dnsMu     sync.RWMutex
	// txt holds the DNS-01 records every DNS server serves: one that
	// replaces another at a reload serves them from the start.
	txt *dnsserver.TXTRecords
	// guard is the firewall: its policy follows the generation, its
	// per-source state (limits, bans, counters) lives across reloads.
	guard *firewall.Guard
	// bansDirty says the bans changed since the bans file was written;
	// bansMu orders the writes.
	bansDirty atomic.Bool
	bansMu    sync.Mutex
	// serials keeps every zone's served serial from going back, across DNS
	// servers and restarts.
	serials *dnsserver.Serials
	// nft is the kernel table, when the config asks for nftables.
	nft atomic.Pointer[nft.Table]

	// mu serialises Start, Reload and Shutdown.
	mu        sync.Mutex
	listeners map[listenerKey]*listener
	started   bool
	stopped   bool
	// draining counts servers shut down by reloads, still finishing.
	draining sync.WaitGroup
}

// New prepares an instance for cfg: it opens the data directory and compiles
// the config. Nothing listens until Start.
func New(cfg *config.Config, opts Options) (*Instance, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if cfg.Data != "" && opts.DataDir == "" {
		opts.DataDir = cfg.Data
	}
	if opts.DataDir == "" {
		return nil, errors.New("no data directory: pass --data DIR or set GATEHOUSE_DATA")
	}
	if opts.Metrics == nil {
		opts.Metrics = metrics.New()
	}
	ca, err := certs.LoadOrCreateCA(filepath.Join(opts.DataDir, "ca"))
	if err != nil {
		return nil, err
	}
	in := &Instance{
		opts: opts, log: opts.Log, certs: certs.NewManager(ca), metrics: opts.Metrics,
		listeners: map[listenerKey]*listener{}, transports: upstream.NewTransports(),
		guard: firewall.NewGuard(nil), txt: dnsserver.NewTXTRecords(),
	}
	in.guard.Logger = in.log
	in.guard.OnBan = in.onBan
	in.restoreBans()
	in.restoreSerials()
	in.setupCerts()
	in.registerCollectors()
	g, err := in.compile(cfg, configuredPort(cfg.Listen.HTTPS))
	if err != nil {
		return nil, err
	}
	in.gen.Store(g)
	return in, nil
}

// CA returns the local CA.
func (in *Instance) CA() *certs.LocalCA { return in.certs.CA }

// Config returns the config now in force.
func (in *Instance) Config() *config.Config { return in.gen.Load().cfg }

// generation is everything compiled from one config.
type generation struct {
	cfg     *config.Config
	handler http.Handler
	// fast is what plain-HTTP event loops need of this generation.
	fast     *h1.Gen
	admin    http.Handler // nil when the admin API is off
	certs    *certs.Policy
	zones    *zone.Set
	firewall *firewall.Policy
	pools    []*upstream.Pool
	// transports are the instance's, shared by every generation.
	transports *upstream.Transports
	closers    []func()
}

func (g *generation) close() {
	for _, c := range g.closers {
		c()
	}
}

// compile builds a generation without touching anything running, so a
// config that fails here never replaces a working one.
func (in *Instance) compile(cfg *config.Config, httpsPort int) (*generation, error) {
	pol, err := in.certs.Compile(cfg)
	if err != nil {
		return nil, err
	}
	var trusted []netip.Prefix
	for _, s := range cfg.Server.TrustedProxies {
		p, _ := config.ParsePrefix(s) // validated by config
		trusted = append(trusted, p)
	}
	ips := clientip.New(trusted)
	zones, err := compileZones(cfg)
	if err != nil {
		return nil, err
	}
	fw, err := firewall.Compile(cfg.Firewall)
	if err != nil {
		return nil, err
	}
	g := &generation{cfg: cfg, certs: pol, transports: in.transports, zones: zones, firewall: fw}
	sites, err := buildSites(cfg, ips, in.log, g)
	if err != nil {
		g.close()
		return nil, err
	}
	table, err := route.New(sites, route.Options{HTTPSPort: httpsPort, Challenge: in.certs.HTTPChallenge()})
	if err != nil {
		g.close()
		return nil, err
	}
	traceToken, err := TraceToken(cfg, in.opts.DataDir)
	if err != nil {
		g.close()
		return nil, err
	}
	ring := in.ring.Load()
	if n := max(cfg.Journey.Keep, 0); ring == nil || ring.Len() != n {
		ring = journey.NewRing(n)
		in.ring.Store(ring)
	}
	access := &accesslog.Middleware{
		Next: in.guard.Middleware(table), Log: in.opts.AccessLog, ClientIP: ips,
		Observe: in.observe, Ring: ring,
		TraceToken: traceToken, ServerTiming: cfg.Journey.ServerTiming,
	}
	g.handler = access
	timing := cfg.Journey.ServerTiming
	g.fast = &h1.Gen{Table: table, Finish: access.Finish, Full: func() bool {
		// The loop adds no Server-Timing and skips the firewall's
		// per-request checks, so it steps aside while either is needed.
		return timing || in.guard.ChecksRequests()
	}}
	if g.admin, err = in.adminHandler(cfg); err != nil {
		g.close()
		return nil, err
	}
	return g, nil
}

// configuredPort is the port of the first HTTPS address, for redirects.
func configuredPort(addrs []string) int {
	if len(addrs) == 0 {
		return 443
	}
	_, p, _ := net.SplitHostPort(addrs[0])
	n, _ := strconv.Atoi(p)
	return n
}

// ServeHTTP hands the request to the current generation.
func (in *Instance) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.gen.Load().handler.ServeHTTP(w, r)
}

// Start opens every listener (all or none) and serves.
func (in *Instance) Start() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.started {
		return errors.New("instance already started")
	}
	if err := in.apply(in.gen.Load(), true); err != nil {
		return err
	}
	in.manageCerts()
	in.started = true
	return nil
}

// Reload replaces the running config with cfg. Everything is compiled and
// every new socket opened before anything changes; on any error the running
// config stays as it was. Sockets whose address did not change are kept,
// and requests, WebSockets and streams on them are not disturbed.
func (in *Instance) Reload(cfg *config.Config) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !in.started || in.stopped {
		return errors.New("instance is not running")
	}
	g, err := in.compile(cfg, configuredPort(cfg.Listen.HTTPS))
	if err == nil {
		if err = in.apply(g, false); err != nil {
			g.close()
		}
	}
	in.metrics.Reload(err == nil)
	if err == nil {
		in.manageCerts()
	}
	if err != nil {
		in.log.Warn("config refused; the running config is unchanged", "config", cfg.File, "error", err.Error())
		return err
	}
	in.log.Info("config reloaded", "config", cfg.File)
	return nil
}

func hintFor(err error) string {
	switch {
	case errors.Is(err, errAddrInUse()):
		return ": another program uses this port; stop it or change the address in the config"
	case errors.Is(err, errAccess()):
		return ": ports below 1024 need root or CAP_NET_BIND_SERVICE (see docs/operations.md), or use a port above 1024"
	}
	return ""
}

// publicErrorLog is errorLog for the public listeners, which also counts
// failed TLS handshakes: net/http reports them only through this log.
func (in *Instance) publicErrorLog() *log.Logger {
	next := in.log.Handler()
	return log.New(handshakeWatcher{in: in, next: slog.NewLogLogger(next, slog.LevelDebug)}, "", 0)
}

type handshakeWatcher struct {
	in   *Instance
	next *log.Logger
}

func (h handshakeWatcher) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte("http: TLS handshake error from ")) {
		h.in.metrics.TLSHandshake(false)
		h.in.reportHandshakeFailure(p)
	}
	h.next.Print(string(p))
	return len(p), nil
}

// errorLog sends net/http's own complaints (TLS handshake errors from
// scanners, mostly) to the debug level.
func (in *Instance) errorLog() *log.Logger {
	return slog.NewLogLogger(in.log.Handler(), slog.LevelDebug)
}

// HTTPAddrs and HTTPSAddrs return the bound public addresses, in config
// order.
func (in *Instance) HTTPAddrs() []net.Addr  { return in.lockedAddrs(kindHTTP) }
func (in *Instance) HTTPSAddrs() []net.Addr { return in.lockedAddrs(kindHTTPS) }

func (in *Instance) lockedAddrs(k listenerKind) []net.Addr {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.addrs(k)
}

// Shutdown stops accepting, lets in-flight requests finish until ctx is
// done, then closes what is left.
func (in *Instance) Shutdown(ctx context.Context) error {
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		return nil
	}
	in.stopped = true
	ls := make([]*listener, 0, len(in.listeners))
	for _, l := range in.listeners {
		ls = append(ls, l)
	}
	in.mu.Unlock()

	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, l := range ls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := l.stop(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s %s: %w", l.key.kind, l.key.addr, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	in.draining.Wait()
	in.certs.Stop()
	in.dnsMu.Lock()
	if in.dns != nil {
		in.dns.Close() // its sockets too: a restart in the same process takes them
	}
	in.dnsMu.Unlock()
	in.gen.Load().close()
	// Idle upstream connections end with the instance, not with the
	// process, which may go on (a test, a restart in place).
	in.transports.CloseIdle()
	in.saveBans()
	return errors.Join(errs...)
}
