package firewall

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/internal/config"
)

var update = flag.Bool("update", false, "rewrite golden files")

// compile parses a firewall config text and compiles its policy.
func compile(t testing.TB, yaml string) *Policy {
	t.Helper()
	c, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(c.Firewall)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const webPolicy = `firewall:
  default: deny
  rules:
    - {allow: tcp, ports: [80, 443], description: web}
    - {deny: any, from: [203.0.113.0/24, "2001:db8:bad::/48"], description: abusers}
    - {allow: udp, ports: [53]}
    - {allow: tcp, ports: [22], from: [198.51.100.0/24, "2001:db8::/32"], description: office ssh}
    - {reject: tcp, ports: [8000-8100]}
    - {allow: any, from: [10.0.0.0/8], ports: [9000-9999]}
`

func TestCheck(t *testing.T) {
	p := compile(t, webPolicy)
	tests := []struct {
		proto Proto
		port  uint16
		src   string
		want  string
	}{
		{TCP, 443, "203.0.113.5", `allowed by rule 1 "web"`},
		{TCP, 80, "2001:db8:bad::1", `allowed by rule 1 "web"`},
		{UDP, 443, "192.0.2.1", `denied by the default`},
		{UDP, 53, "203.0.113.77", `denied by rule 2 "abusers"`},
		{UDP, 53, "192.0.2.1", `allowed by rule 3`},
		{TCP, 53, "192.0.2.1", `denied by the default`},
		{TCP, 22, "198.51.100.9", `allowed by rule 4 "office ssh"`},
		{TCP, 22, "::ffff:198.51.100.9", `allowed by rule 4 "office ssh"`},
		{TCP, 22, "2001:db8:1::1", `allowed by rule 4 "office ssh"`},
		{TCP, 22, "2001:db8:bad::2", `denied by rule 2 "abusers"`},
		{TCP, 22, "192.0.2.1", `denied by the default`},
		{TCP, 8000, "192.0.2.1", `rejected by rule 5`},
		{TCP, 8100, "192.0.2.1", `rejected by rule 5`},
		{TCP, 8101, "192.0.2.1", `denied by the default`},
		{UDP, 9999, "10.1.2.3", `allowed by rule 6`},
		{UDP, 10000, "10.1.2.3", `denied by the default`},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%d from %s", tc.proto, tc.port, tc.src), func(t *testing.T) {
			if got := p.Check(tc.proto, tc.port, netip.MustParseAddr(tc.src)).String(); got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func TestCheckDefaults(t *testing.T) {
	tests := []struct{ yaml, want string }{
		{"firewall: {}", "allowed by the default"},
		{"firewall: {rules: [{allow: udp}]}", "denied by the default"},
		{"firewall: {default: reject, rules: [{allow: udp}]}", "rejected by the default"},
	}
	for _, tc := range tests {
		if got := compile(t, tc.yaml).Check(TCP, 443, netip.MustParseAddr("192.0.2.1")).String(); got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.yaml, got, tc.want)
		}
	}
}

func TestDenyFiles(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "drop.list"), []byte("# drop\n192.0.2.0/24 ; SBL1\n\n2001:db8:bad::/48\n"), 0o644)
	c, err := config.Parse(filepath.Join(dir, "t.yaml"), []byte("firewall:\n  deny_files: [drop.list]\n  rules: [{allow: tcp, ports: [443]}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := Compile(c.Firewall)
	if err != nil {
		t.Fatal(err)
	}
	if v := p.Check(TCP, 443, netip.MustParseAddr("192.0.2.9")); v.Allowed() || v.Rule.Kind != KindDenyList {
		t.Errorf("listed source: %v", v)
	}
	if v := p.Check(TCP, 443, netip.MustParseAddr("2001:db8:bad:1::1")); v.Allowed() {
		t.Errorf("listed v6 source: %v", v)
	}
	if v := p.Check(TCP, 443, netip.MustParseAddr("198.51.100.1")); !v.Allowed() {
		t.Errorf("other source: %v", v)
	}
	got := Explain(p, netip.MustParseAddr("192.0.2.9"), "tcp", 443)
	if want := "line 2 lists 192.0.2.0/24"; !strings.Contains(got, want) {
		t.Errorf("explain %q lacks %q", got, want)
	}
	os.Remove(filepath.Join(dir, "drop.list"))
	if _, err := Compile(c.Firewall); err == nil {
		t.Error("a missing deny file compiled")
	}
}

func TestExplainGolden(t *testing.T) {
	p := compile(t, webPolicy)
	var b strings.Builder
	for _, q := range []struct {
		from, proto string
		port        uint16
	}{
		{"203.0.113.5", "tcp", 22},
		{"198.51.100.7", "tcp", 22},
		{"2001:db8:bad::9", "udp", 53},
		{"10.9.8.7", "udp", 9000},
		{"192.0.2.1", "tcp", 8050},
		{"192.0.2.1", "icmp", 1},
	} {
		fmt.Fprintf(&b, "$ gatehouse firewall explain --from %s --to %s/%d\n", q.from, q.proto, q.port)
		b.WriteString(Explain(p, netip.MustParseAddr(q.from), q.proto, q.port))
	}
	golden := filepath.Join("testdata", "explain.golden")
	if *update {
		os.WriteFile(golden, []byte(b.String()), 0o644)
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if b.String() != string(want) {
		t.Errorf("explain output differs from %s (run with -update to accept):\n%s", golden, b.String())
	}
}

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"tcp/22", "tcp/22"}, {"udp/53", "udp/53"}, {"443", "tcp/443"},
		{"icmp/1", "error"}, {"tcp/0", "error"}, {"tcp/65536", "error"}, {"any/22", "error"},
	}
	for _, tc := range tests {
		p, port, err := ParseTarget(tc.in)
		got := fmt.Sprintf("%s/%d", p, port)
		if err != nil {
			got = "error"
		}
		if got != tc.want {
			t.Errorf("%s: got %s, want %s", tc.in, got, tc.want)
		}
	}
}

// FuzzCompile compiles rules from arbitrary text and checks the indexed
// verdict against the plain reading of the same rules (config.Decide).
func FuzzCompile(f *testing.F) {
	f.Add("tcp", "80,443", "", "deny", "any", "", "203.0.113.0/24", uint16(443), []byte{203, 0, 113, 7})
	f.Add("udp", "53", "192.0.2.0/24", "reject", "tcp", "8000-8100", "", uint16(8050), []byte{192, 0, 2, 1})
	f.Add("any", "1-65535", "2001:db8::/32", "allow", "tcp", "22", "::/0", uint16(22), []byte{0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1})
	f.Add("tcp", "0,70000,9-1", "10.0.0.1/8,x", "allow", "icmp", "", "", uint16(9), []byte{10, 0, 0, 1})
	f.Add("tcp", "65535", "0.0.0.0/0,::ffff:1.2.3.4", "deny", "udp", "65535", "1.2.3.4/32", uint16(65535), []byte{1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, proto1, ports1, from1, action2, proto2, ports2, from2 string, port uint16, ip []byte) {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, ",")
		}
		fw := config.Firewall{Default: "deny", Rules: []config.FirewallRule{
			{Allow: proto1, Ports: split(ports1), From: split(from1)},
			{Allow: proto2, Ports: split(ports2), From: split(from2)},
		}}
		switch action2 {
		case "deny":
			fw.Rules[1] = config.FirewallRule{Deny: proto2, Ports: fw.Rules[1].Ports, From: fw.Rules[1].From}
		case "reject":
			fw.Rules[1] = config.FirewallRule{Reject: proto2, Ports: fw.Rules[1].Ports, From: fw.Rules[1].From}
		}
		p, err := Compile(fw)
		if err != nil {
			return // Decide skips what Compile refuses; validation reports it
		}
		src, ok := netip.AddrFromSlice(ip)
		if !ok {
			return
		}
		for _, pr := range []Proto{TCP, UDP} {
			v := p.Check(pr, port, src)
			action, rule := fw.Decide(pr.String(), port, src)
			if v.Action.String() != action || v.Rule.Number != rule {
				t.Fatalf("%s/%d from %s: compiled %v, plain reading %s by rule %d", pr, port, src, v, action, rule)
			}
		}
	})
}

// TestCheckAgreesWithDecide runs many random rules and probes through both
// readings of the rules.
func TestCheckAgreesWithDecide(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	fw := randomFirewall(r, 300, 40)
	p, err := Compile(fw)
	if err != nil {
		t.Fatal(err)
	}
	for range 20000 {
		src, port := randomProbe(r)
		for _, pr := range []Proto{TCP, UDP} {
			v := p.Check(pr, port, src)
			action, rule := fw.Decide(pr.String(), port, src)
			if v.Action.String() != action || v.Rule.Number != rule {
				t.Fatalf("%s/%d from %s: compiled %v, plain reading %s by rule %d", pr, port, src, v, action, rule)
			}
		}
	}
}

// randomFirewall makes n rules, each with up to cidrs sources, drawn from
// a few networks so that rules overlap often.
func randomFirewall(r *rand.Rand, n, cidrs int) config.Firewall {
	fw := config.Firewall{Default: "deny"}
	protos := []string{"tcp", "udp", "any"}
	for range n {
		var rule config.FirewallRule
		proto := protos[r.IntN(3)]
		switch r.IntN(3) {
		case 0:
			rule.Allow = proto
		case 1:
			rule.Deny = proto
		default:
			rule.Reject = proto
		}
		for range r.IntN(3) {
			lo := 1 + r.IntN(2000)
			if r.IntN(2) == 0 {
				rule.Ports = append(rule.Ports, fmt.Sprint(lo))
			} else {
				rule.Ports = append(rule.Ports, fmt.Sprintf("%d-%d", lo, lo+r.IntN(500)))
			}
		}
		for range r.IntN(cidrs) {
			rule.From = append(rule.From, randomPrefix(r).String())
		}
		fw.Rules = append(fw.Rules, rule)
	}
	return fw
}

func randomPrefix(r *rand.Rand) netip.Prefix {
	if r.IntN(4) == 0 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(4)), byte(r.IntN(256)), 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(256))})
		pf, _ := a.Prefix(32 + r.IntN(97))
		return pf
	}
	a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
	pf, _ := a.Prefix(8 + r.IntN(25))
	return pf
}

func randomProbe(r *rand.Rand) (netip.Addr, uint16) {
	port := uint16(1 + r.IntN(2600))
	if r.IntN(4) == 0 {
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(r.IntN(4)), byte(r.IntN(256)), 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(r.IntN(256))}), port
	}
	return netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))}), port
}

// BenchmarkCheck is the verdict path with 5,000 rules holding about
// 100,000 CIDRs, IPv4 and IPv6, and a 10,000-line deny list.
func BenchmarkCheck(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	fw := randomFirewall(r, 5000, 40)
	var deny strings.Builder
	for range 10000 {
		fmt.Fprintln(&deny, netip.AddrFrom4([4]byte{198, 18, byte(r.IntN(256)), byte(r.IntN(256))}))
	}
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "deny.list"), []byte(deny.String()), 0o644)
	fw.DenyFiles = []string{filepath.Join(dir, "deny.list")}
	p, err := Compile(fw)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, rl := range p.Rules() {
		n += len(rl.From)
	}
	// Probes fall where the rules are, so lookups find entries at many
	// prefix lengths: the index's worst case.
	var probes [2][]netip.Addr
	var ports [2][]uint16
	for len(probes[0]) < 1024 || len(probes[1]) < 1024 {
		a, port := randomProbe(r)
		fam := 0
		if a.Is6() {
			fam = 1
		}
		probes[fam] = append(probes[fam], a)
		ports[fam] = append(ports[fam], port)
	}
	for fam, name := range []string{"ipv4", "ipv6"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				p.Check(TCP, ports[fam][i%1024], probes[fam][i%1024])
			}
			b.ReportMetric(float64(n), "cidrs")
			b.ReportMetric(float64(len(p.Rules())), "rules")
		})
	}
}

// BenchmarkCheckSmall is the verdict path with a typical handful of rules.
func BenchmarkCheckSmall(b *testing.B) {
	p := compile(b, webPolicy)
	src := netip.MustParseAddr("198.51.100.7")
	b.ReportAllocs()
	for b.Loop() {
		p.Check(TCP, 22, src)
	}
}

// TestEmbeddedDefaultFirewall: the default's ports answer this machine
// only, over IPv4 and IPv6, and the section has nothing to warn about.
func TestEmbeddedDefaultFirewall(t *testing.T) {
	c, err := config.Parse("default.yaml", []byte(`firewall:
  default: deny
  rules:
    - {allow: tcp, ports: [8080, 8443, 8053, 2019, 5000], from: [127.0.0.0/8, "::1"], description: this machine only}
    - {allow: udp, ports: [8053], from: [127.0.0.0/8, "::1"], description: this machine only}
`))
	if err != nil || len(c.Warnings) > 0 {
		t.Fatalf("%v %v", err, c.Warnings)
	}
	p, err := Compile(c.Firewall)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proto Proto
		port  uint16
		src   string
		want  bool
	}{
		{TCP, 8443, "127.0.0.1", true}, {TCP, 8080, "127.9.9.9", true}, {UDP, 8053, "::1", true}, {TCP, 8053, "::1", true},
		{TCP, 2019, "127.0.0.1", true}, {TCP, 5000, "::1", true}, {TCP, 2019, "192.0.2.1", false}, {UDP, 5000, "127.0.0.1", false},
		{TCP, 8443, "192.0.2.1", false}, {UDP, 8053, "2001:db8::1", false}, {UDP, 8080, "127.0.0.1", false}, {TCP, 22, "127.0.0.1", false},
	} {
		if got := p.Check(tc.proto, tc.port, netip.MustParseAddr(tc.src)).Allowed(); got != tc.want {
			t.Errorf("%s/%d from %s: allowed %v, want %v", tc.proto, tc.port, tc.src, got, tc.want)
		}
	}
}

// BenchmarkCheckDenyList is a common shape: a few rules behind a
// 100,000-line deny list of addresses and networks spread over the whole
// IPv4 space, as blocklists are.
func BenchmarkCheckDenyList(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	var deny strings.Builder
	lens := []int{32, 32, 32, 24, 24, 22, 20, 16}
	for range 100000 {
		a := netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
		pf, _ := a.Prefix(lens[r.IntN(len(lens))])
		fmt.Fprintln(&deny, pf)
	}
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "deny.list"), []byte(deny.String()), 0o644)
	c, err := config.Parse(filepath.Join(dir, "t.yaml"), []byte(webPolicy+"  deny_files: [deny.list]\n"))
	if err != nil {
		b.Fatal(err)
	}
	p, err := Compile(c.Firewall)
	if err != nil {
		b.Fatal(err)
	}
	probes := make([]netip.Addr, 1024)
	for i := range probes {
		probes[i] = netip.AddrFrom4([4]byte{byte(1 + r.IntN(223)), byte(r.IntN(256)), byte(r.IntN(256)), byte(r.IntN(256))})
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Check(TCP, 443, probes[i%1024])
	}
}
