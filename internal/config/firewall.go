package config

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Firewall decides which sources may reach which ports; see docs/firewall.md.
// Deny lists are tried first, then Rules in order; the first match decides,
// else Default.
type Firewall struct {
	// Default is allow, deny or reject for what no rule matches. Empty means
	// deny when rules are given and allow when there are none.
	Default string         `yaml:"default"`
	Rules   []FirewallRule `yaml:"rules"`
	// DenyFiles are files of addresses or CIDRs, one a line (# comments),
	// denied on every port before any rule is tried. Relative paths are
	// read from the config file's folder, again on every reload.
	DenyFiles []string `yaml:"deny_files"`
	// Limits bound what one source may do; zero values do not limit.
	Limits FirewallLimits `yaml:"limits"`
	// Bans shut out a source that keeps breaking limits, like fail2ban.
	Bans FirewallBans `yaml:"bans"`
	// Nftables has the kernel enforce the policy host-wide as well.
	Nftables Nftables `yaml:"nftables"`
	// Force applies a policy even when it would cut the SSH connection the
	// config is being checked from.
	Force bool `yaml:"force"`

	// dir is the folder relative deny files are read from; posOf positions
	// values of this section (Config.PosOf).
	dir   string
	posOf func(any) Pos
}

// FirewallRule is one rule: exactly one of Allow, Deny or Reject names the
// protocol (tcp, udp or any) it applies to.
type FirewallRule struct {
	Allow  string `yaml:"allow"`
	Deny   string `yaml:"deny"`
	Reject string `yaml:"reject"`
	// Ports are ports (443) or inclusive ranges (8000-8100); empty is every port.
	Ports []string `yaml:"ports"`
	// From are addresses or CIDRs, IPv4 or IPv6; empty is anyone.
	From        []string `yaml:"from"`
	Description string   `yaml:"description"`
}

// FirewallLimits bound one source: an IPv4 address, or an IPv6 /64 (what
// one IPv6 host is usually given).
type FirewallLimits struct {
	// Connections caps a source's open TCP connections; 0 is no cap.
	Connections int `yaml:"connections"`
	// ConnectionsPerSecond caps new TCP connections per second; 0 is no cap.
	ConnectionsPerSecond float64 `yaml:"connections_per_second"`
	// ConnectionBurst is how many connections may open at once (default
	// 2×ConnectionsPerSecond, at least 1).
	ConnectionBurst int `yaml:"connection_burst"`
	// RequestsPerSecond caps HTTP requests per second (429 beyond); 0 is
	// no cap.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// RequestBurst is how many requests may come at once (default
	// 2×RequestsPerSecond, at least 1).
	RequestBurst int `yaml:"request_burst"`
	// Exempt are addresses or CIDRs never limited nor banned.
	Exempt []string `yaml:"exempt"`
}

// FirewallBans ban a source after After violations (limits hit, failed
// TLS handshakes, floods of 4xx answers) within Within, for For.
type FirewallBans struct {
	// After is how many violations ban a source; 0 turns bans off.
	After int `yaml:"after"`
	// Within is the window violations are counted in (default 1m).
	Within Duration `yaml:"within"`
	// For is how long a ban lasts (default 1h).
	For Duration `yaml:"for"`
}

// Nftables is the kernel backend: gatehouse's own table inet gatehouse.
// Written short as `nftables: on`.
type Nftables struct {
	// Enabled installs the table (needs CAP_NET_ADMIN on Linux).
	Enabled bool `yaml:"enabled,short"`
	// Forward filters forwarded connections to published ports (containers
	// reached through DNAT) with the same rules.
	Forward bool `yaml:"forward"`
}

// MaxBanAfter bounds bans.after: each source keeps that many timestamps.
const MaxBanAfter = 1000

// PosOf returns where a value of this section (a pointer into it) was
// written, when it came from a parsed config.
func (f *Firewall) PosOf(ptr any) Pos {
	if f.posOf == nil {
		return Pos{}
	}
	return f.posOf(ptr)
}

// DenyFile returns the path a deny file is read from.
func (f *Firewall) DenyFile(name string) string {
	if filepath.IsAbs(name) || f.dir == "" {
		return name
	}
	return filepath.Join(f.dir, name)
}

// DefaultAction is Default with its implied value filled in.
func (f *Firewall) DefaultAction() string {
	if f.Default != "" {
		return f.Default
	}
	if len(f.Rules) > 0 {
		return "deny"
	}
	return "allow"
}

// BanWindow and BanTime are Within and For with their defaults.
func (b FirewallBans) BanWindow() time.Duration {
	if b.Within == 0 {
		return time.Minute
	}
	return b.Within.D()
}

// BanTime is how long a ban lasts.
func (b FirewallBans) BanTime() time.Duration {
	if b.For == 0 {
		return time.Hour
	}
	return b.For.D()
}

// Verb returns the rule's action (allow, deny or reject) and protocol as
// written; both are empty when none of the three keys is set.
func (r *FirewallRule) Verb() (action, proto string) {
	switch {
	case r.Allow != "":
		return "allow", r.Allow
	case r.Deny != "":
		return "deny", r.Deny
	case r.Reject != "":
		return "reject", r.Reject
	}
	return "", ""
}

// ParsePortRange reads 443 or 8000-8100 (inclusive, 1 to 65535).
func ParsePortRange(s string) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if !isRange {
		b = a
	}
	l, err1 := parsePort(a)
	h, err2 := parsePort(b)
	switch {
	case err1 != nil:
		return 0, 0, err1
	case err2 != nil:
		return 0, 0, err2
	case l > h:
		return 0, 0, fmt.Errorf("range %d-%d runs backwards", l, h)
	}
	return l, h, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

// DenyEntry is one line of a deny file.
type DenyEntry struct {
	Prefix netip.Prefix
	Line   int
}

// ParseDenyList reads a deny file: one address or CIDR a line; blank lines
// and text after # are ignored. Every bad line is reported with its number.
func ParseDenyList(data []byte) ([]DenyEntry, []LineError) {
	var out []DenyEntry
	var bad []LineError
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s, _, _ := strings.Cut(sc.Text(), "#")
		// Lists such as Spamhaus DROP write "192.0.2.0/24 ; SBL123".
		s, _, _ = strings.Cut(s, ";")
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		p, err := ParsePrefix(s)
		if err != nil {
			bad = append(bad, LineError{Line: line, Msg: fmt.Sprintf("%q is not an address or CIDR", trim(s, 60))})
			continue
		}
		out = append(out, DenyEntry{Prefix: p, Line: line})
	}
	if err := sc.Err(); err != nil {
		bad = append(bad, LineError{Line: line + 1, Msg: err.Error()})
	}
	return out, bad
}

// LineError is a problem on one line of a file that is not the config.
type LineError struct {
	Line int
	Msg  string
}

func trim(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// Decide is the plain reading of the rules: the action and the 1-based
// number of the rule that decides a packet (0 for the default), deny lists
// aside. It scans every rule, so it is for validation and tests; the
// firewall package compiles the same meaning into an indexed policy.
func (f *Firewall) Decide(proto string, port uint16, src netip.Addr) (action string, rule int) {
	src = src.Unmap()
	for i := range f.Rules {
		r := &f.Rules[i]
		act, p := r.Verb()
		if p != proto && p != "any" {
			continue
		}
		if len(r.Ports) > 0 {
			in := false
			for _, s := range r.Ports {
				lo, hi, err := ParsePortRange(s)
				in = in || err == nil && lo <= port && port <= hi
			}
			if !in {
				continue
			}
		}
		if len(r.From) > 0 {
			in := false
			for _, s := range r.From {
				pf, err := ParsePrefix(s)
				in = in || err == nil && pf.Contains(src)
			}
			if !in {
				continue
			}
		}
		return act, i + 1
	}
	return f.DefaultAction(), 0
}

func (c *Config) validateFirewall(errs *ErrorList) {
	f := &c.Firewall
	f.posOf = c.PosOf
	if c.File != "" && c.File != DefaultName {
		f.dir = filepath.Dir(c.File)
	}
	if f.Default != "" {
		c.checkOneOf(errs, &f.Default, "firewall default", "allow", "deny", "reject")
	}
	shapes := make([]*ruleShape, len(f.Rules))
	for i := range f.Rules {
		shapes[i] = c.validateFirewallRule(errs, i)
	}
	warnShadowed(c, errs, shapes)

	for i := range f.DenyFiles {
		name := &f.DenyFiles[i]
		path := f.DenyFile(*name)
		data, err := os.ReadFile(path)
		if err != nil {
			errs.Add(c.PosOf(name), fmt.Sprintf("cannot read deny file %q: %v", *name, unwrapPathErr(err)))
			continue
		}
		_, bad := ParseDenyList(data)
		for _, b := range bad {
			errs.Add(Pos{File: path, Line: b.Line}, b.Msg+": write one address or CIDR a line, such as 192.0.2.7 or 198.51.100.0/24")
		}
	}

	l := &f.Limits
	if l.Connections < 0 {
		errs.Add(c.PosOf(&l.Connections), "limits connections cannot be negative: use 0 for no cap")
	}
	for _, v := range []*float64{&l.ConnectionsPerSecond, &l.RequestsPerSecond} {
		if *v < 0 {
			errs.Add(c.PosOf(v), "a rate cannot be negative: use 0 for no cap")
		}
	}
	for _, v := range []*int{&l.ConnectionBurst, &l.RequestBurst} {
		if *v < 0 {
			errs.Add(c.PosOf(v), "a burst cannot be negative: leave it out for the default")
		}
	}
	for i := range l.Exempt {
		p := &l.Exempt[i]
		if _, err := ParsePrefix(*p); err != nil {
			errs.Add(c.PosOf(p), fmt.Sprintf("exempt %q is not an address or CIDR: write 192.0.2.7 or 2001:db8::/32", *p))
		}
	}
	b := &f.Bans
	if b.After < 0 || b.After > MaxBanAfter {
		errs.Add(c.PosOf(&b.After), fmt.Sprintf("bans after must be from 1 to %d violations, or 0 for no bans", MaxBanAfter))
	}
	if b.After > 0 && !c.firewallCounts() {
		errs.Warn(c.PosOf(&b.After), "bans are on but no limit is set, so only reported violations (failed TLS handshakes, 4xx floods) count: set limits to ban abusers of them too")
	}
	if f.Nftables.Forward && !f.Nftables.Enabled {
		errs.Warn(c.PosOf(&f.Nftables.Forward), "nftables forward has no effect while nftables is off: set nftables enabled: true")
	}
	c.checkSSHLockout(errs)
	c.checkAdminLockout(errs)
}

func (c *Config) firewallCounts() bool {
	l := &c.Firewall.Limits
	return l.Connections > 0 || l.ConnectionsPerSecond > 0 || l.RequestsPerSecond > 0
}

// ruleShape is what a rule matches, parsed, for overlap checks.
type ruleShape struct {
	index  int
	action string
	tcp    bool
	udp    bool
	ports  [][2]uint16    // nil is every port
	from   []netip.Prefix // nil is anyone
}

func (c *Config) validateFirewallRule(errs *ErrorList, i int) *ruleShape {
	r := &c.Firewall.Rules[i]
	set := 0
	for _, s := range []string{r.Allow, r.Deny, r.Reject} {
		if s != "" {
			set++
		}
	}
	ok := true
	if set != 1 {
		errs.Add(c.PosOf(r), fmt.Sprintf("firewall rule %d needs exactly one of allow, deny or reject, naming a protocol: write {allow: tcp, ports: [443]}", i+1))
		ok = false
	}
	action, proto := r.Verb()
	sh := &ruleShape{index: i, action: action}
	switch proto {
	case "tcp":
		sh.tcp = true
	case "udp":
		sh.udp = true
	case "any":
		sh.tcp, sh.udp = true, true
	case "":
	default:
		field := map[string]*string{"allow": &r.Allow, "deny": &r.Deny, "reject": &r.Reject}[action]
		errs.Add(c.PosOf(field), fmt.Sprintf("protocol %q is not known: use tcp, udp or any", proto))
		ok = false
	}
	for j := range r.Ports {
		p := &r.Ports[j]
		lo, hi, err := ParsePortRange(*p)
		if err != nil {
			errs.Add(c.PosOf(p), fmt.Sprintf("port %q is not valid: %v; write 443 or a range such as 8000-8100", *p, err))
			ok = false
			continue
		}
		sh.ports = append(sh.ports, [2]uint16{lo, hi})
	}
	for j := range r.From {
		s := &r.From[j]
		pf, err := ParsePrefix(*s)
		if err != nil {
			errs.Add(c.PosOf(s), fmt.Sprintf("from %q is not an address or CIDR: write 192.0.2.7, 198.51.100.0/24 or 2001:db8::/32", *s))
			ok = false
			continue
		}
		if raw, err := netip.ParsePrefix(*s); err == nil && raw.Addr().Unmap() != pf.Addr() {
			errs.Warn(c.PosOf(s), fmt.Sprintf("from %q has bits set past its prefix length, so it means %s: write %s", *s, pf, pf))
		}
		sh.from = append(sh.from, pf)
	}
	if !ok {
		return nil
	}
	return sh
}

// maxOverlapWarnings keeps a config of thousands of rules from burying its
// errors under warnings.
const maxOverlapWarnings = 20

// warnShadowed warns about a rule that an earlier rule covers entirely (it
// can never match), and about a rule that an earlier rule with another
// action covers in part (that part is decided by the earlier rule).
func warnShadowed(c *Config, errs *ErrorList, shapes []*ruleShape) {
	n := 0
	for j, b := range shapes {
		if b == nil {
			continue
		}
		for _, a := range shapes[:j] {
			if a == nil {
				continue
			}
			rb, ra := &c.Firewall.Rules[j], &c.Firewall.Rules[a.index]
			if a.covers(b) {
				errs.Warn(c.PosOf(rb), fmt.Sprintf("firewall rule %d can never match: rule %d (line %d) matches everything it does first; remove it or move it above rule %d", j+1, a.index+1, c.PosOf(ra).Line, a.index+1))
				n++
				break
			}
			if a.action != b.action && a.overlaps(b) {
				errs.Warn(c.PosOf(rb), fmt.Sprintf("firewall rule %d overlaps rule %d (line %d), which %ss the traffic both match; move rule %d first if it should decide that part", j+1, a.index+1, c.PosOf(ra).Line, a.action, j+1))
				n++
				break
			}
		}
		if n >= maxOverlapWarnings {
			errs.Warn(c.PosOf(&c.Firewall.Rules), fmt.Sprintf("more overlapping firewall rules were not reported after %d: check them with gatehouse firewall explain", maxOverlapWarnings))
			return
		}
	}
}

func (a *ruleShape) covers(b *ruleShape) bool {
	if b.tcp && !a.tcp || b.udp && !a.udp {
		return false
	}
	if a.ports != nil {
		if b.ports == nil {
			return false
		}
		for _, pb := range b.ports {
			in := false
			for _, pa := range a.ports {
				in = in || pa[0] <= pb[0] && pb[1] <= pa[1]
			}
			if !in {
				return false
			}
		}
	}
	if a.from != nil {
		if b.from == nil {
			return false
		}
		for _, fb := range b.from {
			in := false
			for _, fa := range a.from {
				in = in || fa.Bits() <= fb.Bits() && fa.Contains(fb.Addr())
			}
			if !in {
				return false
			}
		}
	}
	return true
}

func (a *ruleShape) overlaps(b *ruleShape) bool {
	if !(a.tcp && b.tcp || a.udp && b.udp) {
		return false
	}
	if a.ports != nil && b.ports != nil {
		hit := false
		for _, pa := range a.ports {
			for _, pb := range b.ports {
				hit = hit || pa[0] <= pb[1] && pb[0] <= pa[1]
			}
		}
		if !hit {
			return false
		}
	}
	if a.from != nil && b.from != nil {
		hit := false
		for _, fa := range a.from {
			for _, fb := range b.from {
				hit = hit || fa.Overlaps(fb)
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

// checkSSHLockout refuses a kernel policy that would drop the SSH session
// this config is checked from (SSH_CONNECTION is "client port server port"):
// the operator would lose the machine. The listener backend alone never
// touches sshd, so for SSH only the nftables backend is checked.
func (c *Config) checkSSHLockout(errs *ErrorList) {
	f := &c.Firewall
	if !f.Nftables.Enabled || f.Force {
		return
	}
	fields := strings.Fields(os.Getenv("SSH_CONNECTION"))
	if len(fields) != 4 {
		return
	}
	client, err1 := netip.ParseAddr(fields[0])
	port, err2 := strconv.ParseUint(fields[3], 10, 16)
	if err1 != nil || err2 != nil {
		return
	}
	c.checkLockout(errs, client.Unmap(), uint16(port), "the SSH session this config is checked from")
}

// checkAdminLockout refuses a policy that would deny the admin API to
// `gatehouse reload` on this machine: the admin listener is behind the
// firewall, and a policy that shuts it out could then only be undone by a
// restart. The command connects from the loopback address of the admin
// address's family.
func (c *Config) checkAdminLockout(errs *ErrorList) {
	f := &c.Firewall
	if c.Admin.Listen == "" || f.Force {
		return
	}
	ap, err := netip.ParseAddrPort(c.Admin.Listen)
	if err != nil {
		return // a host name or a bad address, reported by the admin checks
	}
	if ap.Port() == 0 {
		return // chosen at start; the rules cannot name it
	}
	client := netip.MustParseAddr("127.0.0.1")
	if ap.Addr().Is6() && !ap.Addr().Is4In6() {
		client = netip.IPv6Loopback()
	} else if ap.Addr().Unmap().IsLoopback() {
		client = ap.Addr().Unmap()
	}
	c.checkLockout(errs, client, ap.Port(), "the admin API (admin listen "+c.Admin.Listen+"), which gatehouse reload connects to")
}

// checkLockout adds an error when the deny files, the rules or the default
// would refuse tcp/port from client; what names the connection cut.
func (c *Config) checkLockout(errs *ErrorList, client netip.Addr, port uint16, what string) {
	f := &c.Firewall
	for i := range f.DenyFiles {
		data, err := os.ReadFile(f.DenyFile(f.DenyFiles[i]))
		if err != nil {
			continue
		}
		entries, _ := ParseDenyList(data)
		for _, e := range entries {
			if e.Prefix.Contains(client) {
				errs.Add(c.PosOf(&f.DenyFiles[i]), fmt.Sprintf("deny file %q (line %d: %s) holds %s, the address of %s, so it would be cut: remove that line, or set firewall force: true", f.DenyFiles[i], e.Line, e.Prefix, client, what))
				return
			}
		}
	}
	action, rule := f.Decide("tcp", port, client)
	if action == "allow" {
		return
	}
	at, by := c.PosOf(&f.Default), "the default"
	if rule > 0 {
		at, by = c.PosOf(&f.Rules[rule-1]), fmt.Sprintf("rule %d", rule)
	}
	if at.Line == 0 {
		at = c.PosOf(f)
	}
	errs.Add(at, fmt.Sprintf("%s would %s tcp/%d from %s, %s, so it would be cut: allow tcp port %d from %s first, or set firewall force: true", by, action, port, client, what, port, client))
}
