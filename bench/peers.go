package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/bench/internal/proc"
)

// Loopback ports. Every server under test has a plain HTTP port (Host
// bench.test) and an HTTPS port (Host and SNI localhost, the one name wrk
// can both resolve and send as SNI without touching /etc/hosts).
const (
	backendAddr       = "127.0.0.1:19000" // the upstream all proxies share
	directAddr        = "127.0.0.1:19001" // the backend itself under test
	directTLSAddr     = "127.0.0.1:19002"
	hostHTTP          = "bench.test"
	hostHTTPS         = "localhost"
	routesSites       = 10000
	routesGatehouse   = "127.0.0.1:18600"
	routesNginx       = "127.0.0.1:18700"
	profileAddr       = "127.0.0.1:18800"
	profileHTTPAddr   = "127.0.0.1:18801"
	profileHTTPSAddr  = "127.0.0.1:18802"
	serverCPU         = 1 // the server under test
	loadCPU           = 0 // load generator, backend, idle client
	nginxWorkerConns  = 19000
	haproxyMaxConn    = 9990  // the most fileLimit allows: HAProxy reserves 2 fds per connection
	fileLimit         = 20000 // the hard limit here; HAProxy would ask for 2×maxconn
	staticSmall       = "1k.bin"
	staticLarge       = "1m.bin"
	staticSmallSize   = 1 << 10
	staticLargeSize   = 1 << 20
	proxiedSmallSize  = 1 << 10
	proxiedLargeSize  = 100 << 10
	defaultWrkConns   = 50
	defaultH2Streams  = 10
	defaultIdleConns  = 10000
	quickIdleConns    = 2000
	startTimeout      = 20 * time.Second
	routesStartTimout = 120 * time.Second
)

// peer is one server under test.
type peer struct {
	name      string
	http      string // plain HTTP address
	https     string // HTTPS address
	static    bool   // serves /static/
	direct    bool   // the backend itself, not a proxy
	maxIdle   int    // cap on idle connections it can hold, 0 for none
	startFunc func(env *env, cpu int, tag string) (*proc.Proc, error)
}

// env is what every peer's config refers to.
type env struct {
	dir       string // work folder for configs, logs, certificates
	bin       string // this program, for the Go roles
	gatehouse string
	caddy     string
	cert, key string
	combined  string // cert and key in one file, for HAProxy
	staticDir string
}

func (e *env) path(name string) string { return filepath.Join(e.dir, name) }

func peers() []*peer {
	return []*peer{
		{name: "direct", http: directAddr, https: directTLSAddr, direct: true, startFunc: startDirect},
		{name: "nginx", http: "127.0.0.1:18100", https: "127.0.0.1:18101", static: true, startFunc: startNginx},
		{name: "haproxy", http: "127.0.0.1:18200", https: "127.0.0.1:18201", maxIdle: haproxyMaxConn - 90, startFunc: startHAProxy},
		{name: "caddy", http: "127.0.0.1:18300", https: "127.0.0.1:18301", static: true, startFunc: startCaddy},
		{name: "go-stdlib", http: "127.0.0.1:18400", https: "127.0.0.1:18401", static: true, startFunc: startGoProxy},
		{name: "gatehouse", http: "127.0.0.1:18500", https: "127.0.0.1:18501", static: true, startFunc: startGatehouse},
	}
}

func goEnv() []string { return []string{"GOMAXPROCS=1"} }

func startDirect(e *env, cpu int, tag string) (*proc.Proc, error) {
	return proc.Start("direct", cpu, goEnv(), e.path("direct"+tag+".log"), e.bin, "backend",
		"-addr", directAddr, "-tls-addr", directTLSAddr, "-cert", e.cert, "-key", e.key)
}

func startBackend(e *env) (*proc.Proc, error) {
	return proc.Start("backend", loadCPU, goEnv(), e.path("backend.log"), e.bin, "backend", "-addr", backendAddr)
}

func startGoProxy(e *env, cpu int, tag string) (*proc.Proc, error) {
	p := findPeer("go-stdlib")
	return proc.Start("go-stdlib", cpu, goEnv(), e.path("go-stdlib"+tag+".log"), e.bin, "goproxy",
		"-addr", p.http, "-tls-addr", p.https, "-cert", e.cert, "-key", e.key,
		"-upstream", "http://"+backendAddr, "-static", e.staticDir)
}

func findPeer(name string) *peer {
	for _, p := range peers() {
		if p.name == name {
			return p
		}
	}
	panic("no peer " + name)
}

// The nginx config is the seed's proxy config: upstream keep-alive and the
// four headers, one worker. keepalive_requests is raised (default 1000)
// because no other peer closes a client connection after N requests.
const nginxTmpl = `worker_processes 1;
daemon off;
pid {{dir}}/nginx{{tag}}.pid;
error_log {{dir}}/nginx{{tag}}.error.log warn;
worker_rlimit_nofile {{files}};
events { worker_connections {{wconns}}; }
http {
    access_log off;
    client_body_temp_path {{dir}}/nginx-tmp/body;
    proxy_temp_path {{dir}}/nginx-tmp/proxy;
    fastcgi_temp_path {{dir}}/nginx-tmp/fastcgi;
    uwsgi_temp_path {{dir}}/nginx-tmp/uwsgi;
    scgi_temp_path {{dir}}/nginx-tmp/scgi;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000000;
    default_type application/octet-stream;
    ssl_protocols TLSv1.3;
    server_names_hash_max_size 65536;
    server_names_hash_bucket_size 128;
{{upstreams}}
{{servers}}
}
`

const nginxLocations = `
        location / {
            proxy_pass http://{{upstream}};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }`

func nginxUpstream(name string) string {
	return fmt.Sprintf("    upstream %s { server %s; keepalive 64; keepalive_requests 100000000; }\n", name, backendAddr)
}

func fill(tmpl string, kv ...string) string {
	for i := 0; i+1 < len(kv); i += 2 {
		tmpl = strings.ReplaceAll(tmpl, "{{"+kv[i]+"}}", kv[i+1])
	}
	return tmpl
}

func writeNginx(e *env, tag, upstreams, servers string) (string, error) {
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(e.path("nginx-tmp/"+d), 0o777); err != nil {
			return "", err
		}
	}
	conf := fill(nginxTmpl, "dir", e.dir, "tag", tag, "files", fmt.Sprint(fileLimit),
		"wconns", fmt.Sprint(nginxWorkerConns), "upstreams", upstreams, "servers", servers)
	path := e.path("nginx" + tag + ".conf")
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

func startNginx(e *env, cpu int, tag string) (*proc.Proc, error) {
	return startNginxLogging(e, cpu, tag, "off")
}

// startNginxLogging is startNginx with access_log set to accessLog: off,
// or a file for its default (combined) format.
func startNginxLogging(e *env, cpu int, tag, accessLog string) (*proc.Proc, error) {
	p := findPeer("nginx")
	server := fill(`    server {
        listen {{http}};
        listen {{https}} ssl http2;
        server_name bench.test localhost;
        access_log {{log}};
        ssl_certificate {{cert}};
        ssl_certificate_key {{key}};`+nginxLocations+`
        location /static/ { alias {{static}}/; }
    }
`, "http", p.http, "https", p.https, "log", accessLog, "cert", e.cert, "key", e.key, "upstream", "backend", "static", e.staticDir)
	conf, err := writeNginx(e, tag, nginxUpstream("backend"), server)
	if err != nil {
		return nil, err
	}
	return proc.Start("nginx", cpu, nil, e.path("nginx"+tag+".log"), "nginx", "-c", conf, "-p", e.dir, "-e", "stderr")
}

// startNginxRoutes runs nginx with routesSites server blocks, each with
// its own upstream block, as a site per backend would be written.
func startNginxRoutes(e *env, cpu int, tag string) (*proc.Proc, error) {
	var ups, srv strings.Builder
	for i := range routesSites {
		name := fmt.Sprintf("s%d", i)
		ups.WriteString(nginxUpstream(name))
		srv.WriteString(fill("    server {\n        listen {{addr}};\n        server_name {{name}}.bench.test;"+nginxLocations+"\n    }\n",
			"addr", routesNginx, "name", name, "upstream", name))
	}
	conf, err := writeNginx(e, "-routes"+tag, ups.String(), srv.String())
	if err != nil {
		return nil, err
	}
	return proc.Start("nginx-routes", cpu, nil, e.path("nginx-routes"+tag+".log"), "nginx", "-c", conf, "-p", e.dir, "-e", "stderr")
}

func startHAProxy(e *env, cpu int, tag string) (*proc.Proc, error) {
	p := findPeer("haproxy")
	conf := fill(`global
    nbthread 1
    maxconn {{maxconn}}
    ulimit-n {{files}}
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    timeout connect 5s
    timeout client 120s
    timeout server 120s
    timeout http-keep-alive 120s
    option http-keep-alive
    http-reuse always
frontend fe
    bind {{http}}
    bind {{https}} ssl crt {{combined}} alpn h2,http/1.1
    http-request set-header X-Real-IP %[src]
    option forwardfor
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    default_backend be
backend be
    server s1 {{backend}} maxconn 64
`, "maxconn", fmt.Sprint(haproxyMaxConn), "files", fmt.Sprint(fileLimit), "http", p.http, "https", p.https, "combined", e.combined, "backend", backendAddr)
	path := e.path("haproxy" + tag + ".cfg")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return proc.Start("haproxy", cpu, nil, e.path("haproxy"+tag+".log"), "haproxy", "-db", "-f", path)
}

func startCaddy(e *env, cpu int, tag string) (*proc.Proc, error) {
	return startCaddyLogging(e, cpu, tag, "")
}

// startCaddyLogging is startCaddy with each site logging its requests to
// the file accessLog (Caddy's default JSON lines), unless it is empty.
func startCaddyLogging(e *env, cpu int, tag, accessLog string) (*proc.Proc, error) {
	p := findPeer("caddy")
	logging := ""
	if accessLog != "" {
		logging = "\n    log {\n        output file " + accessLog + "\n    }"
	}
	site := logging + `
    bind 127.0.0.1
    handle_path /static/* {
        root * {{static}}
        file_server
    }
    handle {
        reverse_proxy {{backend}} {
            header_up X-Real-IP {remote_host}
        }
    }
`
	conf := fill(`{
    admin off
    auto_https off
    persist_config off
    storage file_system {{dir}}/caddy-data
    servers {
        protocols h1 h2
    }
}
http://bench.test:{{httpport}} {`+site+`}
https://localhost:{{httpsport}} {
    tls {{cert}} {{key}} {
        protocols tls1.3
    }`+site+`}
`, "dir", e.dir, "httpport", port(p.http), "httpsport", port(p.https), "cert", e.cert, "key", e.key,
		"static", e.staticDir, "backend", backendAddr)
	path := e.path("Caddyfile" + tag)
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	env := append(goEnv(), "XDG_DATA_HOME="+e.path("caddy-xdg"), "XDG_CONFIG_HOME="+e.path("caddy-xdg"))
	return proc.Start("caddy", cpu, env, e.path("caddy"+tag+".log"), e.caddy, "run", "--config", path, "--adapter", "caddyfile")
}

// The gatehouse config does the same job: the proxy's default headers are
// Host, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto. bench.test is a
// plain-HTTP site (tls: off) and localhost the HTTPS one.
func startGatehouse(e *env, cpu int, tag string) (*proc.Proc, error) {
	return startGatehouseLogging(e, cpu, tag, "off")
}

// startGatehouseLogging is startGatehouse with log.access set to
// accessLog: off, or a file.
func startGatehouseLogging(e *env, cpu int, tag, accessLog string) (*proc.Proc, error) {
	p := findPeer("gatehouse")
	return runGatehouse(e, cpu, "gatehouse"+tag, gatehouseConfig(e, p.http, p.https, accessLog), func(cfg, data string) []string {
		return []string{e.gatehouse, "run", "-c", cfg, "--data", data}
	})
}

// startGatehouseRoutes runs gatehouse with routesSites sites, each with its
// own proxy route, as nginx gets in startNginxRoutes.
func startGatehouseRoutes(e *env, cpu int, tag string) (*proc.Proc, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "listen: {http: [%q], https: [%q]}\nlog: {access: off}\nsites:\n", routesGatehouse, "127.0.0.1:18601")
	for i := range routesSites {
		fmt.Fprintf(&b, "  - {hosts: [s%d.bench.test], tls: off, routes: [{path: /, proxy: \"http://%s\"}]}\n", i, backendAddr)
	}
	return runGatehouse(e, cpu, "gatehouse-routes"+tag, b.String(), func(cfg, data string) []string {
		return []string{e.gatehouse, "run", "-c", cfg, "--data", data}
	})
}

func gatehouseConfig(e *env, httpAddr, httpsAddr, accessLog string) string {
	routes := fill(`    routes:
      - {path: /, proxy: "http://{{backend}}"}
      - {path: /static, static: "{{static}}", strip_prefix: true}
`, "backend", backendAddr, "static", e.staticDir)
	return fill(`listen: {http: ["{{http}}"], https: ["{{https}}"]}
log: {access: "{{log}}"}
sites:
  - hosts: [bench.test]
    tls: off
`+routes+`  - hosts: [localhost]
    tls: {cert: "{{cert}}", key: "{{key}}"}
`+routes, "http", httpAddr, "https", httpsAddr, "log", accessLog, "cert", e.cert, "key", e.key)
}

// runGatehouse writes configText and starts the command argv returns for
// that config file and a data folder of its own.
func runGatehouse(e *env, cpu int, name, configText string, argv func(cfg, data string) []string) (*proc.Proc, error) {
	if e.gatehouse == "" {
		return nil, fmt.Errorf("gatehouse did not build")
	}
	cfg, data := e.path(name+".yaml"), e.path(name+"-data")
	if err := os.WriteFile(cfg, []byte(configText), 0o644); err != nil {
		return nil, err
	}
	return proc.Start(name, cpu, goEnv(), e.path(name+".log"), argv(cfg, data)...)
}

func port(addr string) string {
	_, p, _ := net.SplitHostPort(addr)
	return p
}

// writeCert makes a self-signed ECDSA P-256 certificate for localhost and
// 127.0.0.1, the TLS setup every peer serves.
func writeCert(e *env) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "localhost"},
		DNSNames:     []string{"localhost", "bench.test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	e.cert, e.key, e.combined = e.path("cert.pem"), e.path("key.pem"), e.path("combined.pem")
	if err := os.WriteFile(e.cert, certPEM, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(e.key, keyPEM, 0o600); err != nil {
		return err
	}
	return os.WriteFile(e.combined, append(certPEM, keyPEM...), 0o600)
}

func writeStatic(e *env) error {
	e.staticDir = e.path("static")
	if err := os.MkdirAll(e.staticDir, 0o755); err != nil {
		return err
	}
	for name, n := range map[string]int{staticSmall: staticSmallSize, staticLarge: staticLargeSize} {
		if err := os.WriteFile(filepath.Join(e.staticDir, name), body(n), 0o644); err != nil {
			return err
		}
	}
	return nil
}
