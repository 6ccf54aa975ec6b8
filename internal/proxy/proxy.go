// Package proxy owns the reverse-proxy handler: the request a backend
// receives (Host, X-Real-IP, X-Forwarded-*, header edits, hop-by-hop headers
// removed), streaming both ways (SSE, WebSockets, gRPC with trailers), and
// the answer when the upstream fails: 502 when it cannot be reached, 504
// when it does not answer in time, each logged with the upstream and why.
//
// It is built on httputil.ReverseProxy with Rewrite (never Director), which
// strips inbound X-Forwarded-* before Rewrite runs, so nothing the client
// claims is trusted unless clientip says its peer is a trusted proxy.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync"

	"gatehouse/internal/clientip"
	"gatehouse/internal/journey"
	"gatehouse/internal/placeholder"
	"gatehouse/internal/upstream"
)

// HostMode says what Host header the upstream receives.
type HostMode uint8

const (
	// HostOriginal sends the client's Host (nginx: proxy_set_header Host $host).
	HostOriginal HostMode = iota
	// HostUpstream sends the upstream URL's host, for third-party APIs.
	HostUpstream
	// HostLiteral sends Options.HostName.
	HostLiteral
)

// HeaderOps are compiled header edits.
type HeaderOps struct {
	Set    []Header
	Add    []Header
	Remove []string
}

// Header is a header name with a compiled value.
type Header struct {
	Name  string
	Value *placeholder.Template
}

// Options configure a Handler.
type Options struct {
	Host            HostMode
	HostName        string
	Headers         HeaderOps
	ResponseHeaders HeaderOps
	ThirdParty      ThirdParty
	ClientIP        *clientip.Resolver
	Log             *slog.Logger
}

// Handler proxies requests to a Pool.
type Handler struct {
	pool *upstream.Pool
	opts Options
	rp   *httputil.ReverseProxy
	// describe names, for the journey, what the upstream request carries;
	// made once here rather than per request.
	describe string
	plain    *Plain
}

// New returns a Handler sending requests to pool.
func New(pool *upstream.Pool, o Options) *Handler {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	h := &Handler{pool: pool, opts: o, describe: describe(o)}
	h.rp = &httputil.ReverseProxy{
		Rewrite:      h.rewrite,
		Transport:    pool,
		BufferPool:   buffers,
		ErrorHandler: h.fail,
		ErrorLog:     slog.NewLogLogger(o.Log.Handler(), slog.LevelDebug),
	}
	if len(o.ResponseHeaders.Set)+len(o.ResponseHeaders.Add)+len(o.ResponseHeaders.Remove) > 0 {
		h.rp.ModifyResponse = h.modifyResponse
	}
	if o.ThirdParty.DropSetCookie {
		h.rp.ModifyResponse = h.modifyThirdParty
	}
	h.plain = h.plainOf()
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.rp.ServeHTTP(w, r)
}

func (h *Handler) rewrite(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	rec := journey.From(in.Context())
	if rec != nil {
		rec.ProxyHeaders = h.describe
	}
	peer := clientip.Peer(in).Addr()
	client := peer
	if rec != nil && rec.Client.IsValid() {
		client = rec.Client
	} else {
		client, _ = h.opts.ClientIP.Client(in, peer)
	}
	trusted := h.opts.ClientIP.Trusts(peer)
	if trusted {
		out.Header["X-Forwarded-For"] = in.Header["X-Forwarded-For"]
	}
	pr.SetXForwarded()
	if trusted {
		// A trusted proxy in front (a CDN terminating TLS) knows the
		// original scheme and host better than we do.
		if v := in.Header["X-Forwarded-Proto"]; len(v) > 0 {
			out.Header["X-Forwarded-Proto"] = v
		}
		if v := in.Header["X-Forwarded-Host"]; len(v) > 0 {
			out.Header["X-Forwarded-Host"] = v
		}
	}
	out.Header["X-Real-Ip"] = []string{client.String()}

	switch h.opts.Host {
	case HostOriginal:
		out.Host = in.Host
	case HostUpstream:
		out.Host = "" // the URL's host, set by the pool
	case HostLiteral:
		out.Host = h.opts.HostName
	}
	h.thirdPartyRequest(out)
	applyHeaders(out.Header, h.opts.Headers, in)
}

func describe(o Options) string {
	var b strings.Builder
	switch o.Host {
	case HostOriginal:
		b.WriteString("Host as sent by the client")
	case HostUpstream:
		b.WriteString("Host of the upstream")
	case HostLiteral:
		b.WriteString("Host " + o.HostName)
	}
	b.WriteString(", X-Real-IP, X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host")
	b.WriteString(thirdPartyDescribe(o))
	for _, s := range o.Headers.Set {
		b.WriteString(", " + s.Name)
	}
	for _, a := range o.Headers.Add {
		b.WriteString(", +" + a.Name)
	}
	for _, r := range o.Headers.Remove {
		b.WriteString(", -" + r)
	}
	return b.String()
}

func (h *Handler) modifyResponse(resp *http.Response) error {
	applyHeaders(resp.Header, h.opts.ResponseHeaders, resp.Request)
	return nil
}

func applyHeaders(hdr http.Header, ops HeaderOps, r *http.Request) {
	for _, name := range ops.Remove {
		delete(hdr, name)
	}
	for _, s := range ops.Set {
		hdr[s.Name] = []string{s.Value.Fill(r)}
	}
	for _, a := range ops.Add {
		hdr[a.Name] = append(hdr[a.Name], a.Value.Fill(r))
	}
}

// fail answers a failed upstream attempt. A client that went away gets no
// answer (there is nobody to read it) and no warning.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	rec := journey.From(r.Context())
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		if rec != nil {
			rec.UpstreamErr = "client closed the connection"
		}
		w.WriteHeader(499) // nginx's "client closed request", for the access log
		return
	}
	status, body := h.Failed(rec, r.Method, r.Host, r.URL.Path, err)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	w.Write(body)
}

// Failed logs a failed upstream attempt, notes why in rec (which may be
// nil), and returns the status and body to answer with.
func (h *Handler) Failed(rec *journey.Record, method, host, path string, err error) (int, []byte) {
	status, why := classify(err)
	up := ""
	var ue *upstream.Error
	if errors.As(err, &ue) {
		up = ue.Upstream
	}
	if rec != nil {
		rec.UpstreamErr = why
	}
	h.opts.Log.Warn("upstream failed", "upstream", up, "status", status, "reason", why, "error", err.Error(), "method", method, "host", host, "path", path)
	if status == http.StatusGatewayTimeout {
		return status, gatewayTimeoutBody
	}
	return status, badGatewayBody
}

var (
	badGatewayBody     = []byte("502 Bad Gateway\n")
	gatewayTimeoutBody = []byte("504 Gateway Timeout\n")
)

// Plain describes a handler whose requests a server may send itself over
// HTTP/1.1, without building an http.Request: the default headers only
// (Host, X-Real-IP, X-Forwarded-*), no header edits, no third-party
// handling, plain-HTTP upstreams at IP literals.
type Plain struct {
	Handler  *Handler
	Pool     *upstream.Pool
	ClientIP *clientip.Resolver
	// HostName is the Host the upstream receives; empty for the client's.
	HostName string
	// HostUpstream sends the upstream's own host:port.
	HostUpstream bool
	// Describe is the journey's note of what the upstream request carries.
	Describe string
}

// Plain returns the handler's plain description, or nil when its requests
// need the full reverse proxy.
func (h *Handler) Plain() *Plain { return h.plain }

func (h *Handler) plainOf() *Plain {
	o := &h.opts
	if len(o.Headers.Set)+len(o.Headers.Add)+len(o.Headers.Remove) > 0 ||
		len(o.ResponseHeaders.Set)+len(o.ResponseHeaders.Add)+len(o.ResponseHeaders.Remove) > 0 ||
		o.ThirdParty != (ThirdParty{}) || !h.pool.Plain() {
		return nil
	}
	p := &Plain{Handler: h, Pool: h.pool, ClientIP: o.ClientIP, Describe: h.describe}
	switch o.Host {
	case HostUpstream:
		p.HostUpstream = true
	case HostLiteral:
		p.HostName = o.HostName
	}
	return p
}

// classify maps an upstream error to a status and a plain-words reason.
func classify(err error) (int, string) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		if op.Timeout() {
			return http.StatusBadGateway, "connecting to the upstream timed out"
		}
		return http.StatusBadGateway, "the upstream refused the connection or cannot be reached"
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return http.StatusGatewayTimeout, "the upstream did not answer in time"
	}
	return http.StatusBadGateway, "the upstream connection failed"
}

// bufferPool recycles the 32 KB copy buffers ReverseProxy streams bodies
// through, which would otherwise be allocated per request.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }

var buffers = &bufferPool{}
