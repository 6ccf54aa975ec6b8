// Package journey owns the per-request journey record: what each step of the
// request path (listener, firewall, TLS, route, handler, upstream) learned
// and decided about one request. The record rides in the request context;
// each step fills its own fields, and the access log, metrics, the ring of
// recent records and the trace header read it. It also holds the client side
// of `gatehouse trace`, which walks a request's journey from the outside.
//
// It is a leaf: it imports nothing of gatehouse, so every room can write to
// it without knowing the others. A record is one allocation per request;
// when nobody asks for the journey nothing else is done with it.
package journey

import (
	"context"
	"net"
	"net/netip"
	"time"
)

// Record is one request's journey. Fields are written by the step that owns
// them, in request order, by the goroutine serving the request.
type Record struct {
	Start time.Time
	// Local is the listener's address the request arrived on.
	Local net.Addr
	// Peer is the TCP peer; Client the address the request is attributed
	// to. They differ when a trusted proxy forwarded the request, and then
	// ClientVia says how the client was found.
	Peer      netip.AddrPort
	Client    netip.Addr
	ClientVia string
	// Firewall is the verdict on the connection, e.g. `allowed by rule 1 "web"`.
	Firewall string

	TLS       string // "TLS 1.3"; empty on plain HTTP
	TLSCipher string
	ALPN      string
	SNI       string

	Method, Host, Path string

	Site  string // the site's first host
	Route string // the matched route's pattern
	// Handler is proxy, static, redirect, respond, or a built-in:
	// unknown-host, https-redirect, acme-challenge.
	Handler string
	// NoLog leaves the request out of the access log (the route says so);
	// metrics and the journey ring still have it.
	NoLog bool
	// ProxyHeaders names what the proxy set on the upstream request.
	ProxyHeaders string

	// Upstream is where the last upstream attempt went; UpstreamErr why it
	// failed; UpstreamTime how long it took to answer with headers.
	Upstream       string
	UpstreamErr    string
	UpstreamTime   time.Duration
	UpstreamStatus int
	// Tries counts upstream attempts (more than one after a retry).
	Tries int

	// Status, Bytes and Duration describe the response; set when the
	// response is done (Status and Duration also at the header).
	Status   int
	Bytes    int64
	Duration time.Duration
}

type ctxKey struct{}

// With returns ctx carrying rec.
func With(ctx context.Context, rec *Record) context.Context {
	return context.WithValue(ctx, ctxKey{}, rec)
}

// From returns the record in ctx, or nil. Every writer checks for nil, so a
// request served without a record costs nothing more.
func From(ctx context.Context) *Record {
	rec, _ := ctx.Value(ctxKey{}).(*Record)
	return rec
}

type connKey struct{}

// WithConnVerdict returns ctx carrying the firewall's verdict on the
// connection, for every request that arrives on it.
func WithConnVerdict(ctx context.Context, verdict string) context.Context {
	return context.WithValue(ctx, connKey{}, verdict)
}

// ConnVerdict returns the verdict stored by WithConnVerdict.
func ConnVerdict(ctx context.Context) string {
	v, _ := ctx.Value(connKey{}).(string)
	return v
}

// View is a record as shown to people and machines: the trace header, the
// admin API and the demo page.
type View struct {
	Time           time.Time `json:"time"`
	Listener       string    `json:"listener,omitempty"`
	Peer           string    `json:"peer"`
	Client         string    `json:"client"`
	ClientVia      string    `json:"client_via,omitempty"`
	Firewall       string    `json:"firewall,omitempty"`
	TLS            string    `json:"tls,omitempty"`
	TLSCipher      string    `json:"tls_cipher,omitempty"`
	ALPN           string    `json:"alpn,omitempty"`
	SNI            string    `json:"sni,omitempty"`
	Method         string    `json:"method"`
	Host           string    `json:"host"`
	Path           string    `json:"path"`
	Site           string    `json:"site,omitempty"`
	Route          string    `json:"route,omitempty"`
	Handler        string    `json:"handler,omitempty"`
	ProxyHeaders   string    `json:"proxy_headers,omitempty"`
	Upstream       string    `json:"upstream,omitempty"`
	UpstreamStatus int       `json:"upstream_status,omitempty"`
	UpstreamErr    string    `json:"upstream_error,omitempty"`
	UpstreamMS     float64   `json:"upstream_ms,omitempty"`
	Tries          int       `json:"tries,omitempty"`
	Status         int       `json:"status,omitempty"`
	Bytes          int64     `json:"bytes,omitempty"`
	DurationMS     float64   `json:"duration_ms,omitempty"`
}

// View returns rec as a View.
func (r *Record) View() View {
	return View{
		Time: r.Start, Listener: addrString(r.Local), Peer: r.Peer.String(), Client: r.Client.String(),
		ClientVia: r.ClientVia, Firewall: r.Firewall,
		TLS: r.TLS, TLSCipher: r.TLSCipher, ALPN: r.ALPN, SNI: r.SNI,
		Method: r.Method, Host: r.Host, Path: r.Path,
		Site: r.Site, Route: r.Route, Handler: r.Handler, ProxyHeaders: r.ProxyHeaders,
		Upstream: r.Upstream, UpstreamStatus: r.UpstreamStatus, UpstreamErr: r.UpstreamErr,
		UpstreamMS: ms(r.UpstreamTime), Tries: r.Tries,
		Status: r.Status, Bytes: r.Bytes, DurationMS: ms(r.Duration),
	}
}

func addrString(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.String()
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
