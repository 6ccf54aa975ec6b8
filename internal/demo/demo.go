// Package demo owns the built-in demo backend app that the embedded default
// config proxies to: an HTML page (with CSS, JavaScript and an image) and a
// JSON API, both describing the journey of the request that reached them —
// the headers gatehouse added on the way, so a new user sees the proxy work.
package demo

import (
	"embed"
	"encoding/base64"
	"encoding/json"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"gatehouse/internal/journey"
)

//go:embed assets
var assets embed.FS

var page = template.Must(template.ParseFS(assets, "assets/index.html"))

// Journey is what the app saw of a request: what gatehouse forwarded.
type Journey struct {
	Method          string `json:"method"`
	Path            string `json:"path"`
	Host            string `json:"host"`
	XRealIP         string `json:"x_real_ip"`
	XForwardedFor   string `json:"x_forwarded_for"`
	XForwardedProto string `json:"x_forwarded_proto"`
	XForwardedHost  string `json:"x_forwarded_host"`
	TLS             string `json:"tls"`
	Route           string `json:"route"`
	Peer            string `json:"peer"`
	Time            string `json:"time"`
	// Edge is gatehouse's own journey record of the request, as far as it
	// had got when it forwarded the request here.
	Edge *journey.View `json:"edge,omitempty"`
}

func journeyOf(r *http.Request) Journey {
	return Journey{
		Method:          r.Method,
		Path:            r.URL.RequestURI(),
		Host:            r.Host,
		XRealIP:         r.Header.Get("X-Real-Ip"),
		XForwardedFor:   r.Header.Get("X-Forwarded-For"),
		XForwardedProto: r.Header.Get("X-Forwarded-Proto"),
		XForwardedHost:  r.Header.Get("X-Forwarded-Host"),
		TLS:             r.Header.Get("X-Gatehouse-Tls"),
		Route:           r.Header.Get("X-Gatehouse-Route"),
		Peer:            r.RemoteAddr,
		Time:            time.Now().UTC().Format(time.RFC3339),
		Edge:            edgeJourney(r.Header.Get("X-Gatehouse-Journey")),
	}
}

func edgeJourney(h string) *journey.View {
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil || len(b) == 0 {
		return nil
	}
	var v journey.View
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return &v
}

// Handler returns the demo app.
func Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(assets, "assets")
	mux.Handle("GET /assets/", http.StripPrefix("/assets/", http.FileServerFS(static)))
	mux.HandleFunc("GET /api/journey", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(journeyOf(r))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		page.Execute(w, journeyOf(r))
	})
	return mux
}
