package test

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/accesslog"
	"gatehouse/internal/gatetest"
	"gatehouse/internal/instance"
	"gatehouse/internal/journey"
)

var update = flag.Bool("update", false, "rewrite golden files")

// zoneServer answers for example.org on a loopback port: www is a CNAME to
// demo, which has an A record; every other name is NXDOMAIN.
func zoneServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	records := map[string][]string{
		"www.example.org.":    {"www.example.org. 300 IN CNAME demo.example.org.", "demo.example.org. 300 IN A 127.0.0.1"},
		"demo.example.org.":   {"demo.example.org. 300 IN A 127.0.0.1"},
		"other.example.org.":  {"other.example.org. 60 IN A 127.0.0.1"},
		"down.example.org.":   {"down.example.org. 60 IN A 127.0.0.1"},
		"nosite.example.org.": {"nosite.example.org. 60 IN A 127.0.0.1"},
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		q := r.Question[0]
		rrs, ok := records[strings.ToLower(q.Name)]
		if !ok {
			m.Rcode = dns.RcodeNameError
		}
		if q.Qtype == dns.TypeA {
			for _, s := range rrs {
				rr, _ := dns.NewRR(s)
				m.Answer = append(m.Answer, rr)
			}
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func traceSetup(t *testing.T) (*gatetest.Gatehouse, journey.TraceOptions) {
	t.Helper()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(accesslog.TraceHeader) != "" {
			t.Error("the trace token reached the backend")
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"hello":"journey"}`)
	}))
	t.Cleanup(backend.Close)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + l.Addr().String()
	l.Close()

	// A certificate for another name, as a misconfigured site would have.
	dir := t.TempDir()
	g0 := gatetest.Start(t, "sites: []\n")
	pair, err := g0.CA().Issue([]string{"elsewhere.example"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := writeKeyPair(t, dir, pair)

	g := gatetest.Start(t, fmt.Sprintf(`
firewall:
  default: deny
  rules:
    - {allow: tcp, from: [127.0.0.0/8], description: web}
sites:
  - hosts: [demo.example.org, www.example.org]
    routes:
      - {path: /, proxy: %s}
  - hosts: [down.example.org]
    routes:
      - {path: /, proxy: %s}
  - hosts: [other.example.org]
    tls: {cert: %s, key: %s}
    routes:
      - {path: /, respond: hi}
`, backend.URL, dead, certFile, keyFile))
	tok, err := instance.TraceToken(g.Config, g.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	return g, journey.TraceOptions{DNS: zoneServer(t), Roots: g.Roots, Token: tok, Timeout: 2 * time.Second}
}

var masks = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\d+\.\d+ ms`), "X ms"},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), "127.0.0.1:PORT"},
	{regexp.MustCompile(`tcp/\d+`), "tcp/PORT"},
	{regexp.MustCompile(`\.(org|test):\d+`), ".$1:PORT"},
	{regexp.MustCompile(`Local CA [0-9A-F]+`), "Local CA XXXX"},
	{regexp.MustCompile(`port \d+ is closed`), "port PORT is closed"},
	{regexp.MustCompile(`X25519\w*`), "X25519"},
}

func traceText(res *journey.Result) string {
	var b strings.Builder
	res.WriteText(&b)
	s := b.String()
	for _, m := range masks {
		s = m.re.ReplaceAllString(s, m.with)
	}
	return s
}

func TestTraceGolden(t *testing.T) {
	g, o := traceSetup(t)
	_, httpsPort, _ := net.SplitHostPort(g.HTTPS)
	_, httpPort, _ := net.SplitHostPort(g.HTTP)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	_, closedPort, _ := net.SplitHostPort(closed.Addr().String())
	closed.Close()
	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"good", "https://www.example.org:" + httpsPort + "/api", true},
		{"http", "http://www.example.org:" + httpPort + "/", true},
		{"nxdomain", "https://missing.example.org:" + httpsPort + "/", false},
		{"mismatch", "https://other.example.org:" + httpsPort + "/", false},
		{"unknown_host", "https://nosite.example.org:" + httpsPort + "/", false},
		{"upstream_down", "https://down.example.org:" + httpsPort + "/", false},
		{"closed_port", "https://demo.example.org:" + closedPort + "/", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := o
			if tc.name == "unknown_host" {
				o.Insecure = true // the fallback certificate names no unknown host
			}
			res := journey.Trace(context.Background(), tc.url, o)
			if res.OK != tc.ok {
				t.Errorf("OK = %v, want %v", res.OK, tc.ok)
			}
			got := traceText(res)
			checkGolden(t, "trace_"+tc.name+".golden", got)
		})
	}
}

func TestJourneyNotDisclosedWithoutToken(t *testing.T) {
	g, o := traceSetup(t)
	for _, tc := range []struct {
		name, token string
		want        bool
	}{
		{"no token", "", false},
		{"wrong token", "guess", false},
		{"right token", o.Token, true},
	} {
		req, _ := http.NewRequest("GET", g.URL("demo.example.org", "/"), nil)
		if tc.token != "" {
			req.Header.Set(accesslog.TraceHeader, tc.token)
		}
		resp, err := g.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get(accesslog.JourneyHeader) != ""; got != tc.want {
			t.Errorf("%s: journey disclosed = %v, want %v", tc.name, got, tc.want)
		}
	}
	// The token is never logged.
	if strings.Contains(g.Logs.String(), o.Token) {
		t.Error("the trace token appears in the logs")
	}
}

func writeKeyPair(t *testing.T, dir string, c *tls.Certificate) (string, string) {
	t.Helper()
	certPEM, keyPEM := gatetest.EncodePair(t, c)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(cf, certPEM, 0o644)
	os.WriteFile(kf, keyPEM, 0o600)
	return cf, kf
}

// TestTraceEmbeddedDefault walks the seed's whole journey on the embedded
// default: gatehouse's own DNS answers the CNAME and the address, HTTP is
// redirected, TLS verifies against the local root, the route proxies to the
// demo app, which answers 200.
func TestTraceEmbeddedDefault(t *testing.T) {
	g := gatetest.StartDefault(t)
	tok, err := instance.TraceToken(g.Config, g.DataDir)
	if err != nil {
		t.Fatal(err)
	}
	_, httpPort, _ := net.SplitHostPort(g.HTTP)
	res := journey.Trace(context.Background(), "http://www.gatehouse.test:"+httpPort+"/",
		journey.TraceOptions{DNS: g.DNS, Roots: g.Roots, Token: tok, Timeout: 2 * time.Second})
	got := traceText(res)
	if !res.OK {
		t.Fatalf("trace failed:\n%s", got)
	}
	checkGolden(t, "trace_default.golden", got)
}

// TestTraceFirewallDeny: a source the firewall denies sees its connection
// closed before TLS, and the trace says so.
func TestTraceFirewallDeny(t *testing.T) {
	g := gatetest.Start(t, `
firewall:
  default: deny
  rules:
    - {allow: tcp, from: [198.51.100.0/24], description: office}
sites:
  - hosts: [demo.example.org]
    routes: [{path: /, respond: hi}]
`)
	_, port, _ := net.SplitHostPort(g.HTTPS)
	res := journey.Trace(context.Background(), "https://demo.example.org:"+port+"/",
		journey.TraceOptions{DNS: zoneServer(t), Roots: g.Roots, Timeout: 2 * time.Second})
	got := traceText(res)
	if res.OK {
		t.Fatalf("a denied source completed the journey:\n%s", got)
	}
	checkGolden(t, "trace_firewall_deny.golden", got)
	if st := g.Status()["firewall"]; !strings.Contains(fmt.Sprintf("%+v", st), "127.0.0.1") {
		t.Errorf("the firewall status does not show the denied source: %+v", st)
	}
}

// checkGolden compares got with testdata/name, rewriting it with -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	golden := filepath.Join("testdata", name)
	if *update {
		os.WriteFile(golden, []byte(got), 0o644)
	}
	want, _ := os.ReadFile(golden)
	if got != string(want) {
		t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
	}
}
