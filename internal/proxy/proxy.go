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

// HeaderOps are compiled header edits: Remove first, then Set (which
// replaces), then Add. Values are filled from the client's request, for
// the response's edits too.
type HeaderOps struct {
	Set    []Header
	Add    []Header
	Remove []string // canonical names
}

func (o *HeaderOps) any() bool { return len(o.Set)+len(o.Add)+len(o.Remove) > 0 }

// Drops reports whether the edits remove or replace the field name (any
// case).
func (o *HeaderOps) Drops(name string) bool {
	for _, n := range o.Remove {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	for _, s := range o.Set {
		if strings.EqualFold(name, s.Name) {
			return true
		}
	}
	return false
}

// Sets reports whether Set or Add writes the field name (any case).
func (o *HeaderOps) Sets(name string) bool {
	for _, list := range [2][]Header{o.Set, o.Add} {
		for _, h := range list {
			if strings.EqualFold(name, h.Name) {
				return true
			}
		}
	}
	return false
}

// AppendFields appends the fields Set and Add write, filled from src, as
// wire lines ("Name: value\r\n").
func (o *HeaderOps) AppendFields(b []byte, src placeholder.Source) []byte {
	for _, list := range [2][]Header{o.Set, o.Add} {
		for _, h := range list {
			b = append(b, h.Name...)
			b = append(b, ": "...)
			b = h.Value.Append(b, src)
			b = append(b, "\r\n"...)
		}
	}
	return b
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
	if o.ResponseHeaders.any() {
		h.rp.ModifyResponse = h.modifyResponse
	}
	if o.ThirdParty.DropSetCookie {
		h.rp.ModifyResponse = h.modifyThirdParty
	}
	h.plain = h.plainOf()
	return h
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// An answer without a Content-Type passes on without one, as nginx
	// passes it: net/http would otherwise guess one from the body.
	w.Header()["Content-Type"] = nil
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
	if h.opts.ResponseHeaders.any() {
		// Response edits are filled from the client's request, which
		// the response only knows through its context.
		pr.Out = out.WithContext(context.WithValue(out.Context(), inboundKey{}, in))
	}
}

type inboundKey struct{}

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
	in, ok := resp.Request.Context().Value(inboundKey{}).(*http.Request)
	if !ok {
		in = resp.Request
	}
	applyHeaders(resp.Header, h.opts.ResponseHeaders, in)
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
// HTTP/1.1, without building an http.Request: the default headers (Host,
// X-Real-IP, X-Forwarded-*) and the route's header edits, no third-party
// handling, plain-HTTP upstreams.
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
	// Headers and ResponseHeaders are the route's edits, applied after
	// the default headers.
	Headers, ResponseHeaders *HeaderOps
}

// Plain returns the handler's plain description, or nil when its requests
// need the full reverse proxy.
func (h *Handler) Plain() *Plain { return h.plain }

func (h *Handler) plainOf() *Plain {
	o := &h.opts
	if o.ThirdParty != (ThirdParty{}) || !h.pool.Plain() {
		return nil
	}
	p := &Plain{Handler: h, Pool: h.pool, ClientIP: o.ClientIP, Describe: h.describe}
	if o.Headers.any() {
		p.Headers = &o.Headers
	}
	if o.ResponseHeaders.any() {
		p.ResponseHeaders = &o.ResponseHeaders
	}
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
