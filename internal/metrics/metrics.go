// Package metrics owns gatehouse's Prometheus metrics: one registry per
// process, collectors that live across reloads, and cheap recording on the
// request path — label children are looked up once per (site, route) and
// cached, so a request costs a map read and a few atomic adds.
package metrics

import (
	"net"
	"net/http"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"gatehouse/internal/journey"
)

// Metrics is the process's metrics.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	bytes         *prometheus.CounterVec
	upstreamErrs  *prometheus.CounterVec
	openConns     *prometheus.GaugeVec
	loopRequests  *prometheus.CounterVec
	handoffs      *prometheus.CounterVec
	tlsHandshakes *prometheus.CounterVec
	reloads       *prometheus.CounterVec
	lastReload    prometheus.Gauge

	routes sync.Map // routeKey → *routeMetrics
}

type routeKey struct{ site, route string }

type routeMetrics struct {
	byClass  [6]prometheus.Counter // 1xx … 5xx, [0] for anything else
	duration prometheus.Observer
	bytes    prometheus.Counter
}

// New registers gatehouse's collectors, plus Go runtime and process ones.
func New() *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "http", Name: "requests_total",
		Help: "HTTP requests served, by site, route and status class.",
	}, []string{"site", "route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "gatehouse", Subsystem: "http", Name: "request_duration_seconds",
		Help:    "Time from the request's headers to the response's last byte.",
		Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"site", "route"})
	m.bytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "http", Name: "response_bytes_total",
		Help: "Response body bytes sent.",
	}, []string{"site", "route"})
	m.upstreamErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "upstream", Name: "errors_total",
		Help: "Failed upstream attempts, by upstream.",
	}, []string{"upstream"})
	m.openConns = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "gatehouse", Subsystem: "http", Name: "open_connections",
		Help: "Client connections open now, by listener.",
	}, []string{"listener"})
	m.loopRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "http", Name: "loop_requests_total",
		Help: "Requests answered on the event loops (plain proxy routes, small static files), by listener.",
	}, []string{"listener"})
	m.handoffs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "http", Name: "handoffs_total",
		Help: "Connections the event loops handed to net/http (HTTP/2, TLS-ALPN, or a request the loops do not answer), by listener.",
	}, []string{"listener"})
	m.tlsHandshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "tls", Name: "handshakes_total",
		Help: "TLS handshakes on the public listeners, by result.",
	}, []string{"result"})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "gatehouse", Subsystem: "config", Name: "reloads_total",
		Help: "Config reloads, by result.",
	}, []string{"result"})
	m.lastReload = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "gatehouse", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
		Help: "When the config in force was loaded.",
	})
	m.Registry.MustRegister(m.requests, m.duration, m.bytes, m.upstreamErrs, m.openConns, m.loopRequests, m.handoffs,
		m.tlsHandshakes, m.reloads, m.lastReload,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.lastReload.SetToCurrentTime()
	return m
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

func (m *Metrics) route(site, route string) *routeMetrics {
	k := routeKey{site, route}
	if rm, ok := m.routes.Load(k); ok {
		return rm.(*routeMetrics)
	}
	rm := &routeMetrics{
		duration: m.duration.WithLabelValues(site, route),
		bytes:    m.bytes.WithLabelValues(site, route),
	}
	rm.byClass[0] = m.requests.WithLabelValues(site, route, "other")
	for c := 1; c <= 5; c++ {
		rm.byClass[c] = m.requests.WithLabelValues(site, route, strconv.Itoa(c)+"xx")
	}
	actual, _ := m.routes.LoadOrStore(k, rm)
	return actual.(*routeMetrics)
}

// ObserveRequest records one finished request.
func (m *Metrics) ObserveRequest(rec *journey.Record) {
	if m == nil {
		return
	}
	rm := m.route(rec.Site, rec.Route)
	class := rec.Status / 100
	if class < 1 || class > 5 {
		class = 0
	}
	rm.byClass[class].Inc()
	rm.duration.Observe(rec.Duration.Seconds())
	rm.bytes.Add(float64(rec.Bytes))
	if rec.UpstreamErr != "" && rec.Upstream != "" {
		m.upstreamErrs.WithLabelValues(rec.Upstream).Inc()
	}
}

// ConnState returns an http.Server ConnState hook counting open
// connections of one listener.
func (m *Metrics) ConnState(listener string) func(net.Conn, http.ConnState) {
	g := m.openConns.WithLabelValues(listener)
	return func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			g.Inc()
		case http.StateClosed, http.StateHijacked:
			g.Dec()
		}
	}
}

// Loop returns the counters of one listener's event loops: requests they
// answered and connections they handed to net/http.
func (m *Metrics) Loop(listener string) (answered, handed prometheus.Counter) {
	return m.loopRequests.WithLabelValues(listener), m.handoffs.WithLabelValues(listener)
}

// TLSHandshake counts a handshake that succeeded or failed.
func (m *Metrics) TLSHandshake(ok bool) {
	if ok {
		m.tlsHandshakes.WithLabelValues("ok").Inc()
	} else {
		m.tlsHandshakes.WithLabelValues("failed").Inc()
	}
}

// Reload counts a reload attempt.
func (m *Metrics) Reload(ok bool) {
	if ok {
		m.reloads.WithLabelValues("ok").Inc()
		m.lastReload.SetToCurrentTime()
	} else {
		m.reloads.WithLabelValues("failed").Inc()
	}
}

// Register adds a room's own collector (DNS, firewall, certificates).
func (m *Metrics) Register(c prometheus.Collector) error { return m.Registry.Register(c) }
