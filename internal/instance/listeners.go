package instance

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/demo"
	"gatehouse/internal/h1"
	"gatehouse/internal/journey"
	"gatehouse/internal/listen"
	"gatehouse/internal/tlsterm"
)

type listenerKind string

const (
	kindHTTP  listenerKind = "http"
	kindHTTPS listenerKind = "https"
	kindDemo  listenerKind = "demo"
	kindAdmin listenerKind = "admin"
)

// listenerKey names a socket by what the config says: two generations that
// write the same address share the socket (even 127.0.0.1:0 in tests).
type listenerKey struct {
	kind listenerKind
	addr string
}

// serverSettings are the http.Server fields a config sets; a change puts a
// new server on the same socket.
type serverSettings struct {
	readHeader, idle time.Duration
	maxHeader        int
	noLoops          bool
}

type listener struct {
	key      listenerKey
	order    int // position in the config, for HTTPAddrs
	sock     *listen.Socket
	srv      *http.Server
	eng      *h1.Engine // plain HTTP listeners: the event loops in front of srv
	fresh    *freshConns
	settings serverSettings
	shutdown time.Duration
}

// freshConns tracks a server's connections that have not yet answered
// their first request. net/http's Shutdown drops such a connection
// unanswered once it reads the request, which a client cannot tell from a
// failure; so a replaced server is shut down only when it has none left.
type freshConns struct {
	mu sync.Mutex
	m  map[net.Conn]struct{}
}

func (f *freshConns) hook(next func(net.Conn, http.ConnState)) func(net.Conn, http.ConnState) {
	return func(c net.Conn, s http.ConnState) {
		f.mu.Lock()
		switch s {
		case http.StateNew:
			f.m[c] = struct{}{}
		case http.StateIdle, http.StateClosed, http.StateHijacked:
			delete(f.m, c)
		}
		f.mu.Unlock()
		if next != nil {
			next(c, s)
		}
	}
}

// wait returns when no fresh connection is left, or at the deadline.
func (f *freshConns) wait(deadline time.Time) {
	for time.Now().Before(deadline) {
		f.mu.Lock()
		n := len(f.m)
		f.mu.Unlock()
		if n == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// desired lists the listeners cfg asks for.
func desired(cfg *config.Config) []listenerKey {
	var keys []listenerKey
	for _, a := range cfg.Listen.HTTP {
		keys = append(keys, listenerKey{kindHTTP, a})
	}
	for _, a := range cfg.Listen.HTTPS {
		keys = append(keys, listenerKey{kindHTTPS, a})
	}
	if cfg.Demo != "" {
		keys = append(keys, listenerKey{kindDemo, cfg.Demo})
	}
	if cfg.Admin.Listen != "" {
		keys = append(keys, listenerKey{kindAdmin, cfg.Admin.Listen})
	}
	return keys
}

func settingsOf(cfg *config.Config) serverSettings {
	return serverSettings{
		readHeader: cfg.Server.ReadHeaderTimeout.D(),
		idle:       cfg.Server.IdleTimeout.D(),
		// net/http allows 4 KB beyond this before answering 431.
		maxHeader: max(int(cfg.Server.MaxHeaderBytes)-4096, 1024),
		noLoops:   cfg.Server.DisableEventLoops,
	}
}

// apply makes the running listeners match g's config and swaps g in. New
// sockets are opened first; if one fails, nothing changes. in.mu is held.
func (in *Instance) apply(g *generation, initial bool) error {
	cfg := g.cfg
	want := desired(cfg)
	var opened []*listener
	for i, k := range want {
		if l, ok := in.listeners[k]; ok {
			l.order = i
			continue
		}
		sock, err := listen.Listen(k.addr, in.guard.Listener)
		if err != nil {
			for _, l := range opened {
				l.sock.Close()
			}
			return fmt.Errorf("listening for %s on %s: %w%s", k.kind, k.addr, err, hintFor(err))
		}
		opened = append(opened, &listener{key: k, order: i, sock: sock})
	}
	for _, l := range opened {
		in.listeners[l.key] = l
	}

	// With port 0 (tests) the HTTPS port for redirects is known only now.
	if https := in.addrs(kindHTTPS); len(https) > 0 {
		if p := https[0].(*net.TCPAddr).Port; p != configuredPort(cfg.Listen.HTTPS) {
			g2, err := in.compile(cfg, p)
			if err != nil {
				in.closeListeners(opened)
				return err
			}
			g.close()
			g = g2
		}
	}

	if err := in.applyNftables(g.firewall); err != nil {
		in.closeListeners(opened)
		return err
	}
	commitDNS, err := in.applyDNS(g)
	if err != nil {
		in.closeListeners(opened)
		return err
	}
	in.guard.Update(g.firewall)
	old := in.gen.Swap(g)
	in.dnsMu.Lock()
	commitDNS()
	in.dnsMu.Unlock()
	in.certs.Use(g.certs)
	if old != g && !initial {
		old.close()
	}

	settings := settingsOf(cfg)
	wanted := map[listenerKey]bool{}
	for _, k := range want {
		wanted[k] = true
		l := in.listeners[k]
		if l.srv != nil && (k.kind == kindDemo || k.kind == kindAdmin || l.settings == settings) {
			l.shutdown = cfg.Server.ShutdownTimeout.D()
			continue
		}
		prev, prevEng, prevFresh := l.srv, l.eng, l.fresh
		l.settings, l.shutdown = settings, cfg.Server.ShutdownTimeout.D()
		in.serve(l)
		if prev != nil {
			in.drain(prev, prevEng, prevFresh, l.shutdown)
		}
	}
	for k, l := range in.listeners {
		if !wanted[k] {
			delete(in.listeners, k)
			in.draining.Add(1)
			go func() {
				defer in.draining.Done()
				ctx, cancel := context.WithTimeout(context.Background(), l.shutdown)
				defer cancel()
				l.stop(ctx)
			}()
		}
	}
	return nil
}

func (in *Instance) closeListeners(ls []*listener) {
	for _, l := range ls {
		delete(in.listeners, l.key)
		l.sock.Close()
	}
}

// serve puts a new server on l's socket; the previous one, if any, stops
// receiving connections.
func (in *Instance) serve(l *listener) {
	var srv *http.Server
	switch l.key.kind {
	case kindDemo:
		srv = &http.Server{Handler: demo.Handler(), ReadHeaderTimeout: 10 * time.Second, ErrorLog: in.errorLog()}
	case kindAdmin:
		// The admin API follows the generation: a reload that changes the
		// token takes effect without a new socket.
		srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h := in.gen.Load().admin; h != nil {
				h.ServeHTTP(w, r)
				return
			}
			http.NotFound(w, r)
		}), ReadHeaderTimeout: 10 * time.Second, ErrorLog: in.errorLog()}
	default:
		srv = &http.Server{
			Handler:           in,
			ReadHeaderTimeout: l.settings.readHeader,
			IdleTimeout:       l.settings.idle,
			MaxHeaderBytes:    l.settings.maxHeader,
			ErrorLog:          in.publicErrorLog(),
			Protocols:         new(http.Protocols),
			ConnContext:       connVerdict,
		}
		srv.Protocols.SetHTTP1(true)
	}
	var tlsCfg *tls.Config
	if l.key.kind == kindHTTPS {
		tlsCfg = tlsterm.Config(in.certs.GetCertificate)
		tlsCfg.VerifyConnection = func(tls.ConnectionState) error {
			in.metrics.TLSHandshake(true)
			return nil
		}
		srv.TLSConfig = tlsCfg
		srv.Protocols.SetHTTP2(true)
	}
	fresh := &freshConns{m: map[net.Conn]struct{}{}}
	var count func(net.Conn, http.ConnState)
	if l.key.kind == kindHTTP || l.key.kind == kindHTTPS {
		count = in.metrics.ConnState(string(l.key.kind) + " " + l.key.addr)
	}
	srv.ConnState = fresh.hook(count)
	h := l.sock.Attach()
	var eng *h1.Engine
	if (l.key.kind == kindHTTP || l.key.kind == kindHTTPS) && !l.settings.noLoops {
		var err error
		errLog := srv.ErrorLog
		name := string(l.key.kind) + " " + l.key.addr
		answered, handed := in.metrics.Loop(name)
		eng, err = h1.New(h.Addr(), h1.Options{
			Gen:               func() *h1.Gen { return in.gen.Load().fast },
			ReadHeaderTimeout: l.settings.readHeader,
			IdleTimeout:       l.settings.idle,
			MaxHeaderBytes:    l.settings.maxHeader + 4096,
			ConnState:         count,
			Log:               in.log,
			TLS:               tlsCfg,
			Answered:          answered,
			Handed:            handed,
			HandshakeFailed: func(remote net.Addr, err error) {
				// The line net/http writes, so one watcher counts both.
				errLog.Printf("http: TLS handshake error from %s: %v", remote, err)
			},
		})
		if err != nil {
			in.log.Warn("event loops unavailable; net/http serves every request", "addr", h.Addr().String(), "error", err)
		} else if tlsCfg != nil {
			srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
				return h1.ConnContext(connVerdict(ctx, c), c)
			}
			srv.Handler = h1.RestoreTLS(srv.Handler)
		}
	}
	l.srv, l.eng, l.fresh = srv, eng, fresh
	go func() {
		var err error
		switch {
		case eng != nil:
			go eng.Serve(h)
			err = srv.Serve(eng.Fallback())
		case tlsCfg != nil:
			err = srv.ServeTLS(h, "", "")
		default:
			err = srv.Serve(h)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			in.log.Error("server stopped", "addr", h.Addr().String(), "error", err)
		}
	}()
}

// drain shuts a replaced server down in the background: it receives no new
// connections and its in-flight requests finish.
func (in *Instance) drain(srv *http.Server, eng *h1.Engine, fresh *freshConns, timeout time.Duration) {
	in.draining.Add(1)
	go func() {
		defer in.draining.Done()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		shutdown(ctx, srv, eng, fresh)
	}()
}

// shutdown stops a server gracefully: the event loops first, as they may
// still hand connections to srv, then srv once its fresh connections have
// answered.
func shutdown(ctx context.Context, srv *http.Server, eng *h1.Engine, fresh *freshConns) error {
	if eng != nil {
		eng.Shutdown(ctx)
	}
	if fresh != nil {
		deadline, _ := ctx.Deadline()
		fresh.wait(deadline)
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
	}
	return err
}

// stop shuts the listener's server down gracefully, then closes its socket.
func (l *listener) stop(ctx context.Context) error {
	var err error
	if l.srv != nil {
		err = shutdown(ctx, l.srv, l.eng, nil)
	}
	l.sock.Close()
	return err
}

func (in *Instance) addrs(kind listenerKind) []net.Addr {
	var ls []*listener
	for _, l := range in.listeners {
		if l.key.kind == kind {
			ls = append(ls, l)
		}
	}
	for i := 1; i < len(ls); i++ { // a handful: insertion sort by config order
		for j := i; j > 0 && ls[j].order < ls[j-1].order; j-- {
			ls[j], ls[j-1] = ls[j-1], ls[j]
		}
	}
	out := make([]net.Addr, len(ls))
	for i, l := range ls {
		out[i] = l.sock.Addr()
	}
	return out
}

// verdicter is a connection that carries the firewall's verdict on it.
type verdicter interface{ FirewallVerdict() string }

// connVerdict puts the firewall's verdict on a connection into the context
// of every request on it, for the journey record.
func connVerdict(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if v, ok := c.(verdicter); ok {
		return journey.WithConnVerdict(ctx, v.FirewallVerdict())
	}
	return ctx
}
