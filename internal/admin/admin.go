// Package admin owns the local admin API: health for load balancers,
// Prometheus metrics, the config in force (as written, so ${VAR} secrets
// are never expanded in it), status of every room, and loading a new config.
// It never changes anything itself: every write goes through Reload.
//
// Every endpoint but the health checks needs the bearer token, and every
// request must name a local host and come from a local origin, so a web page
// in the operator's browser cannot reach it through DNS rebinding.
package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"

	"gatehouse/internal/config"
)

// API is the admin API's handler. Its hooks are set by the instance.
type API struct {
	// Token is the bearer token every request but /healthz and /readyz
	// must present.
	Token string
	// Load parses src and reloads with it.
	Load func(name string, src []byte) error
	// ReloadFile reads the config file again and reloads with it.
	ReloadFile func() error
	// Config returns the config in force.
	Config func() *config.Config
	// Status returns every room's status, as JSON-encodable values.
	Status func() map[string]any
	// Unban lifts the firewall's ban on the source holding an address,
	// and returns what the ban covered ("" when there was none).
	Unban func(netip.Addr) (string, error)
	// Ready returns nil once every listener is up and certificates load.
	Ready func() error
	// Pending lists the ACME names with no certificate yet, for
	// /readyz?certificates.
	Pending func() []string
	// Metrics serves /metrics; Journeys the recent journey records.
	Metrics  http.Handler
	Journeys http.Handler

	mux *http.ServeMux
}

// maxConfigBytes bounds a config pushed to /load.
const maxConfigBytes = 4 << 20

// Handler returns the API.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := a.Ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		// Opt-in: behind a load balancer whose health check gates the
		// traffic, an instance without its certificates yet would serve
		// the local CA's; but an HTTP-01 challenge must reach it to get
		// them, so by default readiness does not wait.
		if q := r.URL.Query(); q.Has("certificates") && q.Get("certificates") != "false" && q.Get("certificates") != "0" && a.Pending != nil {
			if names := a.Pending(); len(names) > 0 {
				http.Error(w, "not ready: no certificate yet for "+strings.Join(names, ", ")+" (gatehouse certs says why)", http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", a.auth(a.Metrics))
	if a.Journeys != nil {
		mux.Handle("GET /journeys", a.auth(a.Journeys))
	}
	mux.Handle("GET /config", a.auth(http.HandlerFunc(a.getConfig)))
	mux.Handle("GET /status", a.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, a.Status())
	})))
	mux.Handle("POST /load", a.auth(http.HandlerFunc(a.load)))
	mux.Handle("POST /reload", a.auth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.answerReload(w, a.ReloadFile())
	})))
	mux.Handle("POST /firewall/unban", a.auth(http.HandlerFunc(a.unban)))
	a.mux = mux
	return http.HandlerFunc(a.serve)
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	if !localHost(r.Host) {
		http.Error(w, "forbidden: the admin API answers only to localhost", http.StatusForbidden)
		return
	}
	if o := r.Header.Get("Origin"); o != "" && !localOrigin(o) {
		http.Error(w, "forbidden: cross-origin requests are refused", http.StatusForbidden)
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) auth(next http.Handler) http.Handler {
	want := []byte("Bearer " + a.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if a.Token == "" || subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse admin"`)
			http.Error(w, "unauthorized: send Authorization: Bearer <token> (the admin token)", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// getConfig serves the config as written. Values that came from ${VAR}
// appear only as the reference; the admin token is blanked if written out.
func (a *API) getConfig(w http.ResponseWriter, r *http.Request) {
	cfg := a.Config()
	src := string(cfg.Source)
	if a.Token != "" {
		src = strings.ReplaceAll(src, a.Token, "[redacted]")
	}
	w.Header().Set("Content-Type", "application/yaml; charset=utf-8")
	w.Header().Set("X-Config-File", cfg.File)
	io.WriteString(w, src)
}

func (a *API) load(w http.ResponseWriter, r *http.Request) {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxConfigBytes))
	if err != nil {
		writeJSON(w, http.StatusRequestEntityTooLarge, map[string]any{"error": "config too large"})
		return
	}
	a.answerReload(w, a.Load("admin API", src))
}

func (a *API) answerReload(w http.ResponseWriter, err error) {
	if err == nil {
		writeJSON(w, http.StatusOK, map[string]any{"status": "reloaded"})
		return
	}
	var list config.ErrorList
	if errors.As(err, &list) {
		msgs := make([]string, len(list))
		for i, e := range list {
			msgs[i] = e.Error()
		}
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "config refused; the running config is unchanged", "problems": msgs})
		return
	}
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": "reload failed; the running config is unchanged: " + err.Error()})
}

// unban lifts the ban on ?source=ADDR.
func (a *API) unban(w http.ResponseWriter, r *http.Request) {
	src, err := netip.ParseAddr(r.URL.Query().Get("source"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "source must be an IP address: " + err.Error()})
		return
	}
	lifted, err := a.Unban(src)
	switch {
	case err != nil:
		writeJSON(w, http.StatusInternalServerError, map[string]any{"error": "ban on " + lifted + " lifted in gatehouse, not in the kernel's table: " + err.Error()})
	case lifted == "":
		writeJSON(w, http.StatusNotFound, map[string]any{"error": src.String() + " is not banned"})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "unbanned", "source": lifted})
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func localHost(hostport string) bool {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

func localOrigin(o string) bool {
	u, err := url.Parse(o)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && localHost(u.Host)
}
