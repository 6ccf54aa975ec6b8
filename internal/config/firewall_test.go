package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateFirewallErrors(t *testing.T) {
	t.Setenv("SSH_CONNECTION", "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "bad.list"), []byte("# comment\n192.0.2.7\nnot-an-address\n"), 0o644)
	tests := []struct {
		desc, yaml, want string
	}{
		{"bad default", "firewall: {default: block}", `t.yaml:1:21: firewall default "block" is not known: use one of allow, deny, reject`},
		{"no action", "firewall:\n  rules:\n    - {ports: [80]}", `t.yaml:3:7: firewall rule 1 needs exactly one of allow, deny or reject`},
		{"two actions", "firewall:\n  rules:\n    - {allow: tcp, deny: tcp}", `t.yaml:3:7: firewall rule 1 needs exactly one`},
		{"unknown protocol", "firewall:\n  rules:\n    - {allow: icmp}", `t.yaml:3:15: protocol "icmp" is not known: use tcp, udp or any`},
		{"port zero", "firewall:\n  rules:\n    - {allow: tcp, ports: [0]}", `t.yaml:3:28: port "0" is not valid`},
		{"port too big", "firewall:\n  rules:\n    - {allow: tcp, ports: [65536]}", `t.yaml:3:28: port "65536" is not valid`},
		{"backwards range", "firewall:\n  rules:\n    - {allow: tcp, ports: [9000-8000]}", `range 9000-8000 runs backwards`},
		{"bad range", "firewall:\n  rules:\n    - {allow: tcp, ports: [80-x]}", `t.yaml:3:28: port "80-x" is not valid`},
		{"bad CIDR", "firewall:\n  rules:\n    - {allow: tcp, from: [10.0.0.0/33]}", `t.yaml:3:27: from "10.0.0.0/33" is not an address or CIDR`},
		{"bad v6", "firewall:\n  rules:\n    - {deny: udp, from: [\"2001:db8::g/32\"]}", `t.yaml:3:26: from "2001:db8::g/32" is not an address or CIDR`},
		{"bad exempt", "firewall: {limits: {exempt: [office]}}", `t.yaml:1:30: exempt "office" is not an address or CIDR`},
		{"negative limit", "firewall: {limits: {connections: -1}}", `limits connections cannot be negative`},
		{"negative rate", "firewall: {limits: {requests_per_second: -5}}", `a rate cannot be negative`},
		{"bans too many", "firewall: {bans: {after: 5000}}", `bans after must be from 1 to 1000`},
		{"missing deny file", "firewall: {deny_files: [none.list]}", `t.yaml:1:25: cannot read deny file "none.list"`},
		{"bad deny file line", "firewall: {deny_files: [bad.list]}", `bad.list:3: "not-an-address" is not an address or CIDR`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestValidateFirewallWarnings(t *testing.T) {
	t.Setenv("SSH_CONNECTION", "")
	tests := []struct {
		desc, yaml, want string
	}{
		{"shadowed by a wider rule", "firewall:\n  rules:\n    - {allow: tcp, ports: [1-1024]}\n    - {deny: tcp, ports: [22], from: [10.0.0.0/8]}",
			`t.yaml:4:7: warning: firewall rule 2 can never match: rule 1 (line 3) matches everything it does first`},
		{"shadowed by any protocol", "firewall:\n  rules:\n    - {deny: any, from: [192.0.2.0/24]}\n    - {allow: udp, ports: [53], from: [192.0.2.9]}",
			`t.yaml:4:7: warning: firewall rule 2 can never match: rule 1 (line 3)`},
		{"same rule twice", "firewall:\n  rules:\n    - {allow: tcp, ports: [443]}\n    - {allow: tcp, ports: [443]}",
			`t.yaml:4:7: warning: firewall rule 2 can never match`},
		{"overlap with another action", "firewall:\n  rules:\n    - {deny: tcp, ports: [22], from: [10.0.0.0/8]}\n    - {allow: tcp, ports: [22, 80], from: [10.1.0.0/16, 192.0.2.0/24]}",
			`t.yaml:4:7: warning: firewall rule 2 overlaps rule 1 (line 3), which denys the traffic both match`},
		{"host bits", "firewall:\n  rules:\n    - {allow: tcp, from: [10.0.0.1/8]}",
			`t.yaml:3:27: warning: from "10.0.0.1/8" has bits set past its prefix length, so it means 10.0.0.0/8`},
		{"forward without nftables", "firewall: {nftables: {forward: true}}",
			`warning: nftables forward has no effect while nftables is off`},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Warnings.Error(); !strings.Contains(got, tc.want) {
				t.Fatalf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestValidateFirewallGood(t *testing.T) {
	t.Setenv("SSH_CONNECTION", "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "drop.list"), []byte("; Spamhaus-style\n198.51.100.0/24 ; SBL1\n2001:db8:bad::/48\n"), 0o644)
	c, err := Parse(filepath.Join(dir, "g.yaml"), []byte(`firewall:
  default: deny
  rules:
    - {allow: tcp, ports: [80, 443], description: web}
    - {allow: udp, ports: [53]}
    - {allow: tcp, ports: [22], from: [192.0.2.0/24, "2001:db8::/32"]}
    - {reject: tcp, ports: [8000-8100]}
  deny_files: [drop.list]
  limits: {connections: 100, connections_per_second: 20, requests_per_second: 50, exempt: [192.0.2.1]}
  bans: {after: 10, within: 1m, for: 1h}
  nftables: {enabled: true, forward: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings; len(w) != 0 {
		t.Errorf("warnings: %v", w)
	}
	f := &c.Firewall
	if got := f.DenyFile("drop.list"); got != filepath.Join(dir, "drop.list") {
		t.Errorf("deny file resolved to %s", got)
	}
	if p := f.PosOf(&f.Rules[2].From[1]); p.Line != 6 || p.Col != 54 {
		t.Errorf("position %v", p)
	}
	if f.Bans.BanTime().String() != "1h0m0s" || !f.Nftables.Enabled {
		t.Errorf("decoded %+v", f)
	}
	short, err := Parse("s.yaml", []byte("firewall: {nftables: on}"))
	if err != nil || !short.Firewall.Nftables.Enabled {
		t.Errorf("short form: %v %+v", err, short)
	}
}

func TestDecide(t *testing.T) {
	f := Firewall{Rules: []FirewallRule{
		{Allow: "tcp", Ports: []string{"80", "443"}},
		{Deny: "any", From: []string{"203.0.113.0/24"}},
		{Allow: "any", Ports: []string{"53"}},
		{Reject: "tcp", Ports: []string{"8000-8100"}, From: []string{"2001:db8::/32"}},
	}}
	tests := []struct {
		proto  string
		port   uint16
		src    string
		action string
		rule   int
	}{
		{"tcp", 443, "203.0.113.5", "allow", 1},
		{"udp", 53, "203.0.113.5", "deny", 2},
		{"udp", 53, "192.0.2.1", "allow", 3},
		{"tcp", 8050, "2001:db8::1", "reject", 4},
		{"tcp", 8050, "::ffff:192.0.2.1", "deny", 0},
		{"udp", 8050, "2001:db8::1", "deny", 0},
	}
	for _, tc := range tests {
		a, r := f.Decide(tc.proto, tc.port, netip.MustParseAddr(tc.src))
		if a != tc.action || r != tc.rule {
			t.Errorf("%s/%d from %s: got %s by %d, want %s by %d", tc.proto, tc.port, tc.src, a, r, tc.action, tc.rule)
		}
	}
}

func TestSSHLockout(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "drop.list"), []byte("198.51.100.0/24\n"), 0o644)
	base := "firewall:\n  nftables: on\n  default: deny\n  rules:\n    - {allow: tcp, ports: [443]}\n"
	tests := []struct {
		desc, ssh, yaml, want string
	}{
		{"default denies the session", "192.0.2.50 51234 192.0.2.1 22", base, `t.yaml:3:12: the default would deny tcp/22 from 192.0.2.50, the SSH session this config is checked from`},
		{"a rule denies it", "192.0.2.50 51234 192.0.2.1 22", base + "    - {deny: tcp, ports: [22]}\n", `t.yaml:6:7: rule 2 would deny tcp/22`},
		{"deny file holds it", "198.51.100.9 51234 192.0.2.1 22", base + "    - {allow: tcp, ports: [22]}\n  deny_files: [drop.list]\n", `deny file "drop.list" (line 1: 198.51.100.0/24) holds 198.51.100.9`},
		{"allowed", "192.0.2.50 51234 192.0.2.1 22", base + "    - {allow: tcp, ports: [22], from: [192.0.2.0/24]}\n", ""},
		{"forced", "192.0.2.50 51234 192.0.2.1 22", base + "  force: true\n", ""},
		{"kernel backend off", "192.0.2.50 51234 192.0.2.1 22", "firewall: {default: deny}", ""},
		{"no SSH session", "", base, ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			t.Setenv("SSH_CONNECTION", tc.ssh)
			_, err := Parse(filepath.Join(dir, "t.yaml"), []byte(tc.yaml))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

func TestAdminLockout(t *testing.T) {
	t.Setenv("SSH_CONNECTION", "")
	tests := []struct {
		desc, yaml, want string
	}{
		{"default denies the admin port", "admin: {listen: 127.0.0.1:2019}\nfirewall:\n  default: deny\n  rules:\n    - {allow: tcp, ports: [443]}\n",
			`t.yaml:3:12: the default would deny tcp/2019 from 127.0.0.1, the admin API (admin listen 127.0.0.1:2019)`},
		{"a rule rejects it", "admin: {listen: \"[::1]:2019\"}\nfirewall:\n  rules:\n    - {reject: any, from: [\"::1\"]}\n    - {allow: any}\n",
			`t.yaml:4:7: rule 1 would reject tcp/2019 from ::1`},
		{"allowed from loopback", "admin: {listen: 127.0.0.1:2019}\nfirewall:\n  default: deny\n  rules:\n    - {allow: tcp, ports: [2019], from: [127.0.0.0/8]}\n", ""},
		{"forced", "admin: {listen: 127.0.0.1:2019}\nfirewall:\n  default: deny\n  force: true\n", ""},
		{"admin off", "firewall:\n  default: deny\n", ""},
	}
	for _, tc := range tests {
		t.Run(tc.desc, func(t *testing.T) {
			_, err := Parse(filepath.Join(t.TempDir(), "t.yaml"), []byte(tc.yaml))
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("got %v\nwant %q", err, tc.want)
			}
		})
	}
}

// The embedded default must never make a development server reachable from
// the network: every port is denied to other hosts, and what it listens on
// is open to this machine.
func TestEmbeddedDefaultIsLoopbackOnly(t *testing.T) {
	f := &Default().Firewall
	for _, tc := range []struct {
		proto string
		port  uint16
		src   string
		want  string
	}{
		{"tcp", 8080, "127.0.0.1", "allow"}, {"tcp", 8443, "127.0.0.5", "allow"}, {"tcp", 2019, "127.0.0.1", "allow"},
		{"tcp", 5000, "::1", "allow"}, {"tcp", 8053, "::1", "allow"}, {"udp", 8053, "127.0.0.1", "allow"},
		{"tcp", 8443, "192.0.2.1", "deny"}, {"udp", 8053, "2001:db8::1", "deny"}, {"tcp", 2019, "10.0.0.1", "deny"},
		{"tcp", 22, "198.51.100.7", "deny"},
	} {
		if got, _ := f.Decide(tc.proto, tc.port, netip.MustParseAddr(tc.src)); got != tc.want {
			t.Errorf("%s/%d from %s: got %s, want %s", tc.proto, tc.port, tc.src, got, tc.want)
		}
	}
}

// FuzzParseDenyList checks that any file parses without panicking and that
// every entry it keeps is a valid, masked prefix on a line that exists.
func FuzzParseDenyList(f *testing.F) {
	f.Add([]byte("192.0.2.7\n198.51.100.0/24\n"))                 // address and CIDR
	f.Add([]byte("# comment\n\n2001:db8::/32 ; SBL9\n"))          // comments, blank line, Spamhaus style
	f.Add([]byte("10.0.0.1/8\r\n::ffff:192.0.2.1\n"))             // host bits, CRLF, mapped address
	f.Add([]byte("300.1.1.1\n1.2.3.4/99\n\x00\xff\n"))            // garbage
	f.Add([]byte(strings.Repeat("a", 70) + "\n192.0.2.1/32#x\n")) // long bad line
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, bad := ParseDenyList(data)
		lines := strings.Count(string(data), "\n") + 1
		for _, e := range entries {
			if !e.Prefix.IsValid() || e.Prefix != e.Prefix.Masked() || e.Line < 1 || e.Line > lines {
				t.Fatalf("bad entry %+v", e)
			}
		}
		for _, b := range bad {
			if b.Line < 1 || b.Msg == "" {
				t.Fatalf("bad error %+v", b)
			}
		}
	})
}

// FuzzPortRange checks ParsePortRange against its definition.
func FuzzPortRange(f *testing.F) {
	for _, s := range []string{"443", "8000-8100", "0", "65535", "65536", "9-1", " 22 - 23 ", "-", "1-", "+5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lo, hi, err := ParsePortRange(s)
		if err == nil && (lo == 0 || lo > hi) {
			t.Fatalf("%q gave %d-%d", s, lo, hi)
		}
	})
}

// FuzzValidateFirewall checks that any firewall section, however broken,
// gives errors or warnings and never a panic, and that a section accepted
// has rules the plain reading can decide.
func FuzzValidateFirewall(f *testing.F) {
	f.Add("default: deny\nrules:\n  - {allow: tcp, ports: [80, 443], description: web}\n  - {deny: any, from: [203.0.113.0/24]}\n") // valid
	f.Add("rules:\n  - {allow: tcp, deny: udp}\n  - {reject: icmp, ports: [0, 9-1, x]}\n")                                          // two actions, bad protocol and ports
	f.Add("rules:\n  - {allow: any}\n  - {deny: tcp, ports: [22], from: [\"2001:db8::/32\"]}\n")                                    // shadowed
	f.Add("rules:\n  - {allow: udp, from: [10.0.0.1/8, 300.1.1.1, \"::ffff:1.2.3.4/120\"]}\n")                                      // bits past the length, bad address
	f.Add("limits: {connections: -1, requests_per_second: -2, exempt: [x]}\nbans: {after: 100000}\nnftables: {forward: true}\n")    // bad limits
	f.Add("rules: 7\ndeny_files: [/nonexistent/x]\n")                                                                               // wrong shape
	f.Fuzz(func(t *testing.T, section string) {
		t.Setenv("SSH_CONNECTION", "")
		lines := strings.Split(section, "\n")
		for i := range lines {
			lines[i] = "  " + lines[i]
		}
		c, err := Parse("t.yaml", []byte("firewall:\n"+strings.Join(lines, "\n")))
		if err != nil {
			return
		}
		for _, proto := range []string{"tcp", "udp"} {
			c.Firewall.Decide(proto, 443, netip.MustParseAddr("192.0.2.1"))
		}
	})
}
