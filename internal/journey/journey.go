// Package journey owns the per-request journey record: what each step of the
// request path (listener, firewall, TLS, route, handler, upstream) learned
// and decided about one request. The record rides in the request context;
// each step fills its own fields, and the access log and tracer read it.
//
// It is a leaf: it imports nothing of gatehouse, so every room can write to
// it without knowing the others.
package journey

import (
	"context"
	"net/netip"
	"time"
)

// Record is one request's journey. Fields are written by the step that owns
// them, in request order, by the goroutine serving the request.
type Record struct {
	Start time.Time
	// Client is the address the request is attributed to; Peer is the TCP
	// peer. They differ when a trusted proxy forwarded the request.
	Client netip.Addr
	Peer   netip.AddrPort
	TLS    string // TLS version, e.g. "TLS 1.3"; empty on plain HTTP
	Site   string // the site's first host
	Route  string // the matched route's pattern
	// Handler is proxy, static, redirect, respond, or a built-in (404,
	// https-redirect, acme-challenge).
	Handler  string
	Upstream string // the upstream the last attempt went to
	// UpstreamErr is why the last upstream attempt failed, if it did.
	UpstreamErr string
	// UpstreamTime is how long the upstream took to answer with headers.
	UpstreamTime time.Duration
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
