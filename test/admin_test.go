package test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"gatehouse/internal/gatetest"
	"gatehouse/internal/testdir"
)

func adminConfig(backend, token string) string {
	return fmt.Sprintf(`
admin:
  listen: 127.0.0.1:0
  token: %s
sites:
  - hosts: [example.org]
    routes:
      - path: /
        proxy:
          to: %s
          headers: {set: {Authorization: "Bearer ${GH_ADMIN_TEST_SECRET:-unset}"}}
`, token, backend)
}

func adminDo(t *testing.T, g *gatetest.Gatehouse, method, path, token string, hdr map[string]string, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+g.AdminAddr()+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	if h, ok := hdr["Host"]; ok {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

func TestAdminAuthAndOrigin(t *testing.T) {
	t.Setenv("GH_ADMIN_TEST_SECRET", "sup3r-s3cret-value")
	g := gatetest.Start(t, adminConfig(echoBackend(t).URL, "tok-123"))
	for _, tc := range []struct {
		name, path, token string
		hdr               map[string]string
		want              int
	}{
		{"health needs no token", "/healthz", "", nil, 200},
		{"ready", "/readyz", "", nil, 200},
		{"no token", "/status", "", nil, 401},
		{"wrong token", "/status", "nope", nil, 401},
		{"good token", "/status", "tok-123", nil, 200},
		{"rebinding host", "/status", "tok-123", map[string]string{"Host": "evil.example:2019"}, 403},
		{"cross origin", "/status", "tok-123", map[string]string{"Origin": "https://evil.example"}, 403},
		{"local origin", "/status", "tok-123", map[string]string{"Origin": "http://localhost:2019"}, 200},
	} {
		resp, _ := adminDo(t, g, "GET", tc.path, tc.token, tc.hdr, "")
		if resp.StatusCode != tc.want {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	// The config view shows the secret as written, never its value.
	_, cfgText := adminDo(t, g, "GET", "/config", "tok-123", nil, "")
	if strings.Contains(cfgText, "sup3r-s3cret-value") || strings.Contains(cfgText, "tok-123") {
		t.Errorf("config view leaks a secret:\n%s", cfgText)
	}
	if !strings.Contains(cfgText, "${GH_ADMIN_TEST_SECRET") {
		t.Errorf("config view lacks the reference:\n%s", cfgText)
	}
}

func TestAdminLoadRefusesBadConfig(t *testing.T) {
	g := gatetest.Start(t, adminConfig(echoBackend(t).URL, "tok"))
	resp, body := adminDo(t, g, "POST", "/load", "tok", nil, "sites:\n  - hosts: [example.org]\n    routes: [{path: /, proxi: x}]\n")
	if resp.StatusCode != 400 || !strings.Contains(body, `unknown key \"proxi\"`) || !strings.Contains(body, "admin API:3:") {
		t.Errorf("bad config: %d %s", resp.StatusCode, body)
	}
	// Still serving the old config.
	r, err := g.Client().Get(g.URL("example.org", "/"))
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("after a refused load: %v %v", r, err)
	}
	r.Body.Close()
	good := fmt.Sprintf("admin: {listen: %s, token: tok}\nlisten: {http: [%q], https: [%q]}\nsites:\n  - hosts: [example.org]\n    routes: [{path: /, respond: new}]\n", g.Config.Admin.Listen, g.Config.Listen.HTTP[0], g.Config.Listen.HTTPS[0])
	resp, body = adminDo(t, g, "POST", "/load", "tok", nil, good)
	if resp.StatusCode != 200 {
		t.Fatalf("good config: %d %s", resp.StatusCode, body)
	}
	r, err = g.Client().Get(g.URL("example.org", "/"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if string(b) != "new" {
		t.Errorf("after load: %q", b)
	}
}

// scrapeMetrics reads the admin API's metrics.
func scrapeMetrics(t *testing.T, g *gatetest.Gatehouse, token string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, body := adminDo(t, g, "GET", "/metrics", token, nil, "")
	if resp.StatusCode != 200 {
		t.Fatalf("metrics: %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("metrics do not parse: %v", err)
	}
	return families
}

// metricSum adds up a family's samples whose labels include labels (-1
// when the family is absent).
func metricSum(families map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	var total float64
	f := families[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for k, v := range labels {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == k && (lp.GetValue() == v || strings.HasSuffix(v, "*") && strings.HasPrefix(lp.GetValue(), strings.TrimSuffix(v, "*"))) {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Histogram != nil:
			total += float64(m.Histogram.GetSampleCount())
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		}
	}
	return total
}

func TestMetrics(t *testing.T) {
	g := gatetest.Start(t, adminConfig(echoBackend(t).URL, "tok"))
	for range 3 {
		r, err := g.Client().Get(g.URL("example.org", "/"))
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
	}
	families := scrapeMetrics(t, g, "tok")
	sum := func(name string, labels map[string]string) float64 { return metricSum(families, name, labels) }
	if got := sum("gatehouse_http_requests_total", map[string]string{"site": "example.org", "route": "/", "code": "2xx"}); got != 3 {
		t.Errorf("requests_total 2xx = %v, want 3", got)
	}
	if got := sum("gatehouse_http_request_duration_seconds", map[string]string{"site": "example.org"}); got != 3 {
		t.Errorf("duration samples = %v, want 3", got)
	}
	if got := sum("gatehouse_tls_handshakes_total", map[string]string{"result": "ok"}); got < 1 {
		t.Errorf("tls handshakes ok = %v", got)
	}
	if got := sum("gatehouse_certificate_expiry_timestamp_seconds", map[string]string{"source": "internal"}); got < float64(time.Now().Unix()) {
		t.Errorf("certificate expiry = %v, want the local root's expiry", got)
	}
	if got := sum("gatehouse_firewall_verdicts_total", nil); got < 1 {
		t.Errorf("firewall verdicts = %v, want the connections counted", got)
	}
	// A refused config counts as a failed reload.
	adminDo(t, g, "POST", "/load", "tok", nil, "sites: [{hosts: []}]")
	families = scrapeMetrics(t, g, "tok")
	if got := sum("gatehouse_config_reloads_total", map[string]string{"result": "failed"}); got != 1 {
		t.Errorf("failed reloads = %v, want 1", got)
	}
}

// TestReadyzCertificates: /readyz?certificates waits for every ACME name's
// certificate; plain /readyz does not, so an HTTP-01 challenge can still
// reach an instance its load balancer checks.
func TestReadyzCertificates(t *testing.T) {
	// A CA that cannot be reached: the name never gets its certificate.
	// certmagic's attempt may still be unwinding in the data folder after
	// shutdown.
	data := testdir.New(t)
	g := gatetest.Start(t, `
data: `+data+`
admin: {listen: 127.0.0.1:0, token: tok}
tls:
  acme: {ca: "https://127.0.0.1:1/directory", email: ops@example.com}
sites:
  - hosts: [pending.example.com]
    routes: [{path: /, respond: hi}]
`)
	if resp, body := adminDo(t, g, "GET", "/readyz", "", nil, ""); resp.StatusCode != 200 {
		t.Errorf("/readyz: %d %s", resp.StatusCode, body)
	}
	resp, body := adminDo(t, g, "GET", "/readyz?certificates", "", nil, "")
	if resp.StatusCode != 503 || !strings.Contains(body, "no certificate yet for pending.example.com") {
		t.Errorf("/readyz?certificates: %d %s", resp.StatusCode, body)
	}
	if resp, body := adminDo(t, g, "GET", "/readyz?certificates=false", "", nil, ""); resp.StatusCode != 200 {
		t.Errorf("/readyz?certificates=false: %d %s", resp.StatusCode, body)
	}
}
