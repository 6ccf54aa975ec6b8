// Package config owns the gatehouse configuration: the plain structs a YAML
// file decodes into, their defaults, and validation that reports every
// problem at once with file:line:col and a way to fix it.
//
// Nothing here opens a socket or starts a goroutine. Each room of the server
// compiles its part of a Config into runtime values with its own New.
package config

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is one complete gatehouse configuration.
type Config struct {
	// Listen names the public HTTP and HTTPS addresses.
	Listen Listen `yaml:"listen"`
	// Data is the data directory (CA, certificates, state). Empty means the
	// default chosen by the command line (--data, GATEHOUSE_DATA, or the
	// user's state directory).
	Data     string   `yaml:"data"`
	Server   Server   `yaml:"server"`
	TLS      TLS      `yaml:"tls"`
	Sites    []Site   `yaml:"sites"`
	DNS      DNS      `yaml:"dns"`
	Firewall Firewall `yaml:"firewall"`
	Admin    Admin    `yaml:"admin"`
	Journey  Journey  `yaml:"journey"`
	Log      Log      `yaml:"log"`
	// Demo, when set, is the address of the built-in demo backend app
	// (the embedded default uses 127.0.0.1:5000).
	Demo string `yaml:"demo"`

	// File is the path the config was read from.
	File string `yaml:"-"`
	// Source is the config as written, before ${VAR} expansion.
	Source []byte `yaml:"-"`
	// Warnings are problems that do not stop the config from running.
	Warnings ErrorList `yaml:"-"`
	// SecretVars names the environment variables expanded into the config;
	// their values are redacted wherever the config is shown.
	SecretVars []string `yaml:"-"`

	pos map[any]Pos
}

// Listen holds the public listener addresses, each host:port; an empty host
// means every address, IPv4 and IPv6.
type Listen struct {
	HTTP  []string `yaml:"http"`  // default [":80"]
	HTTPS []string `yaml:"https"` // default [":443"]
}

// Server holds how the public listeners treat clients.
type Server struct {
	// ReadHeaderTimeout bounds how long a client may take to send request
	// headers (default 10s), so slow clients cannot pin connections.
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	// IdleTimeout closes keep-alive connections idle this long (default 2m).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes caps request headers; larger ones get 431 (default 64KB).
	MaxHeaderBytes Size `yaml:"max_header_bytes"`
	// ShutdownTimeout bounds how long in-flight requests may run after
	// SIGTERM or SIGINT (default 15s).
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// DisableEventLoops serves every request with net/http. By default
	// plain HTTP/1.1 proxy requests and small static files are answered on
	// event loops (docs/performance.md) and the rest by net/http.
	DisableEventLoops bool `yaml:"disable_event_loops"`
	// TrustedProxies are the CIDRs or addresses whose X-Forwarded-For is
	// believed. By default no one is trusted and the peer is the client.
	TrustedProxies []string `yaml:"trusted_proxies"`
}

// TLS holds certificate settings shared by all sites.
type TLS struct {
	// ACME enables certificates from an ACME CA (Let's Encrypt by default).
	ACME *ACME `yaml:"acme"`
}

// SiteTLS says where a site's certificate comes from. Written short as a
// mode (`tls: internal`) or as files (`tls: {cert: …, key: …}`).
type SiteTLS struct {
	// Mode is internal (the local CA), acme, files (set by Cert/Key) or off
	// (plain HTTP only, no redirect). Empty means acme when tls.acme is set
	// and the site's names are public, internal otherwise.
	Mode string `yaml:"mode,short"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// Site is a set of host names served with the same routes.
type Site struct {
	// Hosts are exact names or *.example.com wildcards (one label).
	Hosts  []string `yaml:"hosts"`
	TLS    SiteTLS  `yaml:"tls"`
	Routes []Route  `yaml:"routes"`
	// CORS applies to every route of the site that has none of its own.
	CORS *CORS `yaml:"cors"`
}

// Route matches a request path and hands it to exactly one handler.
type Route struct {
	// Path is a prefix matched on segment boundaries: /api matches /api and
	// /api/x but not /apiary. The longest matching path wins. Default "/".
	Path string `yaml:"path"`
	// Exact makes Path match only itself; exact routes win over all others.
	Exact bool `yaml:"exact"`
	// Regex matches the path with an RE2 expression ((?i) for any case)
	// instead of Path. Regex routes are tried in order after the longest
	// prefix is found, and the first that matches wins over it, unless
	// that prefix route is Final (nginx's location precedence).
	Regex string `yaml:"regex"`
	// Final keeps regex routes from overriding this prefix route (^~).
	Final bool `yaml:"final"`
	// StripPrefix removes Path from the request path before the handler.
	StripPrefix bool `yaml:"strip_prefix"`
	// MaxBody caps request bodies (413 beyond); 0 means no limit.
	MaxBody Size `yaml:"max_body"`
	// AccessLog false leaves the route's requests out of the access log
	// (health checks, favicons); metrics and the journey still count them.
	// See Quiet.
	AccessLog *bool `yaml:"access_log"`

	// CORS answers preflights and adds Access-Control-* headers.
	CORS *CORS `yaml:"cors"`
	// RateLimit caps each client's requests to this route (429 beyond).
	RateLimit *RateLimit `yaml:"rate_limit"`

	Proxy    *Proxy    `yaml:"proxy"`
	Static   *Static   `yaml:"static"`
	Redirect *Redirect `yaml:"redirect"`
	Respond  *Respond  `yaml:"respond"`
}

// Quiet is whether the route's requests stay out of the access log.
func (r *Route) Quiet() bool { return r.AccessLog != nil && !*r.AccessLog }

// Proxy forwards requests to one or more upstreams.
type Proxy struct {
	// To lists upstream URLs: http://, https:// or h2c:// (cleartext
	// HTTP/2, for gRPC backends). A path in the URL prefixes the request
	// path, as nginx's proxy_pass with a URI does.
	To []string `yaml:"to,short"`
	// Host is the Host header sent upstream: "original" (the client's, the
	// default for http:// and h2c:// upstreams), "upstream" (the upstream
	// URL's host, the default for https:// upstreams such as third-party
	// APIs, whose certificates name themselves), or a literal name.
	Host string `yaml:"host"`
	// Policy picks an upstream: round_robin (default), least_conn, first,
	// or ip_hash.
	Policy string `yaml:"policy"`
	// DialTimeout bounds connecting to an upstream (default 5s; 502 after).
	DialTimeout Duration `yaml:"dial_timeout"`
	// HeaderTimeout bounds waiting for response headers (default 60s; 504).
	HeaderTimeout Duration `yaml:"header_timeout"`
	// IdleTimeout closes pooled upstream connections idle this long (90s).
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxIdle caps pooled idle connections per upstream (default 1024):
	// enough to keep what a burst of HTTP/2 streams opened, so the next
	// burst reuses them; each still closes after IdleTimeout unused.
	MaxIdle int `yaml:"max_idle"`
	// Headers edits the request sent upstream; values may use ${ENV}.
	Headers HeaderOps `yaml:"headers"`
	// ResponseHeaders edits the response sent to the client.
	ResponseHeaders HeaderOps `yaml:"response_headers"`
	// CA is a PEM file of roots to verify https:// upstreams with, instead
	// of the system roots.
	CA string `yaml:"ca"`
	// ForwardCredentials sends the client's Cookie and Authorization to
	// https:// upstreams, which are taken for third parties and get
	// neither by default.
	ForwardCredentials bool `yaml:"forward_credentials"`
	// AllowSetCookie passes Set-Cookie from https:// upstreams on to the
	// client; by default a third party cannot set cookies on this site.
	AllowSetCookie bool `yaml:"allow_set_cookie"`
}

// HeaderOps sets or removes header fields. Values may hold placeholders:
// {host}, {client_ip}, {scheme}, {method}, {path}, {query}, {uri} and
// {header.Name} (a request header), along with ${ENV} from the environment.
type HeaderOps struct {
	Set    map[string]string `yaml:"set"`
	Add    map[string]string `yaml:"add"`
	Remove []string          `yaml:"remove"`
}

// Static serves files from a folder.
type Static struct {
	Root string `yaml:"root,short"`
	// Index names the files tried for a directory (default index.html).
	Index []string `yaml:"index"`
	// SPA serves Fallback (default /index.html) for paths that are not
	// files, for single-page apps with client-side routing.
	SPA      bool   `yaml:"spa"`
	Fallback string `yaml:"fallback"`
	// Browse lists directories without an index file (off by default).
	Browse bool `yaml:"browse"`
}

// Redirect answers with a redirect. To may use {host}, {path}, {query} and
// {uri} (path and query), e.g. https://example.org{uri}.
type Redirect struct {
	To     string `yaml:"to,short"`
	Status int    `yaml:"status"` // default 302
}

// Respond answers with a fixed status and body.
type Respond struct {
	Body        string `yaml:"body,short"`
	Status      int    `yaml:"status"`       // default 200
	ContentType string `yaml:"content_type"` // default text/plain; charset=utf-8
}

// Admin is the local admin API; see docs/operations.md.
type Admin struct {
	// Listen is a loopback address such as 127.0.0.1:2019; empty is off.
	Listen string `yaml:"listen"`
	// Token is the bearer token; TokenFile reads it from a file. With
	// neither, a random token is made once and kept in the data directory
	// (admin.token), where `gatehouse reload` finds it.
	Token     string `yaml:"token"`
	TokenFile string `yaml:"token_file"`
}

// Log sets how gatehouse logs.
type Log struct {
	// Format is json (default) or text.
	Format string `yaml:"format"`
	// Level is debug, info (default), warn or error.
	Level string `yaml:"level"`
	// Access is where the access log goes: stderr (default), stdout, off,
	// or a file path.
	Access string `yaml:"access"`
}

// Duration is a time.Duration written as 500ms, 30s, 5m.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Size is a byte count written as 512, 64KB, 10MB or 1GB (powers of 1024;
// k, m, g alone as in nginx).
type Size int64

func (s *Size) decodeNode(d *decoder, n *yaml.Node) {
	v, ok := d.scalar(n, "a size such as 64KB or 10MB")
	if !ok {
		return
	}
	num := strings.TrimRight(strings.ToLower(v), "bkmgi")
	unit := strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(v[len(num):]), "b"), "i")
	mult := map[string]int64{"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit]
	i, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil || mult == 0 || i < 0 {
		d.errorf(n, "%q is not a size: write a number with an optional unit, such as 512, 64KB or 10MB", v)
		return
	}
	*s = Size(i * mult)
}

// PosOf returns where the value at ptr (a pointer into this Config) was
// written, or the file alone when it was not written (a default).
func (c *Config) PosOf(ptr any) Pos {
	if p, ok := c.pos[ptr]; ok {
		return p
	}
	return Pos{File: c.File}
}

// Parse decodes and validates a config. The error, when not nil, is an
// ErrorList holding every problem found; warnings are in Config.Warnings.
func Parse(file string, src []byte) (*Config, error) {
	c := &Config{File: file, Source: src, pos: map[any]Pos{}}
	var errs ErrorList
	secrets := map[string]bool{}
	decodeYAML(file, src, c, &errs, c.pos, secrets)
	for k := range secrets {
		c.SecretVars = append(c.SecretVars, k)
	}
	sort.Strings(c.SecretVars)
	if len(errs.Errors()) == 0 {
		c.setDefaults()
		c.validate(&errs)
	}
	errs.sort()
	c.Warnings = errs.Warnings()
	if err := errs.Err(); err != nil {
		return nil, errs.Errors()
	}
	return c, nil
}

// Load reads and parses the config file at path; DefaultName loads the
// embedded default.
func Load(path string) (*Config, error) {
	if path == DefaultName {
		return Default(), nil
	}
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, src)
}

// Journey says who may see the journey of a request; see docs/journey.md.
type Journey struct {
	// Token, when set, is what a client sends in the Gatehouse-Trace
	// header to get its request's journey back. With none, a random token
	// is kept in the data directory (trace.token) for `gatehouse trace`.
	Token string `yaml:"token"`
	// ServerTiming adds a Server-Timing header to every response.
	ServerTiming bool `yaml:"server_timing"`
	// Keep is how many recent records the admin API keeps (default 200;
	// -1 keeps none).
	Keep int `yaml:"keep"`
}
