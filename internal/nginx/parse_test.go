package nginx

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// flat writes a tree as one line per directive: depth, line, name, args
// (quoted ones marked with ""), so table tests read like the config.
func flat(ds []*Directive, depth int, out *[]string) {
	for _, d := range ds {
		var args []string
		for i, a := range d.Args {
			if d.Quoted[i] {
				a = `"` + a + `"`
			}
			args = append(args, "["+a+"]")
		}
		*out = append(*out, strings.Repeat(">", depth)+d.Pos.String()+" "+d.Name+" "+strings.Join(args, ""))
		flat(d.Block, depth+1, out)
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string
	}{
		{"simple", "listen 80;\n", []string{"m.conf:1 listen [80]"}},
		{"quotes", `add_header X "a b" 'c d';`, []string{`m.conf:1 add_header [X]["a b"]["c d"]`}},
		{"escapes", `a "x\"y" 'it\'s' "t\tn\n" \; b\ c;`, []string{"m.conf:1 a [\"x\"y\"][\"it's\"][\"t\tn\n\"][\\;][b\\ c]"}},
		{"regex backslash kept", `location ~ \.php$ {}`, []string{`m.conf:1 location [~][\.php$]`}},
		{"hash inside a word", "a b#c; # comment\nd;", []string{"m.conf:1 a [b#c]", "m.conf:2 d "}},
		{"brace after dollar", "set $x ${host}abc;", []string{"m.conf:1 set [$x][${host}abc]"}},
		{"closing brace inside a word", "a b}c;", []string{"m.conf:1 a [b}c]"}},
		{"quote inside a word", `a b"c;`, []string{`m.conf:1 a [b"c]`}},
		{"if parentheses", `if ($host = "x") { return 301 https://x; }`, []string{
			`m.conf:1 if [($host][=]["x"][)]`, `>m.conf:1 return [301][https://x]`}},
		{"blocks and lines", "http {\n  server {\n\n    listen 443\n      ssl;\n  }\n}\n", []string{
			"m.conf:1 http ", ">m.conf:2 server ", ">>m.conf:4 listen [443][ssl]"}},
		{"empty block", "events {}", []string{"m.conf:1 events "}},
		{"multi-line quoted string", "return 200 \"a\nb\";\nnext;", []string{"m.conf:1 return [200][\"a\nb\"]", "m.conf:3 next "}},
		{"crlf", "a 1;\r\nb 2;\r\n", []string{"m.conf:1 a [1]", "m.conf:2 b [2]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ds, err := ParseBytes("m.conf", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			flat(ds, 0, &got)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"stray close", "a;\n}\n", `m.conf:2: unexpected "}": no block is open here`},
		{"unclosed block", "http {\n  server {\n  }\n", `m.conf:4: unexpected end of file: the block opened at line 1 needs a closing "}"`},
		{"missing semicolon at eof", "listen 80", `m.conf:1: unexpected end of file: directive "listen" at line 1 needs a ";" or a block`},
		{"missing semicolon before close", "server {\n listen 80\n}", `m.conf:3: unexpected "}": directive "listen" at line 2 needs a ";" first`},
		{"lone semicolon", "\n;", `m.conf:2: unexpected ";": a directive name must come first`},
		{"lone brace", "{}", `m.conf:1: unexpected "{": a directive name must come first`},
		{"unterminated quote", "a;\nb \"c;\n\n", `m.conf:2: unterminated "-quoted string: it runs to the end of the file`},
		{"text after quote", `a "b"c;`, `m.conf:1: unexpected 'c' after a quoted string: put a space between words`},
		{"too deep", strings.Repeat("a {", 70) + strings.Repeat("}", 70), "m.conf:1: blocks nested more than 64 deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseBytes("m.conf", []byte(tt.src))
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error %v is not an *Error", err)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestInclude(t *testing.T) {
	files := map[string]string{
		"/etc/nginx/nginx.conf":       "http {\n  include sites/*.conf;\n  include missing/*.conf;\n}\n",
		"/etc/nginx/sites/a.conf":     "server { include snippets/x.conf; include local.inc; }\n",
		"/etc/nginx/sites/b.conf":     "server { listen 81; }\n",
		"/etc/nginx/sites/local.inc":  "beside_including_file on;\n",
		"/etc/nginx/snippets/x.conf":  "from_main_dir on;\n",
		"/etc/nginx/loop.conf":        "include loop.conf;\n",
		"/etc/nginx/missing.conf":     "include nothing.conf;\n",
		"/etc/nginx/certbot.conf":     "include /etc/letsencrypt/options-ssl-nginx.conf;\n",
		"/etc/nginx/bad.conf":         "include sites/broken.inc;\n",
		"/etc/nginx/sites/broken.inc": "\n\nserver {\n",
		"/etc/nginx/twoargs.conf":     "include a b;\n",
	}
	p := memParser(files)
	ds, err := p.parseMain("/etc/nginx/nginx.conf")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	flat(ds, 0, &got)
	want := []string{
		"/etc/nginx/nginx.conf:1 http ",
		">/etc/nginx/nginx.conf:2 include [sites/*.conf]",
		">/etc/nginx/sites/a.conf:1 server ",
		">>/etc/nginx/sites/a.conf:1 include [snippets/x.conf]",
		">>/etc/nginx/snippets/x.conf:1 from_main_dir [on]",
		">>/etc/nginx/sites/a.conf:1 include [local.inc]",
		">>/etc/nginx/sites/local.inc:1 beside_including_file [on]",
		">/etc/nginx/sites/b.conf:1 server ",
		">>/etc/nginx/sites/b.conf:1 listen [81]",
		">/etc/nginx/nginx.conf:3 include [missing/*.conf]",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	if ds, err := memParser(files).parseMain("/etc/nginx/certbot.conf"); err != nil || len(ds) != 1 {
		t.Errorf("certbot options include: %v, %d directives; want it kept unexpanded", err, len(ds))
	}
	for file, want := range map[string]string{
		"/etc/nginx/loop.conf":    `/etc/nginx/loop.conf:1: include "loop.conf": /etc/nginx/loop.conf includes itself`,
		"/etc/nginx/missing.conf": `/etc/nginx/missing.conf:1: include "nothing.conf": no such file (looked in /etc/nginx)`,
		"/etc/nginx/bad.conf":     `/etc/nginx/sites/broken.inc:4: unexpected end of file: the block opened at line 3 needs a closing "}"`,
		"/etc/nginx/twoargs.conf": `/etc/nginx/twoargs.conf:1: include takes one file or pattern, got 2 arguments`,
	} {
		_, err := memParser(files).parseMain(file)
		if err == nil || err.Error() != want {
			t.Errorf("%s: got %v\nwant %s", file, err, want)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		src  string
		want bool
	}{
		{"server {\n listen 80;\n}\n", true},
		{"# nginx\nhttp {\n}\n", true},
		{"user www-data;\nworker_processes auto;\n", true},
		{"upstream app { server 127.0.0.1:5000; }", true},
		{"listen:\n  http: [\":80\"]\n", false},
		{"# gatehouse\nsites:\n  - hosts: [a.example]\n", false},
		{"tls: {acme: {email: a@b.c}}\n", false},
		{"---\nsites: []\n", false},
		{"", false},
		{"server", false},
		{"\"quoted\" x;", false},
	}
	for _, tt := range tests {
		if got := Detect([]byte(tt.src)); got != tt.want {
			t.Errorf("Detect(%q) = %v, want %v", tt.src, got, tt.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"server { listen 443 ssl; server_name a.example; location / { proxy_pass http://127.0.0.1:5000/; } }",
		"http { include x/*.conf; upstream u { server 10.0.0.1 weight=2; keepalive 4; } }",
		`if ($host = "a") { return 301 https://$host$request_uri; }`,
		"location ~* \\.(png)$ { root /srv; try_files $uri $uri/ /index.html; }",
		"a \"b\\\"c\" 'd' ${e}f g}h;",
		"server { listen 80; server_name _; return 444; rewrite ^/a/(.*)$ /b/$1 permanent; }",
		"server {\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		p := memParser(map[string]string{"/f/main.conf": string(src), "/f/x/a.conf": "listen 81;"})
		ds, err := p.parseMain("/f/main.conf")
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) || pe.Pos.Line < 1 || pe.Pos.File == "" {
				t.Fatalf("error without a position: %v", err)
			}
			return
		}
		// The converter must take any tree without panicking.
		ConvertTree("/f/main.conf", ds, Options{})
		ConvertTree("/f/main.conf", ds, Options{ACME: true, Email: "a@example.org"})
	})
}
