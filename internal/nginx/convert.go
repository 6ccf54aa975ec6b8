package nginx

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"gatehouse/internal/config"
)

// Options change how a config is converted.
type Options struct {
	// ACME turns certbot's certificates (/etc/letsencrypt/live/NAME/…)
	// into `tls: acme`, so gatehouse obtains and renews them itself,
	// instead of reading certbot's files.
	ACME bool
	// Email is the ACME account contact written with ACME.
	Email string
}

// Warning is an nginx directive that was not carried over as written.
// Covered warnings name directives gatehouse needs no setting for because
// it does the same by default (proxy_set_header Host $host, certbot's TLS
// options); the others are lost or changed in the conversion.
type Warning struct {
	Pos       Pos
	Directive string // the directive as written, shortened
	Msg       string
	Covered   bool
}

func (w Warning) String() string { return fmt.Sprintf("%s: %s: %s", w.Pos, w.Directive, w.Msg) }

// Convert reads the nginx config at path (and the files it includes) and
// returns an equivalent gatehouse YAML config. Every directive that was
// not carried over as written is both a Warning and a comment in the YAML,
// next to where it would have gone. err is set only when the nginx file
// cannot be read or parsed.
func Convert(path string, opts Options) ([]byte, []Warning, error) {
	tree, err := ParseFile(path)
	if err != nil {
		return nil, nil, err
	}
	y, warns := ConvertTree(path, tree, opts)
	return y, warns, nil
}

// ConvertTree converts directives already parsed from the file named path.
func ConvertTree(path string, tree []*Directive, opts Options) ([]byte, []Warning) {
	c := &conv{opts: opts, upstreams: map[string]*upstreamDef{}}
	c.collectUpstreams(tree, 0)
	c.level(tree, newScope(), 0)
	return c.render(path), c.warns
}

type conv struct {
	opts      Options
	warns     []Warning
	top       []string // comments for the top of the output
	upstreams map[string]*upstreamDef
	servers   []*srv

	listenHTTP, listenHTTPS []*listenAddrSrc
	serverOpts              []*yentry
	trusted                 []string
	accessLog               string
	accessLogPos            []Pos
	acmeUsed                bool
}

type listenAddrSrc struct {
	addr string
	pos  []Pos
}

// note records a warning about d and returns its comment line.
func (c *conv) note(to *[]string, d *Directive, covered bool, format string, args ...any) {
	w := Warning{Pos: d.Pos, Directive: dtext(d), Msg: fmt.Sprintf(format, args...), Covered: covered}
	c.warns = append(c.warns, w)
	*to = append(*to, w.String())
}

// dtext shows a directive briefly, as written.
func dtext(d *Directive) string {
	parts := []string{d.Name}
	for i, a := range d.Args {
		if d.Quoted[i] || a == "" || strings.ContainsAny(a, " \t;{}") {
			a = strconv.Quote(a)
		}
		parts = append(parts, a)
	}
	s := strings.Join(parts, " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	if d.IsBlock() {
		s += " {…}"
	}
	return s
}

// ---- inherited settings ---------------------------------------------------

type kv struct {
	k, v string
	d    *Directive // where it was written
}

// scope holds settings nginx inherits from http to server to location.
// Array-like directives (proxy_set_header, add_header, proxy_hide_header)
// follow nginx's rule: a level that has any of them inherits none.
type scope struct {
	setHdr     []kv
	removeHdr  []string
	hostMode   string
	hdrOwn     bool
	respAdd    []kv
	respOwn    bool
	respRemove []string
	hideOwn    bool

	maxBody      string
	noLog        bool // access_log off in a location (or one it is nested in)
	dial, header string
	idle         string
	ca           string
	root         string
	index        []string
	tryFiles     *Directive
	autoindex    bool
	cert, key    string
	certPos      Pos
	// guard is an allow/deny list or auth_basic gatehouse cannot check;
	// routes under it answer 403 rather than open the path to everyone.
	guard *Directive
	// certOwn and keyOwn tell a second ssl_certificate at the same level
	// (an RSA beside an ECDSA one) from an inherited one.
	certOwn, keyOwn bool
}

func newScope() scope { return scope{} }

func (s scope) child() scope {
	s.setHdr = s.setHdr[:len(s.setHdr):len(s.setHdr)]
	s.removeHdr = s.removeHdr[:len(s.removeHdr):len(s.removeHdr)]
	s.respAdd = s.respAdd[:len(s.respAdd):len(s.respAdd)]
	s.respRemove = s.respRemove[:len(s.respRemove):len(s.respRemove)]
	s.hdrOwn, s.respOwn, s.hideOwn, s.certOwn, s.keyOwn = false, false, false, false, false
	return s
}

// ---- messages shared by many directives -----------------------------------

const (
	msgTLS        = "covered by gatehouse's TLS defaults (TLS 1.2 and 1.3, modern ECDHE ciphers chosen by Go, session resumption)"
	msgTuning     = "covered: performance tuning gatehouse does itself"
	msgProcess    = "not carried over: gatehouse is one process that manages its own workers, connections and user"
	msgMime       = "covered: gatehouse sets Content-Type from file extensions"
	msgGzip       = "not carried over: gatehouse does not compress responses (backends may, and Content-Encoding passes through)"
	msgWS         = "covered: gatehouse proxies WebSocket upgrades by itself"
	msgProxyHdr   = "covered: gatehouse sends the client's Host, X-Real-IP, X-Forwarded-For/-Proto/-Host by default"
	msgUnknown    = "not carried over: gatehouse import does not know this directive; check whether the site needs it"
	msgErrorLog   = "not carried over: gatehouse logs errors to stderr (log.level sets how much)"
	msgErrorPage  = "not carried over: gatehouse answers errors with its own short pages"
	msgRateLimit  = "not carried over: gatehouse has no per-request rate limits in its config"
	msgCache      = "not carried over: gatehouse does not cache responses"
	msgBuffering  = "not carried over: gatehouse streams bodies and sizes its buffers itself"
	msgGuard      = "not carried over: gatehouse cannot check per-path allow/deny lists or basic auth (its firewall filters by port and source), so the routes under it answer 403 instead of opening them to everyone; check access in the backend and restore the route"
	msgHeadersNot = "not carried over: only proxy routes can change response headers"
)

// common handles directives valid at http, server and location level. It
// reports false for directives it does not know.
func (c *conv) common(d *Directive, sc *scope, notes *[]string, depth int) bool {
	name := d.Name
	switch {
	case name == "proxy_set_header":
		c.proxySetHeader(d, sc, notes)
	case name == "add_header":
		if len(d.Args) < 2 {
			c.note(notes, d, false, "not carried over: add_header needs a name and a value")
			break
		}
		v, err := expand(d.Args[1], "")
		if err != nil {
			c.note(notes, d, false, "not carried over: %v", err)
			break
		}
		if why := config.ProxyOwned(d.Args[0], false); why != "" {
			c.note(notes, d, false, "not carried over: %s", why)
			break
		}
		if !sc.respOwn {
			sc.respAdd, sc.respOwn = nil, true
		}
		sc.respAdd = append(sc.respAdd, kv{d.Args[0], v, d})
	case name == "proxy_hide_header":
		if why := config.ProxyOwned(d.Arg(0), false); why != "" {
			c.note(notes, d, false, "not carried over: %s", why)
			break
		}
		if !sc.hideOwn {
			sc.respRemove, sc.hideOwn = nil, true
		}
		sc.respRemove = append(sc.respRemove, d.Arg(0))
	case name == "client_max_body_size":
		s, n, err := nginxSize(d.Arg(0))
		switch {
		case err != nil:
			c.note(notes, d, false, "not carried over: %v", err)
		case n == 0:
			sc.maxBody = ""
		default:
			sc.maxBody = s
		}
	case name == "proxy_connect_timeout", name == "proxy_read_timeout", name == "grpc_connect_timeout", name == "grpc_read_timeout":
		t, err := nginxTime(d.Arg(0))
		if err != nil {
			c.note(notes, d, false, "not carried over: %v", err)
			break
		}
		if strings.HasSuffix(name, "connect_timeout") {
			sc.dial = goDuration(t)
		} else {
			sc.header = goDuration(t)
			c.note(notes, d, true, "carried over as header_timeout: nginx's read timeout bounds each wait between reads, gatehouse's bounds the wait for response headers")
		}
	case name == "proxy_send_timeout", name == "grpc_send_timeout":
		c.note(notes, d, false, "not carried over: gatehouse bounds the upstream exchange with dial_timeout and header_timeout only")
	case name == "proxy_http_version":
		c.note(notes, d, true, "covered: gatehouse speaks HTTP/1.1 with keep-alive to http:// upstreams")
	case name == "proxy_ssl_trusted_certificate":
		sc.ca = d.Arg(0)
	case name == "proxy_ssl_server_name", name == "proxy_ssl_verify" && d.Arg(0) == "on":
		c.note(notes, d, true, "covered: gatehouse sends SNI and verifies https:// upstreams")
	case name == "proxy_ssl_verify":
		c.note(notes, d, false, "not carried over: gatehouse always verifies https:// upstreams; give their CA with proxy.ca")
	case strings.HasPrefix(name, "proxy_cache"), name == "proxy_no_cache", strings.HasPrefix(name, "fastcgi_cache"):
		c.note(notes, d, false, msgCache)
	case name == "proxy_buffering", name == "proxy_buffers", name == "proxy_buffer_size", name == "proxy_busy_buffers_size",
		name == "proxy_request_buffering", name == "proxy_max_temp_file_size", name == "proxy_temp_file_write_size",
		name == "client_body_buffer_size", name == "proxy_temp_path", name == "client_body_temp_path":
		c.note(notes, d, true, msgBuffering)
	case name == "proxy_redirect":
		if d.Arg(0) == "default" || d.Arg(0) == "off" {
			c.note(notes, d, true, "covered: gatehouse does not rewrite Location headers from upstreams")
		} else {
			c.note(notes, d, false, "not carried over: gatehouse does not rewrite Location headers from upstreams")
		}
	case name == "root":
		sc.root = d.Arg(0)
		if !strings.HasPrefix(sc.root, "/") {
			c.note(notes, d, false, "relative root %q is relative to nginx's prefix; gatehouse reads it relative to its working directory: write an absolute path", sc.root)
		}
	case name == "index":
		sc.index = d.Args
	case name == "try_files":
		sc.tryFiles = d
	case name == "autoindex":
		sc.autoindex = d.Arg(0) == "on"
	case name == "autoindex_exact_size", name == "autoindex_localtime", name == "autoindex_format":
		c.note(notes, d, false, "not carried over: gatehouse's directory listing has one format")
	case name == "ssl_certificate":
		if sc.certOwn {
			c.note(notes, d, false, "not carried over: gatehouse takes one certificate per site (the first one, %s)", sc.cert)
			break
		}
		sc.cert, sc.certPos, sc.certOwn = d.Arg(0), d.Pos, true
	case name == "ssl_certificate_key":
		if sc.keyOwn {
			c.note(notes, d, false, "not carried over: gatehouse takes one certificate per site (the first one, %s)", sc.key)
			break
		}
		sc.key, sc.keyOwn = d.Arg(0), true
	case name == "ssl_dhparam":
		c.note(notes, d, true, "covered: gatehouse uses ECDHE key exchange only, which needs no DH parameters")
	case name == "ssl_protocols", name == "ssl_ciphers", name == "ssl_prefer_server_ciphers", name == "ssl_session_cache",
		name == "ssl_session_timeout", name == "ssl_session_tickets", name == "ssl_ecdh_curve",
		name == "ssl_conf_command", name == "ssl_buffer_size", name == "ssl_ecdh_curves":
		c.note(notes, d, true, msgTLS)
	case name == "ssl_stapling", name == "ssl_stapling_verify", name == "ssl_trusted_certificate":
		c.note(notes, d, false, "not carried over: OCSP stapling is left to gatehouse's certificate manager")
	case name == "http2":
		c.note(notes, d, true, "covered: gatehouse serves HTTP/2 on every HTTPS listener")
	case name == "http3", name == "quic_retry", name == "ssl_early_data":
		c.note(notes, d, false, "not carried over: gatehouse serves HTTP/1.1 and HTTP/2 over TCP")
	case name == "gzip", strings.HasPrefix(name, "gzip_"), name == "brotli", strings.HasPrefix(name, "brotli_"):
		c.note(notes, d, false, msgGzip)
	case name == "sendfile", name == "tcp_nopush", name == "tcp_nodelay", name == "types_hash_max_size", name == "types_hash_bucket_size",
		name == "server_names_hash_bucket_size", name == "server_names_hash_max_size", name == "keepalive_requests",
		name == "reset_timedout_connection", strings.HasPrefix(name, "open_file_cache"), name == "output_buffers",
		name == "aio", name == "directio", name == "lingering_close", name == "lingering_time", name == "lingering_timeout",
		name == "variables_hash_max_size", name == "variables_hash_bucket_size", name == "map_hash_bucket_size",
		name == "proxy_headers_hash_max_size", name == "proxy_headers_hash_bucket_size", name == "client_header_buffer_size":
		c.note(notes, d, true, msgTuning)
	case name == "types", name == "default_type", name == "charset", name == "charset_types", name == "source_charset":
		c.note(notes, d, true, msgMime)
	case name == "server_tokens":
		c.note(notes, d, true, "covered: gatehouse does not announce its name or version")
	case name == "log_format":
		c.note(notes, d, false, "not carried over: gatehouse writes its own access log format (log.format: json or text)")
	case name == "log_not_found", name == "log_subrequest", name == "open_log_file_cache":
		c.note(notes, d, false, "not carried over: gatehouse logs every request the same way")
	case name == "error_log":
		c.note(notes, d, false, msgErrorLog)
	case name == "error_page", name == "proxy_intercept_errors", name == "recursive_error_pages":
		c.note(notes, d, false, msgErrorPage)
	case strings.HasPrefix(name, "limit_req"), strings.HasPrefix(name, "limit_conn"), name == "limit_rate", name == "limit_rate_after":
		c.note(notes, d, false, msgRateLimit)
	case name == "allow", name == "deny", name == "auth_basic", name == "auth_basic_user_file", name == "auth_request":
		if (name == "auth_basic" || name == "auth_request") && d.Arg(0) == "off" {
			sc.guard = nil
			break
		}
		if name == "deny" && d.Arg(0) == "all" && sc.guard == nil {
			sc.guard = d
			break // a plain deny all is carried over as 403
		}
		if sc.guard == nil || sc.guard.Name == "deny" {
			sc.guard = d
		}
		c.note(notes, d, false, msgGuard)
	case name == "expires", name == "etag", name == "if_modified_since":
		c.note(notes, d, false, "not carried over: gatehouse sends Last-Modified and ETag for static files but no Expires or Cache-Control")
	case name == "resolver", name == "resolver_timeout":
		c.note(notes, d, true, "covered: gatehouse resolves upstream names with the system resolver")
	case name == "ssi", name == "sub_filter", name == "sub_filter_once", name == "sub_filter_types", name == "addition_types":
		c.note(notes, d, false, "not carried over: gatehouse does not rewrite response bodies")
	case name == "client_body_timeout", name == "send_timeout":
		c.note(notes, d, false, "not carried over: gatehouse bounds reading request headers (server.read_header_timeout) and idle connections (server.idle_timeout)")
	case name == "underscores_in_headers", name == "ignore_invalid_headers", name == "merge_slashes", name == "msie_padding", name == "msie_refresh":
		c.note(notes, d, false, "not carried over: gatehouse follows Go's net/http header and path rules")
	case name == "absolute_redirect", name == "server_name_in_redirect", name == "port_in_redirect":
		c.note(notes, d, false, "not carried over: gatehouse writes redirect targets as configured")
	default:
		return false
	}
	return true
}

// proxySetHeader maps one proxy_set_header into the scope: the headers
// gatehouse sends anyway are noted as covered.
func (c *conv) proxySetHeader(d *Directive, sc *scope, notes *[]string) {
	if len(d.Args) != 2 {
		c.note(notes, d, false, "not carried over: proxy_set_header needs a name and a value")
		return
	}
	name, val := d.Args[0], d.Args[1]
	lname := strings.ToLower(name)
	own := func() {
		if !sc.hdrOwn {
			sc.setHdr, sc.removeHdr, sc.hostMode, sc.hdrOwn = nil, nil, "", true
		}
	}
	switch {
	case lname == "host" && (val == "$host" || val == "$http_host" || val == "$host:$server_port"):
		own()
		sc.hostMode = "original"
		c.note(notes, d, true, msgProxyHdr)
	case lname == "x-real-ip" && val == "$remote_addr",
		lname == "x-forwarded-for" && (val == "$proxy_add_x_forwarded_for" || val == "$remote_addr"),
		lname == "x-forwarded-proto" && val == "$scheme",
		lname == "x-forwarded-host" && (val == "$host" || val == "$http_host"):
		own()
		c.note(notes, d, true, msgProxyHdr)
	case lname == "upgrade" && val == "$http_upgrade",
		lname == "connection" && (strings.EqualFold(val, "upgrade") || val == "$connection_upgrade" || val == "$http_connection"):
		own()
		c.note(notes, d, true, msgWS)
	case lname == "connection" && val == "":
		own()
		c.note(notes, d, true, "covered: gatehouse keeps upstream connections alive by itself")
	case lname == "host" && val == "$proxy_host":
		own()
		sc.hostMode = "upstream"
	case lname == "host" && !hasVar(val):
		own()
		sc.hostMode = val
	case config.ProxyOwned(name, true) != "":
		c.note(notes, d, false, "not carried over: %s", config.ProxyOwned(name, true))
	case val == "":
		own()
		sc.removeHdr = append(sc.removeHdr, name)
	default:
		v, err := expand(val, "")
		if err != nil {
			c.note(notes, d, false, "not carried over: %v", err)
			return
		}
		own()
		sc.setHdr = append(sc.setHdr, kv{name, v, d})
	}
}

// ---- upstream blocks ---------------------------------------------------

type upstreamDef struct {
	servers []string // host:port
	policy  string
	maxIdle int
	idle    string
}

func (c *conv) collectUpstreams(ds []*Directive, depth int) {
	for _, d := range ds {
		switch {
		case d.Name == "upstream" && d.IsBlock():
			c.upstream(d)
		case d.Name == "http" && d.IsBlock() && depth == 0:
			c.collectUpstreams(d.Block, depth+1)
		}
	}
}

func (c *conv) upstream(d *Directive) {
	u := &upstreamDef{}
	name := d.Arg(0)
	c.upstreams[name] = u
	for _, s := range d.Block {
		switch s.Name {
		case "server":
			addr := s.Arg(0)
			if len(s.Args) == 0 {
				c.note(&c.top, s, false, "not carried over: server needs an address")
				continue
			}
			if strings.HasPrefix(addr, "unix:") {
				c.note(&c.top, s, false, "not carried over: gatehouse proxies to TCP addresses, not unix sockets")
				continue
			}
			skip := false
			for _, p := range s.Args[1:] {
				k, v, _ := strings.Cut(p, "=")
				switch k {
				case "weight":
					if v != "1" {
						c.note(&c.top, s, false, "%s not carried over: gatehouse spreads requests evenly over upstream %s", p, name)
					}
				case "max_fails", "fail_timeout":
					c.note(&c.top, s, true, "%s covered: gatehouse passes over an upstream that refuses connections for 10s", p)
				case "backup":
					c.note(&c.top, s, false, "not carried over: gatehouse has no backup servers; this one is left out of upstream %s", name)
					skip = true
				case "down":
					c.note(&c.top, s, true, "left out of upstream %s, as nginx does", name)
					skip = true
				default:
					c.note(&c.top, s, false, "%s not carried over: gatehouse import does not know this server parameter", p)
				}
			}
			if !skip {
				u.servers = append(u.servers, addr)
			}
		case "least_conn":
			u.policy = "least_conn"
		case "ip_hash":
			u.policy = "ip_hash"
		case "keepalive":
			n, err := strconv.Atoi(s.Arg(0))
			if err != nil || n < 1 {
				c.note(&c.top, s, false, "not carried over: %q is not a connection count", s.Arg(0))
				continue
			}
			u.maxIdle = n
		case "keepalive_timeout":
			t, err := nginxTime(s.Arg(0))
			if err != nil {
				c.note(&c.top, s, false, "not carried over: %v", err)
				continue
			}
			u.idle = goDuration(t)
		case "zone":
			c.note(&c.top, s, true, "covered: gatehouse shares upstream state between its goroutines by itself")
		case "keepalive_requests", "keepalive_time":
			c.note(&c.top, s, true, msgTuning)
		case "hash", "random", "sticky":
			c.note(&c.top, s, false, "not carried over: gatehouse balances with round_robin, least_conn, first or ip_hash; round_robin is used")
		default:
			c.note(&c.top, s, false, msgUnknown)
		}
	}
	if len(u.servers) == 0 {
		c.note(&c.top, d, false, "upstream %s has no usable server: routes that proxy to it are left out", name)
	}
}

// ---- http and main level -----------------------------------------------

// level handles the main and http contexts (a sites-enabled file is read
// as http context too).
func (c *conv) level(ds []*Directive, sc scope, depth int) {
	for _, d := range ds {
		switch d.Name {
		case "http":
			if depth == 0 && d.IsBlock() {
				c.level(d.Block, sc.child(), depth+1)
				continue
			}
			c.note(&c.top, d, false, msgUnknown)
		case "server":
			if d.IsBlock() {
				c.server(d, sc)
				continue
			}
			c.note(&c.top, d, false, msgUnknown)
		case "upstream":
			// read by collectUpstreams
		case "include":
			c.include(d, &c.top)
		case "events":
			var names []string
			for _, e := range d.Block {
				names = append(names, e.Name)
			}
			if len(names) == 0 {
				c.note(&c.top, d, false, msgProcess)
				continue
			}
			c.note(&c.top, d, false, "%s (%s)", msgProcess, strings.Join(names, ", "))
		case "user", "worker_processes", "pid", "worker_rlimit_nofile", "worker_connections", "load_module", "daemon",
			"master_process", "pcre_jit", "thread_pool", "env", "worker_cpu_affinity", "timer_resolution", "worker_priority",
			"worker_shutdown_timeout", "working_directory", "lock_file":
			c.note(&c.top, d, false, msgProcess)
		case "stream", "mail":
			c.note(&c.top, d, false, "not carried over: gatehouse proxies HTTP only; %s blocks are not converted", d.Name)
		case "map":
			if d.Arg(0) == "$http_upgrade" {
				c.note(&c.top, d, true, msgWS)
			} else {
				c.note(&c.top, d, false, "not carried over: gatehouse has no variables; routes that use %s lose it", d.Arg(1))
			}
		case "geo", "split_clients", "geoip_country", "geoip_city", "geoip2":
			c.note(&c.top, d, false, "not carried over: gatehouse has no variables")
		case "keepalive_timeout":
			c.serverDuration(d, "idle_timeout")
		case "client_header_timeout":
			c.serverDuration(d, "read_header_timeout")
		case "large_client_header_buffers":
			s, n, err := nginxSize(d.Arg(1))
			cnt, err2 := strconv.Atoi(d.Arg(0))
			if err != nil || err2 != nil || cnt < 1 {
				c.note(&c.top, d, false, "not carried over: expected a count and a size")
				continue
			}
			total := int64(cnt) * n
			_ = s
			v, _, _ := nginxSize(strconv.FormatInt(total>>10, 10) + "k")
			if total%1024 != 0 {
				v = strconv.FormatInt(total, 10)
			}
			c.serverOpts = append(c.serverOpts, &yentry{key: "max_header_bytes", val: str(v), line: fmt.Sprintf("%s: %s (count × size)", d.Pos, dtext(d))})
		case "set_real_ip_from":
			c.trusted = append(c.trusted, d.Arg(0))
		case "real_ip_header":
			if !strings.EqualFold(d.Arg(0), "X-Forwarded-For") {
				c.note(&c.top, d, false, "not carried over: gatehouse reads the client address from X-Forwarded-For only")
			}
		case "real_ip_recursive":
			c.note(&c.top, d, true, "covered: gatehouse walks X-Forwarded-For from the right, skipping trusted proxies")
		case "access_log":
			c.accessLogDirective(d, &c.top)
		default:
			if !c.common(d, &sc, &c.top, depth) {
				c.note(&c.top, d, false, msgUnknown)
			}
		}
	}
}

func (c *conv) serverDuration(d *Directive, key string) {
	t, err := nginxTime(d.Arg(0))
	if err != nil {
		c.note(&c.top, d, false, "not carried over: %v", err)
		return
	}
	for _, e := range c.serverOpts {
		if e.key == key {
			c.note(&c.top, d, false, "not carried over: gatehouse has one %s for all sites", key)
			return
		}
	}
	if len(d.Args) > 1 {
		c.note(&c.top, d, false, "the second value (the Keep-Alive header) is not carried over")
	}
	c.serverOpts = append(c.serverOpts, &yentry{key: key, val: raw(goDuration(t)), line: fmt.Sprintf("%s: %s", d.Pos, dtext(d))})
}

func (c *conv) include(d *Directive, notes *[]string) {
	if isCertbotOptions(d.Arg(0)) {
		c.note(notes, d, true, msgTLS)
	}
	// Other includes were expanded in place by the parser.
}

// levelNoLog is whether routes at a level stay out of the access log, from
// its access_log directives and what it inherits: in nginx, off cancels
// every access_log of its level wherever it stands, and a log file at a
// level where none is off logs again.
func levelNoLog(block []*Directive, inherited bool) bool {
	file := false
	for _, x := range block {
		if x.Name != "access_log" {
			continue
		}
		if x.Arg(0) == "off" {
			return true
		}
		file = true
	}
	return inherited && !file
}

func (c *conv) accessLogDirective(d *Directive, notes *[]string) {
	dest := d.Arg(0)
	if strings.HasPrefix(dest, "syslog:") {
		c.note(notes, d, false, "not carried over: gatehouse writes its access log to a file, stdout or stderr")
		return
	}
	if dest == "/dev/stdout" {
		dest = "stdout"
	} else if dest == "/dev/stderr" {
		dest = "stderr"
	}
	if c.accessLog != "" && c.accessLog != dest {
		c.note(notes, d, false, "not carried over: gatehouse has one access log for all sites (log.access: %s)", c.accessLog)
		return
	}
	c.accessLog = dest
	c.accessLogPos = append(c.accessLogPos, d.Pos)
	if len(d.Args) > 1 {
		c.note(notes, d, false, "format %s and buffering options not carried over: gatehouse writes its own format (log.format: json or text)", d.Arg(1))
	}
}

// ---- redirects and fixed answers ------------------------------------------

type route struct {
	notes    []string
	path     string
	exact    bool
	final    bool
	regex    string
	strip    bool
	maxBody  string
	noLog    bool
	proxy    *proxyOut
	static   *staticOut
	redirect *redirectOut
	respond  *respondOut
	pos      Pos
}

type proxyOut struct {
	to                 []string
	host, policy       string
	dial, header, idle string
	maxIdle            int
	set                []kv
	remove             []string
	respAdd            []kv
	respRemove         []string
	ca                 string
}

type staticOut struct {
	root     string
	index    []string
	spa      bool
	fallback string
	browse   bool
}

type redirectOut struct {
	to     string
	status int
}

type respondOut struct {
	body   string
	status int
}

func (r *route) handled() bool {
	return r.proxy != nil || r.static != nil || r.redirect != nil || r.respond != nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") || strings.HasPrefix(s, "$scheme://")
}

// returnTo converts a return directive into a redirect or a fixed answer.
func (c *conv) returnTo(d *Directive, r *route, serverName string) {
	code, err := strconv.Atoi(d.Arg(0))
	text := d.Arg(1)
	if err != nil {
		if !isURL(d.Arg(0)) || len(d.Args) != 1 {
			c.note(&r.notes, d, false, "not carried over: expected a status code or a URL")
			return
		}
		code, text = 302, d.Arg(0)
	}
	if code < 100 || code > 999 {
		c.note(&r.notes, d, false, "not carried over: %d is not a status code", code)
		return
	}
	switch code {
	case 301, 302, 303, 307, 308:
		if len(d.Args) < 2 && text == "" {
			r.respond = &respondOut{status: code}
			return
		}
		to, err := expand(text, serverName)
		if err != nil {
			c.note(&r.notes, d, false, "not carried over: %v", err)
			return
		}
		r.redirect = &redirectOut{to: to, status: code}
	case 444:
		c.note(&r.notes, d, false, "changed: gatehouse cannot close a connection without answering; it answers 404")
		r.respond = &respondOut{status: 404}
	default:
		if code > 599 {
			c.note(&r.notes, d, false, "not carried over: %d is not a status code", code)
			return
		}
		if hasVar(text) {
			c.note(&r.notes, d, false, "changed: gatehouse sends this body as written, without filling in variables")
		}
		r.respond = &respondOut{status: code, body: text}
	}
}

var (
	// ^/old/(.*)$ and ^/old(/.*)$: a prefix and the rest captured as $1.
	prefixCaptureRE = regexp.MustCompile(`^\^(/[A-Za-z0-9._~/-]*)(\(\.\*\)|\(/\.\*\))\$?$`)
	wholePathRE     = map[string]bool{"^": true, "^(.*)$": true, "^(.*)": true, "(.*)": true, "^/(.*)$": false, ".*": true, "^.*$": true}
)

// rewriteTo converts the rewrite forms gatehouse can express: a redirect of
// every path, a redirect of a prefix keeping the rest of the path, and an
// internal rewrite that strips a prefix. It reports false for other forms.
func (c *conv) rewriteTo(d *Directive, r *route, serverName string, inLocation bool) bool {
	if len(d.Args) < 2 {
		return false
	}
	re, repl, flag := d.Args[0], d.Args[1], d.Arg(2)
	redirect := flag == "permanent" || flag == "redirect" || isURL(repl)
	status := 302
	if flag == "permanent" {
		status = 301
	}
	keepArgs := !strings.HasSuffix(repl, "?")
	repl = strings.TrimSuffix(repl, "?")
	rest := "{path}"
	if keepArgs {
		rest = "{uri}"
	}
	if redirect {
		if wholePathRE[re] {
			target := strings.ReplaceAll(repl, "$1", "$uri")
			if re == "^" || re == ".*" || re == "^.*$" {
				if strings.Contains(repl, "$1") {
					return false
				}
			}
			to, err := expand(target, serverName)
			if err != nil {
				return false
			}
			if keepArgs && strings.Contains(repl, "$1") {
				to = strings.Replace(to, "{path}", "{uri}", 1)
			}
			if strings.HasSuffix(to, "{uri}") && !keepArgs {
				to = strings.TrimSuffix(to, "{uri}") + "{path}"
			}
			r.redirect = &redirectOut{to: to, status: status}
			return true
		}
		if m := prefixCaptureRE.FindStringSubmatch(re); m != nil && strings.HasSuffix(repl, "$1") {
			prefix, base := m[1], strings.TrimSuffix(repl, "$1")
			if m[2] == "(.*)" {
				if !strings.HasSuffix(prefix, "/") || !strings.HasSuffix(base, "/") {
					return false
				}
				base = strings.TrimSuffix(base, "/")
			}
			to, err := expand(base, serverName)
			if err != nil {
				return false
			}
			r.path, r.strip = strings.TrimSuffix(prefix, "/")+"/", true
			if m[2] == "(/.*)" {
				r.path = prefix
			}
			r.redirect = &redirectOut{to: to + rest, status: status}
			return true
		}
		if strings.HasPrefix(re, "^/") && strings.HasSuffix(re, "$") && regexp.QuoteMeta(unquoteRE(re[1:len(re)-1])) == re[1:len(re)-1] && !hasVar(repl) {
			r.path, r.exact = unquoteRE(re[1:len(re)-1]), true
			r.redirect = &redirectOut{to: repl, status: status}
			return true
		}
		return false
	}
	if !inLocation || (flag != "break" && flag != "last" && flag != "") {
		return false
	}
	// An internal rewrite that drops the location's prefix.
	m := prefixCaptureRE.FindStringSubmatch(re)
	if m == nil {
		return false
	}
	if (m[2] == "(.*)" && repl == "/$1" && strings.HasSuffix(m[1], "/")) || (m[2] == "(/.*)" && repl == "$1") {
		want := strings.TrimSuffix(m[1], "/")
		if r.regex == "" && strings.TrimSuffix(r.path, "/") == want {
			r.strip = true
			return true
		}
	}
	return false
}

func unquoteRE(s string) string { return strings.ReplaceAll(s, `\.`, ".") }

// ---- server blocks -----------------------------------------------------

type srv struct {
	pos           Pos
	notes         []string
	hosts         []string
	catchAll      bool
	plain, ssl    bool
	defaultServer *Directive
	tls           *ymap // nil for tls: off
	tlsMode       string
	tlsNotes      []string
	routes        []*route
	whole         *route // a server-level return: answers everything
	hostRedirect  map[string]*hostRedir
	hostOrder     []string
	wholeDir      *Directive // the directive s.whole came from
	plainListen   *Directive
	schemeIdiom   bool
	sc            scope
}

func (c *conv) server(d *Directive, parent scope) {
	s := &srv{pos: d.Pos, hostRedirect: map[string]*hostRedir{}}
	sc := parent.child()
	sc.noLog = levelNoLog(d.Block, sc.noLog)
	var locations []*Directive
	var sslOn, haveListen, sawName bool
	first := func() string {
		if len(s.hosts) > 0 {
			return s.hosts[0]
		}
		return ""
	}
	// server_name may come after return or if; read names first.
	for _, x := range d.Block {
		if x.Name == "server_name" {
			sawName = true
			c.serverNames(x, s)
		}
	}
	if !sawName {
		s.catchAll = true
	}
	for _, x := range d.Block {
		switch x.Name {
		case "server_name":
		case "listen":
			haveListen = true
			c.listen(x, s)
		case "ssl":
			sslOn = x.Arg(0) == "on"
			c.note(&s.notes, x, true, "carried over: `ssl on` is read as `listen … ssl`")
		case "location":
			locations = append(locations, x)
		case "if":
			c.serverIf(x, s, first())
		case "return":
			if s.whole != nil {
				c.note(&s.notes, x, false, "never reached in nginx either: an earlier return answers first")
				continue
			}
			r := &route{path: "/", noLog: sc.noLog, pos: x.Pos}
			c.returnTo(x, r, first())
			s.notes = append(s.notes, r.notes...)
			if r.handled() {
				r.notes = nil
				s.whole, s.wholeDir = r, x
			}
		case "rewrite":
			if s.whole != nil {
				c.note(&s.notes, x, false, "never reached: an earlier return answers first")
				continue
			}
			r := &route{path: "/", noLog: sc.noLog, pos: x.Pos}
			if !c.rewriteTo(x, r, first(), false) {
				c.note(&s.notes, x, false, "not carried over: gatehouse routes without rewriting; only redirects of all paths, of a prefix, or of one exact path convert")
				continue
			}
			if r.path == "/" && !r.exact {
				s.whole, s.wholeDir = r, x
			} else {
				s.routes = append(s.routes, r)
			}
		case "include":
			c.include(x, &s.tlsNotes)
		case "access_log":
			if !sc.noLog { // access_log off here leaves the server's routes out of gatehouse's one log
				c.accessLogDirective(x, &s.notes)
			}
		case "ssl_certificate", "ssl_certificate_key", "ssl_protocols", "ssl_ciphers", "ssl_prefer_server_ciphers",
			"ssl_session_cache", "ssl_session_timeout", "ssl_session_tickets", "ssl_dhparam", "ssl_ecdh_curve",
			"ssl_stapling", "ssl_stapling_verify", "ssl_trusted_certificate", "http2":
			c.common(x, &sc, &s.tlsNotes, 1)
		default:
			if !c.common(x, &sc, &s.notes, 1) {
				c.note(&s.notes, x, false, msgUnknown)
			}
		}
	}
	if !haveListen {
		s.plain = true
		c.addListen(&c.listenHTTP, ":80", d.Pos)
	}
	if sslOn {
		s.ssl, s.plain = true, false
	}
	s.sc = sc
	for _, l := range locations {
		c.location(l, sc, s, nil)
	}
	if s.whole != nil {
		for _, r := range s.routes {
			c.note(&s.notes, &Directive{Name: "location", Args: []string{r.path}, Quoted: []bool{false}, Pos: r.pos}, false,
				"never reached in nginx either: the server-level %s at line %d answers every request first", "return", s.whole.pos.Line)
		}
		s.routes = []*route{s.whole}
	} else if sc.root != "" || sc.tryFiles != nil {
		hasRoot := false
		for _, r := range s.routes {
			hasRoot = hasRoot || (r.path == "/" && !r.exact && r.regex == "")
		}
		if !hasRoot {
			r := &route{path: "/", pos: d.Pos}
			c.staticRoute(r, sc, &s.notes)
			if r.handled() {
				s.routes = append(s.routes, r)
			}
		}
	}
	if s.ssl {
		c.serverTLS(s, sc)
	}
	c.servers = append(c.servers, s)
}

func (c *conv) serverNames(d *Directive, s *srv) {
	for _, n := range d.Args {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		switch {
		case n == "_" || n == "":
			s.catchAll = true
		case strings.HasPrefix(n, "~"):
			c.note(&s.notes, d, false, "regex name %s not carried over: gatehouse hosts are exact names or *.example.org wildcards", n)
		case strings.HasPrefix(n, "$"):
			c.note(&s.notes, d, false, "%s not carried over: gatehouse hosts are written out", n)
		case strings.HasPrefix(n, "."):
			s.hosts = appendNew(s.hosts, n[1:], "*"+n)
		case strings.HasSuffix(n, ".*"):
			c.note(&s.notes, d, false, "%s not carried over: gatehouse wildcards replace the first label only (*.example.org)", n)
		case strings.HasPrefix(n, "*.") && strings.Count(n, "*") == 1:
			s.hosts = appendNew(s.hosts, n)
		case strings.Contains(n, "*"):
			c.note(&s.notes, d, false, "%s not carried over: gatehouse wildcards replace the first label only (*.example.org)", n)
		default:
			s.hosts = appendNew(s.hosts, n)
		}
	}
}

func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		found := false
		for _, x := range list {
			found = found || x == it
		}
		if !found {
			list = append(list, it)
		}
	}
	return list
}

func (c *conv) addListen(set *[]*listenAddrSrc, addr string, p Pos) {
	for _, a := range *set {
		if a.addr == addr {
			a.pos = append(a.pos, p)
			return
		}
	}
	*set = append(*set, &listenAddrSrc{addr: addr, pos: []Pos{p}})
}

func (c *conv) listen(d *Directive, s *srv) {
	if len(d.Args) == 0 {
		c.note(&s.notes, d, false, "not carried over: listen needs an address or port")
		return
	}
	addr, err := listenAddr(d.Arg(0))
	if err != nil {
		c.note(&s.notes, d, false, "not carried over: %v", err)
		return
	}
	ssl := false
	for _, p := range d.Args[1:] {
		k, _, _ := strings.Cut(p, "=")
		switch k {
		case "ssl":
			ssl = true
		case "http2":
			c.note(&s.notes, d, true, "http2 covered: gatehouse serves HTTP/2 on every HTTPS listener")
		case "default_server", "default":
			s.defaultServer = d
		case "ipv6only", "reuseport", "backlog", "deferred", "fastopen", "so_keepalive", "rcvbuf", "sndbuf", "bind", "accept_filter", "setfib":
			// Socket tuning gatehouse chooses itself.
		case "proxy_protocol":
			c.note(&s.notes, d, false, "proxy_protocol not carried over: gatehouse reads the client address from the TCP peer (or X-Forwarded-For from server.trusted_proxies)")
		case "quic":
			c.note(&s.notes, d, false, "quic not carried over: gatehouse serves HTTP/1.1 and HTTP/2 over TCP")
			return
		default:
			c.note(&s.notes, d, false, "parameter %s not carried over: gatehouse import does not know it", p)
		}
	}
	if ssl {
		s.ssl = true
	} else if s.plainListen == nil {
		s.plainListen = d
	}
	if ssl {
		c.addListen(&c.listenHTTPS, addr, d.Pos)
	} else {
		s.plain = true
		c.addListen(&c.listenHTTP, addr, d.Pos)
	}
}

var certbotRE = regexp.MustCompile(`^/etc/letsencrypt/live/[^/]+/(fullchain|cert|chain|privkey)\.pem$`)

func (c *conv) serverTLS(s *srv, sc scope) {
	cert, key := sc.cert, sc.key
	switch {
	case cert == "" || key == "":
		if c.opts.ACME {
			s.tlsMode = "acme"
			c.acmeUsed = true
			return
		}
		s.tlsMode = "internal"
		c.note(&s.tlsNotes, &Directive{Name: "server", Pos: s.pos}, false, "no ssl_certificate and ssl_certificate_key: gatehouse's local CA issues the certificate (browsers do not trust it); import with --acme for Let's Encrypt")
	case hasVar(cert) || hasVar(key):
		s.tlsMode = "internal"
		c.note(&s.tlsNotes, &Directive{Name: "ssl_certificate", Args: []string{cert}, Quoted: []bool{false}, Pos: sc.certPos}, false,
			"not carried over: certificates chosen by variables have no equivalent; gatehouse's local CA issues one instead")
	case c.opts.ACME && certbotRE.MatchString(cert):
		s.tlsMode = "acme"
		c.acmeUsed = true
		c.note(&s.tlsNotes, &Directive{Name: "ssl_certificate", Args: []string{cert}, Quoted: []bool{false}, Pos: sc.certPos}, true,
			"replaced by tls: acme: gatehouse obtains and renews this certificate itself, as certbot did")
	default:
		m := &ymap{}
		m.add("cert", str(cert))
		m.add("key", str(key))
		s.tls = m
		if certbotRE.MatchString(cert) {
			s.tlsNotes = append(s.tlsNotes, "certbot keeps renewing these files; gatehouse rereads them on reload. Import with --acme to let gatehouse renew them itself.")
		}
	}
}

// serverIf converts the two if idioms: `if ($host = NAME) { return 301 …; }`
// (certbot's redirect to HTTPS, or a host redirect) and `if ($scheme = http)
// { return 301 https://…; }`. Anything else is warned.
func (c *conv) serverIf(d *Directive, s *srv, serverName string) {
	cond := ifCond(d.Args)
	if len(d.Block) == 1 && len(cond) == 3 {
		r := &route{path: "/"}
		b := d.Block[0]
		switch b.Name {
		case "return":
			c.returnTo(b, r, serverName)
		case "rewrite":
			c.rewriteTo(b, r, serverName, false)
		}
		v, op, val := cond[0], cond[1], cond[2]
		rd := r.redirect
		switch {
		case rd == nil:
		case v == "$host" && op == "=":
			h := strings.ToLower(val)
			if _, dup := s.hostRedirect[h]; !dup {
				s.hostOrder = append(s.hostOrder, h)
			}
			s.hostRedirect[h] = &hostRedir{rd: rd, d: d}
			return
		case (v == "$scheme" && (op == "=" && val == "http" || op == "!=" && val == "https")) ||
			(v == "$https" && op == "!=" && val == "on"):
			if strings.HasPrefix(rd.to, "https://") {
				s.schemeIdiom = true
				c.note(&s.notes, d, true, "covered: gatehouse redirects HTTP to HTTPS for every site with TLS (301 for GET and HEAD, 308 otherwise)")
				return
			}
		}
	}
	c.note(&s.notes, d, false, "not carried over: gatehouse has no conditions; only the if ($host = …) and if ($scheme = http) redirects convert")
}

// hostRedir is an `if ($host = NAME) { return … }` redirect; whether it
// is covered or becomes a site of its own is decided once all servers are
// read (see sites).
type hostRedir struct {
	rd *redirectOut
	d  *Directive
}

// ifCond splits an if condition into its words without the parentheses.
func ifCond(args []string) []string {
	var out []string
	for i, a := range args {
		if i == 0 {
			a = strings.TrimPrefix(a, "(")
		}
		if i == len(args)-1 {
			a = strings.TrimSuffix(a, ")")
		}
		if a != "" {
			out = append(out, a)
		}
	}
	return out
}

// ---- locations ---------------------------------------------------------

func (c *conv) location(d *Directive, parent scope, s *srv, outer *route) {
	r := &route{pos: d.Pos}
	mod, arg := "", d.Arg(0)
	if len(d.Args) == 2 {
		mod, arg = d.Args[0], d.Args[1]
	} else {
		for _, m := range []string{"^~", "~*", "=", "~"} {
			if strings.HasPrefix(arg, m) && len(arg) > len(m) {
				mod, arg = m, arg[len(m):]
				break
			}
		}
	}
	if len(d.Args) == 0 || len(d.Args) > 2 || !d.IsBlock() {
		c.note(&s.notes, d, false, "not carried over: expected location [modifier] path { … }")
		return
	}
	switch mod {
	case "":
		if strings.HasPrefix(arg, "@") {
			c.note(&s.notes, d, false, "named location not carried over: gatehouse routes by path only (try_files and error_page fallbacks to it are warned where they are used)")
			return
		}
		r.path = arg
	case "=":
		r.path, r.exact = arg, true
	case "^~":
		r.path, r.final = arg, true
	case "~", "~*":
		r.regex = arg
		if mod == "~*" {
			r.regex = "(?i)" + arg
		}
		if _, err := regexp.Compile(r.regex); err != nil {
			c.note(&s.notes, d, false, "not carried over: the regex does not compile as RE2 (%v); rewrite it without lookaround or backreferences", err)
			return
		}
	default:
		c.note(&s.notes, d, false, "not carried over: unknown location modifier %q", mod)
		return
	}
	if r.regex == "" && !strings.HasPrefix(r.path, "/") {
		c.note(&s.notes, d, false, "not carried over: gatehouse paths start with /")
		return
	}
	if outer != nil && r.regex != "" && outer.regex == "" && outer.path != "/" {
		c.note(&r.notes, d, false, "changed: nested in location %s, this regex location now also matches outside it (gatehouse routes are flat)", outer.path)
	}
	sc := parent.child()
	sc.noLog = levelNoLog(d.Block, sc.noLog)
	r.noLog = sc.noLog
	var proxyPass, ret *Directive
	var nested []*Directive
	var others []*Directive // handlers that lose to an earlier one
	for _, x := range d.Block {
		switch x.Name {
		case "proxy_pass", "grpc_pass":
			if proxyPass != nil {
				others = append(others, x)
				continue
			}
			proxyPass = x
		case "fastcgi_pass", "uwsgi_pass", "scgi_pass", "memcached_pass":
			c.note(&r.notes, x, false, "not carried over: gatehouse proxies HTTP, HTTP/2 and gRPC; run the application behind an HTTP server (for PHP: php-fpm behind a small HTTP server, or FrankenPHP)")
		case "return":
			if ret != nil || r.redirect != nil {
				c.note(&r.notes, x, false, "never reached in nginx either: an earlier return or rewrite answers first")
				continue
			}
			ret = x
		case "rewrite":
			if ret != nil || r.redirect != nil {
				c.note(&r.notes, x, false, "never reached in nginx either: an earlier return or rewrite answers first")
				continue
			}
			// Try on a copy: a prefix redirect for another path than this
			// location's becomes a route of its own.
			t := &route{path: r.path, exact: r.exact, regex: r.regex, noLog: r.noLog, pos: x.Pos}
			switch {
			case !c.rewriteTo(x, t, firstHost(s), true):
				c.note(&r.notes, x, false, "not carried over: gatehouse routes without rewriting; only prefix strips (rewrite ^/p/(.*)$ /$1 break) and redirects convert")
			case t.path != r.path || t.exact != r.exact:
				s.routes = append(s.routes, t)
			default:
				r.redirect, r.strip = t.redirect, t.strip
			}
		case "alias":
			sc.root = x.Arg(0)
			r.strip = true
		case "location":
			nested = append(nested, x)
		case "if":
			c.note(&r.notes, x, false, "not carried over: gatehouse has no conditions")
		case "limit_except":
			c.note(&r.notes, x, false, "not carried over: gatehouse routes do not filter by method")
		case "internal":
			c.note(&r.notes, x, false, "not carried over: gatehouse has no internal-only routes; this path is public")
		case "access_log":
			if !sc.noLog {
				c.note(&r.notes, x, false, "not carried over: gatehouse has one access log for all routes (a route can only stay out of it: access_log: false)")
			}
		case "include":
			c.include(x, &r.notes)
		default:
			if !c.common(x, &sc, &r.notes, 2) {
				c.note(&r.notes, x, false, msgUnknown)
			}
		}
	}
	switch {
	case r.redirect != nil:
	case ret != nil:
		c.returnTo(ret, r, firstHost(s))
	case sc.guard != nil:
		r.respond = &respondOut{status: 403}
	case proxyPass != nil:
		c.proxyRoute(proxyPass, r, sc)
	case sc.root != "" || sc.tryFiles != nil:
		c.staticRoute(r, sc, &r.notes)
	}
	for _, x := range others {
		c.note(&r.notes, x, false, "not carried over: a route has one handler")
	}
	if r.handled() && (r.redirect != nil || r.respond != nil || r.static != nil) {
		for _, h := range sc.respAdd {
			c.note(&r.notes, h.d, false, msgHeadersNot)
		}
	}
	if r.handled() {
		s.routes = append(s.routes, r)
	} else if len(nested) == 0 {
		s.notes = append(s.notes, r.notes...)
		c.note(&s.notes, d, false, "not carried over: this location has no proxy_pass, root, alias or return gatehouse can serve")
	} else {
		s.notes = append(s.notes, r.notes...)
	}
	for _, n := range nested {
		c.location(n, sc, s, r)
	}
}

func firstHost(s *srv) string {
	if len(s.hosts) > 0 {
		return s.hosts[0]
	}
	return ""
}

// proxyRoute converts proxy_pass (or grpc_pass) with nginx's URI rules: a
// URL without a path passes the request URI unchanged; with a path (even
// "/"), the part of the URI that matched the location is replaced by it —
// in gatehouse, strip_prefix plus the path in the upstream URL.
func (c *conv) proxyRoute(d *Directive, r *route, sc scope) {
	raw := d.Arg(0)
	if hasVar(raw) {
		c.note(&r.notes, d, false, "not carried over: gatehouse upstreams are fixed URLs, not variables")
		return
	}
	if d.Name == "grpc_pass" {
		switch {
		case strings.HasPrefix(raw, "grpc://"):
			raw = "h2c://" + strings.TrimPrefix(raw, "grpc://")
		case strings.HasPrefix(raw, "grpcs://"):
			raw = "https://" + strings.TrimPrefix(raw, "grpcs://")
		case !strings.Contains(raw, "://"):
			raw = "h2c://" + raw
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c") {
		c.note(&r.notes, d, false, "not carried over: %q is not an http:// or https:// URL", d.Arg(0))
		return
	}
	if strings.HasPrefix(u.Host, "unix:") {
		c.note(&r.notes, d, false, "not carried over: gatehouse proxies to TCP addresses, not unix sockets")
		return
	}
	if u.RawQuery != "" {
		c.note(&r.notes, d, false, "not carried over: the query part of the upstream URL")
	}
	r.maxBody = sc.maxBody // bodies matter only where they are sent on
	p := &proxyOut{host: sc.hostMode, dial: sc.dial, header: sc.header, idle: sc.idle, set: sc.setHdr, remove: sc.removeHdr,
		respAdd: sc.respAdd, respRemove: sc.respRemove, ca: sc.ca}
	switch {
	case p.host == "" && u.Scheme != "https":
		// Without proxy_set_header Host, nginx sends the upstream's
		// address; gatehouse would send the client's Host.
		p.host = "upstream"
	case p.host == "original" && u.Scheme != "https":
		p.host = "" // gatehouse's default for http:// upstreams
	}
	uri := u.EscapedPath()
	switch {
	case uri == "":
	case r.strip:
		// A rewrite … break already set the path; nginx ignores the URI part then.
		uri = ""
	case r.regex != "":
		c.note(&r.notes, d, false, "URI part %s not carried over: nginx does not allow one in a regex location", uri)
		uri = ""
	case r.path == "/" && !r.exact:
	case r.exact:
		r.strip = true
		if !strings.HasSuffix(uri, "/") {
			c.note(&r.notes, d, false, "changed: nginx sends %s for %s; gatehouse sends %s/", uri, r.path, uri)
		}
	default:
		r.strip = true
		locSlash, uriSlash := strings.HasSuffix(r.path, "/"), strings.HasSuffix(uri, "/")
		switch {
		case locSlash && !uriSlash:
			c.note(&r.notes, d, false, "changed: nginx sends %sx for %sx; gatehouse keeps the slash and sends %s/x", uri, r.path, uri)
		case !locSlash && uriSlash:
			c.note(&r.notes, d, true, "nginx sends %s/x for %s/x (a double slash); gatehouse sends %sx", strings.TrimSuffix(uri, "/")+"/", r.path, uri)
		}
	}
	if up, ok := c.upstreams[u.Host]; ok {
		if len(up.servers) == 0 {
			c.note(&r.notes, d, false, "not carried over: upstream %s has no usable server", u.Host)
			return
		}
		for _, srvAddr := range up.servers {
			p.to = append(p.to, u.Scheme+"://"+srvAddr+uri)
		}
		p.policy, p.maxIdle = up.policy, up.maxIdle
		if up.idle != "" {
			p.idle = up.idle
		}
	} else {
		p.to = []string{u.Scheme + "://" + u.Host + uri}
	}
	r.proxy = p
}

// staticRoute serves files from the scope's root (or alias) with its
// index and try_files.
func (c *conv) staticRoute(r *route, sc scope, notes *[]string) {
	st := &staticOut{root: sc.root, browse: sc.autoindex}
	if st.root == "" {
		st.root = "html"
		*notes = append(*notes, "no root: nginx serves its prefix's html folder; write the real folder here")
	}
	if !(len(sc.index) == 1 && sc.index[0] == "index.html") {
		st.index = sc.index
	}
	if tf := sc.tryFiles; tf != nil && len(tf.Args) > 0 {
		last := tf.Args[len(tf.Args)-1]
		for _, a := range tf.Args[:len(tf.Args)-1] {
			if a != "$uri" && a != "$uri/" && a != "$uri/index.html" && a != "$uri.html" {
				c.note(notes, tf, false, "%s not carried over: gatehouse tries the file and the folder's index", a)
			}
		}
		switch {
		case strings.HasPrefix(last, "="):
			// The file, the folder's index, or an error: the default.
		case strings.HasPrefix(last, "@"):
			c.note(notes, tf, false, "the fallback to named location %s is not carried over: paths that are not files get 404", last)
		case strings.HasPrefix(last, "/") && !hasVar(last):
			st.spa = true
			if last != "/index.html" {
				st.fallback = last
			}
		default:
			c.note(notes, tf, false, "the fallback %s is not carried over: paths that are not files get 404", last)
		}
	}
	r.static = st
}
