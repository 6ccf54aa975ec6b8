package nginx

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gatehouse/internal/config"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

var goldens = []struct {
	conf, golden string
	opts         Options
}{
	{"testdata/seed.conf", "testdata/seed.golden.yaml", Options{}},
	{"testdata/seed.conf", "testdata/seed.acme.golden.yaml", Options{ACME: true, Email: "ops@backend.com"}},
	{"testdata/spa/site.conf", "testdata/spa/site.golden.yaml", Options{}},
	{"testdata/api/api.conf", "testdata/api/api.golden.yaml", Options{}},
	{"testdata/include/nginx.conf", "testdata/include/nginx.golden.yaml", Options{}},
	{"testdata/certbot/nginx.conf", "testdata/certbot/nginx.golden.yaml", Options{}},
	{"testdata/certbot/nginx.conf", "testdata/certbot/nginx.acme.golden.yaml", Options{ACME: true}},
	{"testdata/edge/site.conf", "testdata/edge/site.golden.yaml", Options{}},
}

func TestConvertGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(g.golden, func(t *testing.T) {
			got, warns, err := Convert(g.conf, g.opts)
			if err != nil {
				t.Fatal(err)
			}
			if *update {
				if err := os.WriteFile(g.golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(g.golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to write it)", err)
			}
			if string(got) != string(want) {
				t.Errorf("output differs from %s (go test -update rewrites it):\n%s", g.golden, got)
			}
			// Nothing is dropped silently: every warning is a comment.
			for _, w := range warns {
				if !strings.Contains(string(got), "# "+commentText(w.String())) {
					t.Errorf("warning %q is not a comment in the output", w)
				}
			}
			roundTrip(t, got)
		})
	}
}

// pathLine finds the file and folder paths the output names; config.Parse
// checks that they exist, so the test makes them under a temporary folder.
var pathLine = regexp.MustCompile(`(?m)^(\s*-?\s*)(cert|key|root|static|ca): (/\S+)$`)

func roundTrip(t *testing.T, y []byte) {
	t.Helper()
	dir := t.TempDir()
	out := pathLine.ReplaceAllStringFunc(string(y), func(line string) string {
		m := pathLine.FindStringSubmatch(line)
		p := filepath.Join(dir, m[3])
		if m[2] == "root" || m[2] == "static" {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		} else {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, []byte("test\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return m[1] + m[2] + ": " + p
	})
	if _, err := config.Parse("converted.yaml", []byte(out)); err != nil {
		t.Fatalf("converted config does not parse:\n%v\n%s", err, out)
	}
}

func TestConvertSeedRoutes(t *testing.T) {
	got, _, err := Convert("testdata/seed.conf", Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := pathLine.ReplaceAllStringFunc(string(got), func(line string) string {
		m := pathLine.FindStringSubmatch(line)
		p := filepath.Join(dir, filepath.Base(m[3]))
		os.WriteFile(p, []byte("x"), 0o600)
		return m[1] + m[2] + ": " + p
	})
	cfg, err := config.Parse("converted.yaml", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sites) != 1 {
		t.Fatalf("got %d sites, want the HTTPS site only (port 80 is gatehouse's redirect)", len(cfg.Sites))
	}
	s := cfg.Sites[0]
	if s.Hosts[0] != "example-demo.backend.com" || s.TLS.Mode != "files" || len(s.Routes) != 1 {
		t.Fatalf("site = %+v", s)
	}
	r := s.Routes[0]
	if r.Path != "/" || r.Proxy == nil || r.Proxy.To[0] != "http://127.0.0.1:5000" || r.Proxy.Host != "" || len(r.Proxy.Headers.Set) != 0 {
		t.Errorf("route = %+v proxy %+v; want a plain proxy to http://127.0.0.1:5000 with the default headers", r, r.Proxy)
	}
	if got, want := strings.Join(cfg.Listen.HTTP, ",")+" "+strings.Join(cfg.Listen.HTTPS, ","), ":80 :443"; got != want {
		t.Errorf("listen = %s, want %s", got, want)
	}
}

func BenchmarkParse(b *testing.B) {
	src, err := os.ReadFile("testdata/api/api.conf")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(src)))
	for b.Loop() {
		if _, err := ParseBytes("api.conf", src); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkConvert(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Convert("testdata/api/api.conf", Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// TestConvertAccessLogOff: access_log off leaves routes out of the access
// log where nginx would: its location's and those nested in it, a whole
// server's (and no other server's), whatever its place among the level's
// directives, and the routes a rewrite splits off; a nested access_log to
// a file logs again (to gatehouse's one log, with a note).
func TestConvertAccessLogOff(t *testing.T) {
	conf := filepath.Join(t.TempDir(), "site.conf")
	os.WriteFile(conf, []byte(`server {
    listen 80;
    server_name a.test;
    location / { proxy_pass http://127.0.0.1:5000; }
    location /status {
        access_log off;
        proxy_pass http://127.0.0.1:5001;
        location /status/quiet { proxy_pass http://127.0.0.1:5001; }
        location /status/verbose { access_log /var/log/verbose.log; proxy_pass http://127.0.0.1:5001; }
    }
    location /h {
        access_log /var/log/h.log;
        access_log off;
        rewrite ^/h/old$ /new permanent;
        proxy_pass http://127.0.0.1:5002;
    }
}
server {
    listen 80;
    server_name quiet.test;
    location / { proxy_pass http://127.0.0.1:5003; }
    access_log off;
}
`), 0o644)
	got, _, err := Convert(conf, Options{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("converted.yaml", got)
	if err != nil {
		t.Fatalf("%v\n%s", err, got)
	}
	if cfg.Log.Access == "off" {
		t.Errorf("one server's access_log off turned the whole log off:\n%s", got)
	}
	logged := map[string]bool{}
	for _, s := range cfg.Sites {
		for _, r := range s.Routes {
			logged[s.Hosts[0]+r.Path] = r.AccessLog == nil || *r.AccessLog
		}
	}
	want := map[string]bool{
		"a.test/": true, "a.test/status": false, "a.test/status/quiet": false, "a.test/status/verbose": true,
		"a.test/h": false, "a.test/h/old": false, "quiet.test/": false,
	}
	if fmt.Sprint(logged) != fmt.Sprint(want) {
		t.Errorf("logged routes %v, want %v\n%s", logged, want, got)
	}
	if !strings.Contains(string(got), "access_log /var/log/verbose.log: not carried over") {
		t.Errorf("the nested log file is not noted:\n%s", got)
	}
}
