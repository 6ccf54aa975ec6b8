package accesslog

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"gatehouse/internal/journey"
)

func ok(w http.ResponseWriter, r *http.Request) {
	if rec := journey.From(r.Context()); rec != nil {
		rec.Site, rec.Route, rec.Handler = "example.org", "/", "respond"
	}
	w.WriteHeader(200)
	io.WriteString(w, "hi")
}

func TestTraceHeaderOnlyWithToken(t *testing.T) {
	var logs strings.Builder
	m := &Middleware{Next: http.HandlerFunc(ok), TraceToken: "tok", Log: NewWriter(&logs, 0), Ring: journey.NewRing(2)}
	for _, tc := range []struct {
		send string
		want bool
	}{{"", false}, {"nope", false}, {"tok", true}} {
		req := httptest.NewRequest("GET", "https://example.org/x", nil)
		if tc.send != "" {
			req.Header.Set(TraceHeader, tc.send)
		}
		w := httptest.NewRecorder()
		m.ServeHTTP(w, req)
		h := w.Header().Get(JourneyHeader)
		if (h != "") != tc.want {
			t.Fatalf("token %q: journey header %q", tc.send, h)
		}
		if req.Header.Get(TraceHeader) != "" {
			t.Error("the trace header was left on the request")
		}
		if tc.want {
			b, _ := base64.RawURLEncoding.DecodeString(h)
			var v journey.View
			if err := json.Unmarshal(b, &v); err != nil || v.Site != "example.org" || v.Status != 200 || v.Path != "/x" {
				t.Errorf("journey %s: %+v %v", b, v, err)
			}
		}
	}
	if strings.Contains(logs.String(), "tok") {
		t.Error("the token was logged")
	}
	if got := len(m.Ring.Views()); got != 2 {
		t.Errorf("ring kept %d records, want 2", got)
	}
}

func TestServerTiming(t *testing.T) {
	m := &Middleware{Next: http.HandlerFunc(ok), ServerTiming: true}
	w := httptest.NewRecorder()
	m.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if st := w.Header().Get("Server-Timing"); !strings.HasPrefix(st, "edge;dur=") {
		t.Errorf("Server-Timing %q", st)
	}
}

// BenchmarkJourney measures what recording costs per request: with nothing
// asked (record only), with the ring of recent records, and with the
// journey shown to a client holding the token.
func BenchmarkJourney(b *testing.B) {
	nop := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) })
	for _, bc := range []struct {
		name string
		m    *Middleware
		tok  string
	}{
		{"bare-handler", nil, ""},
		{"record", &Middleware{Next: nop}, ""},
		{"record+ring", &Middleware{Next: nop, Ring: journey.NewRing(200)}, ""},
		{"traced", &Middleware{Next: nop, TraceToken: "tok"}, "tok"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", "https://example.org/api/x", nil)
			req.RemoteAddr = "192.0.2.1:5555"
			w := &discardWriter{h: http.Header{}}
			var h http.Handler = nop
			if bc.m != nil {
				h = bc.m
			}
			b.ReportAllocs()
			for b.Loop() {
				if bc.tok != "" {
					req.Header[TraceHeader] = []string{bc.tok}
				}
				clear(w.h)
				h.ServeHTTP(w, req)
			}
		})
	}
}

type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
