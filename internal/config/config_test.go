package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestErrorsGolden parses every testdata/errors/*.yaml and compares all the
// errors reported, positioned, with the .golden file beside it.
func TestErrorsGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/errors/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(filepath.Base(f), src)
			if err == nil {
				t.Fatal("config parsed; want errors")
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(golden)
			if got != string(want) {
				t.Errorf("errors differ from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestValidConfigs(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, f := range files {
		if _, err := Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func TestDefaults(t *testing.T) {
	c, err := Parse("t.yaml", []byte(`
sites:
  - hosts: [Example.ORG.]
    routes:
      - proxy: [http://127.0.0.1:5000, http://127.0.0.1:5001]
      - {path: /s, redirect: https://example.org}
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Listen.HTTP[0] + " " + c.Listen.HTTPS[0]; got != ":80 :443" {
		t.Errorf("listen defaults %q", got)
	}
	if c.Sites[0].Hosts[0] != "example.org" {
		t.Errorf("host not normalised: %q", c.Sites[0].Hosts[0])
	}
	r := c.Sites[0].Routes[0]
	if r.Path != "/" || len(r.Proxy.To) != 2 || r.Proxy.Policy != "round_robin" || r.Proxy.DialTimeout.D() != 5*time.Second {
		t.Errorf("route defaults: %+v %+v", r, r.Proxy)
	}
	if rd := c.Sites[0].Routes[1].Redirect; rd.To != "https://example.org" || rd.Status != 302 {
		t.Errorf("redirect short form: %+v", rd)
	}
	if c.Server.MaxHeaderBytes != 64<<10 || c.Server.ReadHeaderTimeout.D() != 10*time.Second {
		t.Errorf("server defaults: %+v", c.Server)
	}
}

func TestEnvExpansion(t *testing.T) {
	t.Setenv("GH_TEST_KEY", "s3cret")
	c, err := Parse("t.yaml", []byte(`
sites:
  - hosts: [example.org]
    routes:
      - path: /
        proxy:
          to: "http://${GH_TEST_HOST:-127.0.0.1}:5000"
          headers: {set: {Authorization: "Bearer ${GH_TEST_KEY}"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	p := c.Sites[0].Routes[0].Proxy
	if p.To[0] != "http://127.0.0.1:5000" || p.Headers.Set["Authorization"] != "Bearer s3cret" {
		t.Errorf("expansion: %q %q", p.To[0], p.Headers.Set["Authorization"])
	}
	if len(c.SecretVars) != 1 || c.SecretVars[0] != "GH_TEST_KEY" {
		t.Errorf("secret vars %v", c.SecretVars)
	}
}

func TestPositions(t *testing.T) {
	c, err := Parse("t.yaml", []byte("sites:\n  - hosts: [a.example, b.example]\n    routes:\n      - {path: /x, respond: hi}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.PosOf(&c.Sites[0].Hosts[1]).String(); got != "t.yaml:2:24" {
		t.Errorf("host position %s", got)
	}
	if got := c.PosOf(&c.Sites[0].Routes[0].Path).String(); got != "t.yaml:4:16" {
		t.Errorf("path position %s", got)
	}
}

func TestEmbeddedDefault(t *testing.T) {
	c := Default()
	if c.Demo != "127.0.0.1:5000" || c.Listen.HTTPS[0] != "127.0.0.1:8443" || c.Listen.HTTP[0] != "127.0.0.1:8080" {
		t.Errorf("embedded default: %+v", c.Listen)
	}
}

func TestSize(t *testing.T) {
	for in, want := range map[string]Size{"512": 512, "64KB": 64 << 10, "10m": 10 << 20, "1GiB": 1 << 30, "2k": 2048} {
		c, err := Parse("t.yaml", []byte("server:\n  max_header_bytes: "+in+"\n"))
		if err != nil {
			t.Errorf("%s: %v", in, err)
			continue
		}
		if c.Server.MaxHeaderBytes != want {
			t.Errorf("%s = %d, want %d", in, c.Server.MaxHeaderBytes, want)
		}
	}
}

// FuzzParse feeds arbitrary bytes to the config loader: it must never
// panic, and every error it reports must carry a position.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add(DefaultYAML())
	f.Add([]byte("sites: [{hosts: [a], routes: [{proxy: {to: [&x http://a]}}]}]"))
	f.Add([]byte("a: &a [*a]"))
	f.Fuzz(func(t *testing.T, src []byte) {
		c, err := Parse("fuzz.yaml", src)
		if err == nil {
			if c == nil {
				t.Fatal("nil config without error")
			}
			return
		}
		list, ok := err.(ErrorList)
		if !ok || len(list) == 0 {
			t.Fatalf("error is %T %v, want a non-empty ErrorList", err, err)
		}
		for _, e := range list {
			if e.Pos.File != "fuzz.yaml" || e.Msg == "" {
				t.Fatalf("unpositioned or empty error: %#v", e)
			}
		}
	})
}
