package instance

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"syscall"

	"gatehouse/internal/certs"
	"gatehouse/internal/clientip"
	"gatehouse/internal/config"
	"gatehouse/internal/cors"
	"gatehouse/internal/placeholder"
	"gatehouse/internal/proxy"
	"gatehouse/internal/ratelimit"
	"gatehouse/internal/respond"
	"gatehouse/internal/route"
	"gatehouse/internal/static"
	"gatehouse/internal/upstream"
)

func errAddrInUse() error { return syscall.EADDRINUSE }
func errAccess() error    { return syscall.EACCES }

// buildSites compiles each site's routes into handlers. Closers for what
// outlives a request (upstream connection pools) are added to g.
func buildSites(cfg *config.Config, ips *clientip.Resolver, log *slog.Logger, g *generation) ([]route.SiteSpec, error) {
	var errs config.ErrorList
	var specs []route.SiteSpec
	for i := range cfg.Sites {
		s := &cfg.Sites[i]
		spec := route.SiteSpec{Hosts: s.Hosts, TLS: certs.SiteSource(cfg, s) != 0}
		for j := range s.Routes {
			r := &s.Routes[j]
			h, kind, err := buildHandler(r, ips, log, g)
			if err == nil {
				h, err = wrapRoute(h, s, r)
			}
			if err != nil {
				errs.Add(cfg.PosOf(r), err.Error())
				continue
			}
			spec.Routes = append(spec.Routes, route.RouteSpec{
				Path: r.Path, Exact: r.Exact, Regex: r.Regex, Final: r.Final,
				StripPrefix: r.StripPrefix, MaxBody: int64(r.MaxBody),
				Kind: kind, Handler: h, NoLog: r.Quiet(),
			})
		}
		specs = append(specs, spec)
	}
	return specs, errs.Err()
}

// wrapRoute puts the route's rate limit in front of its handler, and its
// cors policy (the route's, else the site's) in front of both: preflights
// are answered without spending a client's quota, and a 429 carries CORS
// headers so the page's script can read it.
func wrapRoute(h http.Handler, s *config.Site, r *config.Route) (http.Handler, error) {
	if rl := r.RateLimit; rl != nil {
		h = ratelimit.New(rl.Requests, rl.Per.D(), rl.Burst, 0).Wrap(h)
	}
	c := r.CORS
	if c == nil {
		c = s.CORS
	}
	if c != nil {
		p, err := cors.New(*c)
		if err != nil {
			return nil, err
		}
		h = p.Wrap(h)
	}
	return h, nil
}

func buildHandler(r *config.Route, ips *clientip.Resolver, log *slog.Logger, g *generation) (http.Handler, string, error) {
	switch {
	case r.Proxy != nil:
		h, err := buildProxy(r.Proxy, ips, log, g)
		return h, "proxy", err
	case r.Static != nil:
		h, err := static.New(*r.Static)
		if err != nil {
			return nil, "", err
		}
		g.closers = append(g.closers, func() { h.Close() })
		return h, "static", nil
	case r.Redirect != nil:
		h, err := respond.NewRedirect(r.Redirect.To, r.Redirect.Status)
		return h, "redirect", err
	case r.Respond != nil:
		return respond.NewFixed(r.Respond.Status, r.Respond.Body, r.Respond.ContentType), "respond", nil
	}
	return nil, "", fmt.Errorf("route has no handler")
}

func buildProxy(p *config.Proxy, ips *clientip.Resolver, log *slog.Logger, g *generation) (http.Handler, error) {
	pool, err := upstream.New(p.To, upstream.Options{
		Policy:        p.Policy,
		DialTimeout:   p.DialTimeout.D(),
		HeaderTimeout: p.HeaderTimeout.D(),
		IdleTimeout:   p.IdleTimeout.D(),
		MaxIdle:       p.MaxIdle,
		CAFile:        p.CA,
		Transports:    g.transports,
	})
	if err != nil {
		return nil, err
	}
	g.pools = append(g.pools, pool)
	o := proxy.Options{ClientIP: ips, Log: log}
	if first, _ := url.Parse(p.To[0]); first.Scheme == "https" {
		// https:// upstreams are taken for third parties (see config.Proxy).
		o.ThirdParty = proxy.ThirdParty{StripCredentials: !p.ForwardCredentials, DropSetCookie: !p.AllowSetCookie}
	}
	switch p.Host {
	case "", "original", "upstream":
		o.Host = proxy.HostOriginal
		first, _ := url.Parse(p.To[0])
		if p.Host == "upstream" || (p.Host == "" && first.Scheme == "https") {
			o.Host = proxy.HostUpstream
		}
	default:
		o.Host, o.HostName = proxy.HostLiteral, p.Host
	}
	if o.Headers, err = compileOps(p.Headers); err != nil {
		return nil, err
	}
	if o.ResponseHeaders, err = compileOps(p.ResponseHeaders); err != nil {
		return nil, err
	}
	return proxy.New(pool, o), nil
}

func compileOps(ops config.HeaderOps) (proxy.HeaderOps, error) {
	var out proxy.HeaderOps
	for _, name := range ops.Remove {
		out.Remove = append(out.Remove, http.CanonicalHeaderKey(name))
	}
	add := func(dst *[]proxy.Header, m map[string]string) error {
		names := make([]string, 0, len(m))
		for k := range m {
			names = append(names, k)
		}
		sort.Strings(names) // a stable order for the upstream and for tests
		for _, k := range names {
			t, err := placeholder.Compile(m[k])
			if err != nil {
				return fmt.Errorf("header %s: %v", k, err)
			}
			*dst = append(*dst, proxy.Header{Name: http.CanonicalHeaderKey(k), Value: t})
		}
		return nil
	}
	if err := add(&out.Set, ops.Set); err != nil {
		return out, err
	}
	return out, add(&out.Add, ops.Add)
}

func (g *generation) upstreams() []upstream.HostStatus {
	var out []upstream.HostStatus
	for _, p := range g.pools {
		out = append(out, p.Status()...)
	}
	return out
}

func (in *Instance) certsSource(s *config.Site) string {
	return certs.SiteSource(in.Config(), s).String()
}
