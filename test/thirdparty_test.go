package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/accesslog"
	"gatehouse/internal/gatetest"
	"gatehouse/internal/instance"
)

// thirdPartyAPI is an HTTPS API on "localhost" with a certificate from its
// own CA, written to a PEM file for the proxy's `ca`. It refuses requests
// without the right key and says what it saw.
func thirdPartyAPI(t *testing.T, key string) (srv *httptest.Server, caFile string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Weather API test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leafKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}, ca, &leafKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile = filepath.Join(t.TempDir(), "api-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)

	srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "tracker", Value: "3rd-party"})
		if r.Header.Get("Authorization") != "Bearer "+key {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"missing or wrong API key"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"path": r.URL.RequestURI(), "host": r.Host, "sni": r.TLS.ServerName,
			"cookie": r.Header.Get("Cookie"), "forecast": "sunny",
		})
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is expected
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: leafKey}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, caFile
}

// TestThirdPartyAPI: a route to an HTTPS API adds the key from the
// environment, verifies the API with its CA, strips the path prefix, keeps
// the client's cookies and Authorization from it and its cookies from the
// client; and the key is nowhere in what gatehouse writes or answers.
func TestThirdPartyAPI(t *testing.T) {
	key := "wk-" + strings.Repeat("7f3a", 8)
	t.Setenv("GH_TEST_WEATHER_KEY", key)
	api, caFile := thirdPartyAPI(t, key)
	_, port, _ := net.SplitHostPort(api.Listener.Addr().String())
	upstream := "https://localhost:" + port + "/v1"
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "https://" + l.Addr().String()
	l.Close()

	g := gatetest.Start(t, fmt.Sprintf(`
admin: {listen: "127.0.0.1:0", token: admin-tok}
sites:
  - hosts: [app.example.org]
    tls: internal
    routes:
      - path: /weather
        strip_prefix: true
        rate_limit: {requests: 1, per: 1m, burst: 6}
        proxy:
          to: %[1]s
          ca: %[2]s
          headers: {set: {Authorization: "Bearer ${GH_TEST_WEATHER_KEY}"}}
      - path: /open
        strip_prefix: true
        proxy:
          to: %[1]s
          ca: %[2]s
          forward_credentials: true
          allow_set_cookie: true
      - path: /nokey
        strip_prefix: true
        proxy: {to: %[1]s, ca: %[2]s}
      - path: /untrusted
        strip_prefix: true
        proxy:
          to: %[1]s
          headers: {set: {Authorization: "Bearer ${GH_TEST_WEATHER_KEY}"}}
      - path: /down
        proxy:
          to: %[3]s
          headers: {set: {Authorization: "Bearer ${GH_TEST_WEATHER_KEY}"}}
`, upstream, caFile, dead))
	traceTok, err := instance.TraceToken(g.Config, g.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	c := g.Client()
	var seen strings.Builder // everything gatehouse answered
	get := func(path string, hdr map[string]string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", g.URL("app.example.org", path), nil)
		req.Header.Set(accesslog.TraceHeader, traceTok)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Header.Write(&seen)
		seen.Write(body)
		if j, err := base64.RawURLEncoding.DecodeString(resp.Header.Get(accesslog.JourneyHeader)); err == nil {
			seen.Write(j)
		}
		return resp, string(body)
	}
	client := map[string]string{"Cookie": "session=client-secret", "Authorization": "Bearer client-token"}

	resp, body := get("/weather/forecast?city=Oslo", client)
	var got map[string]string
	json.Unmarshal([]byte(body), &got)
	if resp.StatusCode != 200 || got["forecast"] != "sunny" {
		t.Fatalf("through gatehouse: %d %s", resp.StatusCode, body)
	}
	for k, want := range map[string]string{
		"path":   "/v1/forecast?city=Oslo", // /weather stripped, the upstream's /v1 put in front
		"host":   "localhost:" + port,      // the API's own name, not app.example.org
		"sni":    "localhost",
		"cookie": "", // the client's cookie is not the API's business
	} {
		if got[k] != want {
			t.Errorf("the API saw %s %q, want %q", k, got[k], want)
		}
	}
	if sc := resp.Header.Values("Set-Cookie"); len(sc) != 0 {
		t.Errorf("the API's Set-Cookie reached the client: %q", sc)
	}

	// forward_credentials and allow_set_cookie: the client's own key and
	// cookie go through, and so does the API's cookie.
	resp, body = get("/open/forecast", map[string]string{"Cookie": "session=client-secret", "Authorization": "Bearer " + key})
	json.Unmarshal([]byte(body), &got)
	if resp.StatusCode != 200 || got["cookie"] != "session=client-secret" || !strings.Contains(resp.Header.Get("Set-Cookie"), "tracker=3rd-party") {
		t.Errorf("with forwarding allowed: %d %s, Set-Cookie %q", resp.StatusCode, body, resp.Header.Get("Set-Cookie"))
	}
	// Without the key, the API refuses, and the client's own Authorization
	// was not forwarded in its place.
	if resp, body = get("/nokey/forecast", client); resp.StatusCode != 401 {
		t.Errorf("without the key: %d %s", resp.StatusCode, body)
	}
	// A certificate from a CA not configured is refused: 502, not the data.
	if resp, body = get("/untrusted/forecast", nil); resp.StatusCode != 502 || strings.Contains(body, "sunny") {
		t.Errorf("unverified API: %d %s", resp.StatusCode, body)
	}
	if resp, _ = get("/down/x", nil); resp.StatusCode != 502 {
		t.Errorf("dead API: %d", resp.StatusCode)
	}
	// The rate limit protects the key's quota: burst 6, and 2 spent above.
	codes := []int{}
	for i := 0; i < 6; i++ {
		resp, _ := get("/weather/forecast", nil)
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "60" {
			t.Errorf("429 with Retry-After %q, want 60", resp.Header.Get("Retry-After"))
		}
	}
	if fmt.Sprint(codes) != "[200 200 200 200 200 429]" {
		t.Errorf("rate-limited route answered %v", codes)
	}

	// The admin API's journeys and config views.
	for _, path := range []string{"/journeys", "/config"} {
		req, _ := http.NewRequest("GET", "http://"+g.AdminAddr()+path, nil)
		req.Header.Set("Authorization", "Bearer admin-tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("admin %s: %d", path, resp.StatusCode)
		}
		seen.Write(b)
	}

	logs := g.Logs.String()
	if strings.Contains(logs, "client-secret") {
		t.Errorf("the client's cookie appears in the logs")
	}
	if !strings.Contains(logs, "upstream failed") || !strings.Contains(seen.String(), "502 Bad Gateway") {
		t.Fatalf("the failures were not captured; logs:\n%s", logs)
	}
	for where, text := range map[string]string{"logs": logs, "answers, journeys and admin views": seen.String()} {
		if strings.Contains(text, key) {
			t.Errorf("the API key appears in the %s:\n%s", where, text)
		}
	}
}
