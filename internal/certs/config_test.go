package certs

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/config"
)

// TestACMEConfigProblems checks tls.acme validation: every problem is
// reported at its line with a way to fix it.
func TestACMEConfigProblems(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "root.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	const site = "sites:\n  - hosts: [%s]\n    routes: [{path: /, respond: {status: 200}}]\n"
	cases := []struct {
		desc, text string
		want       string // substring of the error, "" for a valid config
		line       int
		warning    bool
	}{
		{"valid", "tls:\n  acme: {email: ops@example.com}\n" + strings.Replace(site, "%s", "example.com", 1), "", 0, false},
		{"bad email", "tls:\n  acme:\n    email: not an address\n", "is not an address", 3, false},
		{"unreadable ca_root", "tls:\n  acme:\n    ca_root: /nonexistent/root.pem\n", "cannot read ca_root", 3, false},
		{"ca_root without PEM", "tls:\n  acme:\n    ca_root: " + notPEM + "\n", "holds no PEM certificate", 3, false},
		{"eab half", "tls:\n  acme:\n    eab: {key_id: kid}\n", "needs both key_id and mac_key", 3, false},
		{"eab mac not base64url", "tls:\n  acme:\n    eab: {key_id: kid, mac_key: \"a b!\"}\n", "not base64url", 3, false},
		{"key type", "tls:\n  acme:\n    key_type: dsa\n", "key_type \"dsa\" is not known", 3, false},
		{"unknown challenge", "tls:\n  acme:\n    challenges: [email-01]\n", "challenge \"email-01\" is not known", 3, false},
		{"dns-01 without dns server", "tls:\n  acme:\n    challenges: [dns-01]\n", "set dns.listen", 3, false},
		{"renewal window", "tls:\n  acme:\n    renewal: {window: 1.5}\n", "between 0 and 1", 3, false},
		{"on-demand pattern", "tls:\n  acme:\n    on_demand: {pattern: \"(\"}\n", "does not compile", 3, false},
		{"on-demand ask", "tls:\n  acme:\n    on_demand: {ask: \"ftp://x\"}\n", "is not a URL", 3, false},
		{"wildcard without zone", "tls:\n  acme: {}\n" + strings.Replace(site, "%s", `"*.example.com"`, 1), "needs the dns-01 challenge", 4, false},
		{"wildcard with zone", "tls:\n  acme: {}\ndns:\n  listen: [\":53\"]\n  zones:\n    example.com: {}\n" + strings.Replace(site, "%s", `"*.example.com"`, 1), "", 0, false},
		{"explicit acme for a local name", "tls:\n  acme: {}\nsites:\n  - hosts: [app.test]\n    tls: acme\n    routes: [{path: /, respond: {status: 200}}]\n", "no public CA issues", 4, false},
		{"firewall blocks both challenges", "tls:\n  acme: {}\nfirewall:\n  default: deny\n  rules:\n    - {allow: tcp, ports: [22]}\n" + strings.Replace(site, "%s", "example.com", 1), "the firewall blocks tcp/80", 4, true},
		{"firewall opens 443", "tls:\n  acme: {}\nfirewall:\n  default: deny\n  rules:\n    - {allow: tcp, ports: [443]}\n" + strings.Replace(site, "%s", "example.com", 1), "", 0, false},
		{"firewall denies 80 explicitly", "tls:\n  acme: {challenges: [http-01]}\nfirewall:\n  rules:\n    - {deny: tcp, ports: [\"79-81\"]}\n    - {allow: any}\n" + strings.Replace(site, "%s", "example.com", 1), "blocks tcp/80", 5, true},
	}
	for _, tc := range cases {
		t.Run(tc.desc, func(t *testing.T) {
			cfg, err := config.Parse("g.yaml", []byte(tc.text))
			var all config.ErrorList
			if cfg != nil {
				all = append(all, cfg.Warnings...)
			}
			if l, ok := err.(config.ErrorList); ok {
				all = append(all, l...)
			} else if err != nil {
				t.Fatalf("unexpected error type %T: %v", err, err)
			}
			var found *config.Error
			for _, e := range all {
				if tc.want != "" && strings.Contains(e.Msg, tc.want) {
					found = e
				}
			}
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("got %v, want a valid config", err)
			case tc.want == "":
				for _, w := range all {
					if strings.Contains(w.Msg, "firewall") {
						t.Errorf("unexpected warning %v", w)
					}
				}
			case found == nil:
				t.Fatalf("got %v, want an error containing %q", all, tc.want)
			case found.Pos.Line != tc.line || found.Warning != tc.warning:
				t.Errorf("got %v, want line %d, warning %v", found, tc.line, tc.warning)
			}
		})
	}
}
