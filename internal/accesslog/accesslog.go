// Package accesslog owns the first and last moments of every HTTP request:
// it opens the request's journey record (who the client is and how that was
// derived), and when the response is done writes one structured access-log
// line from it: time, client, host, method, path, status, bytes, duration,
// route and upstream.
package accesslog

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"gatehouse/internal/clientip"
	"gatehouse/internal/journey"
	"gatehouse/internal/tlsterm"
)

// Middleware wraps next. A nil log keeps the journey but writes no lines.
type Middleware struct {
	Next     http.Handler
	Log      *slog.Logger
	ClientIP *clientip.Resolver
	// Observe, when set, is told of every finished request (metrics).
	Observe func(rec *journey.Record, status int, bytes int64, d time.Duration)
}

func (m *Middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &journey.Record{Start: time.Now(), Peer: clientip.Peer(r)}
	rec.Client, _ = m.ClientIP.Client(r, rec.Peer.Addr())
	if r.TLS != nil {
		rec.TLS = tlsterm.VersionName(r.TLS.Version)
	}
	lw := &writer{ResponseWriter: w}
	m.Next.ServeHTTP(lw, r.WithContext(journey.With(r.Context(), rec)))
	status := lw.status
	if status == 0 {
		status = http.StatusOK // nothing written is an empty 200
	}
	dur := time.Since(rec.Start)
	if m.Observe != nil {
		m.Observe(rec, status, lw.bytes, dur)
	}
	if m.Log == nil {
		return
	}
	attrs := []slog.Attr{
		slog.String("client", rec.Client.String()),
		slog.String("host", r.Host),
		slog.String("method", r.Method),
		slog.String("path", r.URL.Path),
		slog.String("proto", r.Proto),
		slog.Int("status", status),
		slog.Int64("bytes", lw.bytes),
		slog.Duration("duration", dur),
		slog.String("site", rec.Site),
		slog.String("route", rec.Route),
		slog.String("handler", rec.Handler),
	}
	if rec.Upstream != "" {
		attrs = append(attrs, slog.String("upstream", rec.Upstream), slog.Duration("upstream_time", rec.UpstreamTime))
	}
	if rec.UpstreamErr != "" {
		attrs = append(attrs, slog.String("upstream_error", rec.UpstreamErr))
	}
	m.Log.LogAttrs(context.Background(), slog.LevelInfo, "request", attrs...)
}

// writer records the status and body bytes. It keeps every optional
// interface reachable: Unwrap for http.ResponseController (flush, hijack for
// WebSockets, deadlines) and ReadFrom so files still go out by sendfile.
type writer struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *writer) WriteHeader(code int) {
	if w.status == 0 || w.status < 200 { // 1xx may precede the final status
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

func (w *writer) Flush() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }
