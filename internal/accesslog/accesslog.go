// Package accesslog owns the first and last moments of every HTTP request:
// it opens the request's journey record (where it arrived, who the client is
// and how that was derived, TLS facts), shows the journey to those who ask
// for it, and when the response is done writes one structured access-log
// line from the record: time, client, host, method, path, status, bytes,
// duration, route and upstream.
package accesslog

import (
	"bufio"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"gatehouse/internal/clientip"
	"gatehouse/internal/journey"
	"gatehouse/internal/tlsterm"
)

// TraceHeader is the request header that asks for the request's journey; its
// value must be the trace token. JourneyHeader carries the journey back.
const (
	TraceHeader   = "Gatehouse-Trace"
	JourneyHeader = "Gatehouse-Journey"
)

// Middleware wraps next. A nil Log keeps the journey but writes no lines.
type Middleware struct {
	Next     http.Handler
	Log      *Writer
	ClientIP *clientip.Resolver
	// Observe, when set, is told of every finished request (metrics).
	Observe func(rec *journey.Record)
	// Ring, when set, keeps finished records for the admin API.
	Ring *journey.Ring
	// TraceToken, when set, is the token that makes the response carry the
	// journey in a Gatehouse-Journey header. Nobody else ever sees it.
	TraceToken string
	// ServerTiming adds a Server-Timing header (upstream and edge time).
	ServerTiming bool
}

func (m *Middleware) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The record and the writer share one allocation.
	st := &struct {
		writer
		rec journey.Record
	}{}
	rec := &st.rec
	*rec = journey.Record{
		Start: time.Now(), Peer: clientip.Peer(r),
		Method: r.Method, Host: r.Host, Path: r.URL.Path,
	}
	rec.Local, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	var fromXFF bool
	rec.Client, fromXFF = m.ClientIP.Client(r, rec.Peer.Addr())
	if fromXFF {
		rec.ClientVia = "X-Forwarded-For from trusted proxy " + rec.Peer.Addr().String()
	}
	rec.Firewall = journey.ConnVerdict(r.Context())
	if r.TLS != nil {
		noteTLS(rec, r.TLS)
	}
	lw := &st.writer
	*lw = writer{ResponseWriter: w, rec: rec, timing: m.ServerTiming}
	if v, ok := r.Header[TraceHeader]; ok {
		// Asked or not, the token never travels further.
		delete(r.Header, TraceHeader)
		lw.traced = m.TraceToken != "" && len(v) == 1 &&
			subtle.ConstantTimeCompare([]byte(v[0]), []byte(m.TraceToken)) == 1
	}
	m.Next.ServeHTTP(lw, r.WithContext(journey.With(r.Context(), rec)))
	if lw.status == 0 {
		lw.status = http.StatusOK // nothing written is an empty 200
	}
	rec.Status, rec.Bytes, rec.Duration = lw.status, lw.bytes, time.Since(rec.Start)
	m.Finish(rec)
}

// Finish hands a finished request's record to the metrics, the ring and
// the access log. Servers that answer without ServeHTTP call it too. rec
// may be reused once it returns.
func (m *Middleware) Finish(rec *journey.Record) {
	if m.Observe != nil {
		m.Observe(rec)
	}
	m.Ring.Add(rec)
	if m.Log != nil && !rec.NoLog {
		m.Log.Log(rec)
	}
}

func noteTLS(rec *journey.Record, cs *tls.ConnectionState) {
	rec.TLS = tlsterm.VersionName(cs.Version)
	rec.TLSCipher = tlsterm.CipherName(cs.CipherSuite)
	rec.ALPN = cs.NegotiatedProtocol
	rec.SNI = cs.ServerName
}

// writer records the status and body bytes, and adds the journey headers
// just before the response header goes out. It keeps every optional
// interface reachable: Unwrap for http.ResponseController (flush, hijack for
// WebSockets, deadlines) and ReadFrom so files still go out by sendfile.
type writer struct {
	http.ResponseWriter
	rec    *journey.Record
	status int
	bytes  int64
	traced bool
	timing bool
}

func (w *writer) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.beforeHeader(code)
	}
	if w.status == 0 || w.status < 200 { // 1xx may precede the final status
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *writer) beforeHeader(code int) {
	if !w.traced && !w.timing {
		return
	}
	h := w.ResponseWriter.Header()
	elapsed := time.Since(w.rec.Start)
	if w.timing {
		v := "edge;dur=" + strconv.FormatFloat(float64((elapsed-w.rec.UpstreamTime).Microseconds())/1000, 'f', 3, 64)
		if w.rec.Upstream != "" {
			v = "upstream;dur=" + strconv.FormatFloat(float64(w.rec.UpstreamTime.Microseconds())/1000, 'f', 3, 64) + ", " + v
		}
		h.Add("Server-Timing", v)
	}
	if w.traced {
		rec := *w.rec
		rec.Status, rec.Duration = code, elapsed
		b, _ := json.Marshal(rec.View())
		// Base64 keeps header injection impossible whatever the path holds.
		h.Set(JourneyHeader, base64.RawURLEncoding.EncodeToString(b))
	}
}

func (w *writer) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *writer) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	n, err := io.Copy(w.ResponseWriter, r)
	w.bytes += n
	return n, err
}

func (w *writer) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
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
