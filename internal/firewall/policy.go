// Package firewall owns the security-group model of gatehouse: which source
// may reach which port, decided before a byte of a connection is read.
//
// Compile turns the config's firewall section into an immutable Policy;
// Policy.Check is its verdict, with the rule that decided it. A Guard lives
// across reloads and holds what a policy cannot: per-source limits, bans,
// counters and a sampled log of denials. The Guard enforces in gatehouse's
// own sockets (Listener, AllowPacket, Middleware); the nft subpackage has
// the kernel enforce the same Policy host-wide.
package firewall

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"gatehouse/internal/config"
)

// Proto is a transport protocol, or a set of them.
type Proto uint8

const (
	TCP Proto = 1 << iota
	UDP
	Any = TCP | UDP
)

// ParseProto reads tcp, udp or any.
func ParseProto(s string) (Proto, bool) {
	switch s {
	case "tcp":
		return TCP, true
	case "udp":
		return UDP, true
	case "any":
		return Any, true
	}
	return 0, false
}

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	case Any:
		return "any"
	}
	return "none"
}

// Action is what a verdict does with a connection or packet.
type Action uint8

const (
	Allow Action = iota
	// Deny drops: the listener closes the connection, the kernel drops
	// the packet silently.
	Deny
	// Reject refuses: the listener resets the connection, the kernel
	// answers with a TCP reset or an ICMP port-unreachable.
	Reject
)

func (a Action) String() string {
	return [...]string{"allow", "deny", "reject"}[a]
}

// Kind says where a deciding rule comes from.
type Kind uint8

const (
	KindRule     Kind = iota // a rule of firewall.rules
	KindDefault              // firewall.default
	KindDenyList             // a line of a deny file
	KindBan                  // a ban the Guard put on the source
	KindLimit                // a per-source limit the Guard enforces
)

// PortRange is an inclusive range of ports.
type PortRange struct{ Lo, Hi uint16 }

// Rule is one compiled rule. A Policy's rules are immutable.
type Rule struct {
	Kind Kind
	// Number is the rule's 1-based place in firewall.rules (KindRule).
	Number      int
	Action      Action
	Proto       Proto
	Ports       []PortRange    // nil is every port
	From        []netip.Prefix // nil is anyone
	Description string
	// Pos is where the rule was written (file:line:col), or the deny file.
	Pos string
	// Lines are the deny file's line of each From entry (KindDenyList).
	Lines []int

	idx int // place in the policy's counters; -1 for bans and limits
}

// Name is how messages and the admin view name the rule.
func (r *Rule) Name() string {
	switch r.Kind {
	case KindDefault:
		return "the default"
	case KindDenyList:
		return "deny list " + r.Pos
	case KindBan:
		return "a ban"
	case KindLimit:
		return "the " + r.Description + " limit"
	}
	if r.Description != "" {
		return fmt.Sprintf("rule %d %q", r.Number, r.Description)
	}
	return fmt.Sprintf("rule %d", r.Number)
}

// Verdict is the decision on one connection or packet.
type Verdict struct {
	Action Action
	// Rule decided it; never nil in a verdict from Check or a Guard.
	Rule *Rule
}

// Allowed reports whether the verdict lets the traffic through.
func (v Verdict) Allowed() bool { return v.Action == Allow }

// String reads like `allowed by rule 1 "web"` or `denied by the default`.
func (v Verdict) String() string {
	past := [...]string{"allowed", "denied", "rejected"}[v.Action]
	if v.Rule == nil {
		return past
	}
	return past + " by " + v.Rule.Name()
}

// Policy is a compiled firewall section. It is immutable and safe for
// concurrent use; Check does not allocate.
type Policy struct {
	// rules are in the order they are tried: deny lists, then
	// firewall.rules; def decides what none matches.
	rules []*Rule
	def   *Rule
	v4    index
	v6    index

	limits  config.FirewallLimits
	exempt  []netip.Prefix
	bans    config.FirewallBans
	nft     config.Nftables
	counts  []counter // per rule, then the default
	denyLen int       // how many of rules are deny lists
}

type counter struct{ allowed, denied atomic.Uint64 }

// Compile builds a Policy from a validated firewall section, reading its
// deny files. An error names what could not be compiled.
func Compile(cfg config.Firewall) (*Policy, error) {
	p := &Policy{limits: cfg.Limits, bans: cfg.Bans, nft: cfg.Nftables}
	for _, name := range cfg.DenyFiles {
		path := cfg.DenyFile(name)
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("reading deny file: %w", err)
		}
		entries, bad := config.ParseDenyList(data)
		if len(bad) > 0 {
			return nil, fmt.Errorf("deny file %s:%d: %s", path, bad[0].Line, bad[0].Msg)
		}
		r := &Rule{Kind: KindDenyList, Action: Deny, Proto: Any, Pos: path}
		for _, e := range entries {
			r.From = append(r.From, e.Prefix)
			r.Lines = append(r.Lines, e.Line)
		}
		p.rules = append(p.rules, r)
	}
	p.denyLen = len(p.rules)
	for i := range cfg.Rules {
		cr := &cfg.Rules[i]
		verb, proto := cr.Verb()
		r := &Rule{Kind: KindRule, Number: i + 1, Description: cr.Description, Pos: cfg.PosOf(cr).String()}
		var ok bool
		if r.Action, ok = parseAction(verb); !ok {
			return nil, fmt.Errorf("firewall rule %d: needs one of allow, deny or reject", i+1)
		}
		if r.Proto, ok = ParseProto(proto); !ok {
			return nil, fmt.Errorf("firewall rule %d: protocol %q is not tcp, udp or any", i+1, proto)
		}
		for _, s := range cr.Ports {
			lo, hi, err := config.ParsePortRange(s)
			if err != nil {
				return nil, fmt.Errorf("firewall rule %d: %w", i+1, err)
			}
			r.Ports = append(r.Ports, PortRange{lo, hi})
		}
		for _, s := range cr.From {
			pf, err := config.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("firewall rule %d: from %q: %w", i+1, s, err)
			}
			r.From = append(r.From, pf)
		}
		p.rules = append(p.rules, r)
	}
	def, ok := parseAction(cfg.DefaultAction())
	if !ok {
		return nil, fmt.Errorf("firewall default %q is not allow, deny or reject", cfg.Default)
	}
	p.def = &Rule{Kind: KindDefault, Action: def, Proto: Any, Pos: cfg.PosOf(&cfg.Default).String()}
	for _, s := range cfg.Limits.Exempt {
		pf, err := config.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("firewall limits exempt %q: %w", s, err)
		}
		p.exempt = append(p.exempt, pf)
	}
	for i, r := range p.rules {
		r.idx = i
	}
	p.def.idx = len(p.rules)
	p.counts = make([]counter, len(p.rules)+1)
	p.build()
	return p, nil
}

func parseAction(s string) (Action, bool) {
	switch s {
	case "allow":
		return Allow, true
	case "deny":
		return Deny, true
	case "reject":
		return Reject, true
	}
	return 0, false
}

// Rules returns the rules in the order they are tried (deny lists first).
// The caller must not modify them.
func (p *Policy) Rules() []*Rule { return p.rules }

// Default is the rule that decides what no other rule matches.
func (p *Policy) Default() *Rule { return p.def }

// Nftables returns the kernel backend's settings.
func (p *Policy) Nftables() config.Nftables { return p.nft }

// Check decides traffic to proto/port from src. proto is TCP or UDP.
func (p *Policy) Check(proto Proto, port uint16, src netip.Addr) Verdict {
	i := p.lookup(proto, port, src)
	if i < 0 {
		return Verdict{Action: p.def.Action, Rule: p.def}
	}
	r := p.rules[i]
	return Verdict{Action: r.Action, Rule: r}
}

// count records a verdict in the rule's counters.
func (p *Policy) count(v Verdict) {
	i := v.Rule.idx
	if i < 0 || i >= len(p.counts) {
		return // a ban or a limit, counted by the Guard
	}
	if v.Allowed() {
		p.counts[i].allowed.Add(1)
	} else {
		p.counts[i].denied.Add(1)
	}
}

// The index finds the first matching rule without scanning the rules. Each
// family has one hash table per prefix length in use, keyed by the masked
// address; a table entry (a bucket) holds every rule with that exact source
// prefix, compiled into the first rule for each elementary port interval
// and protocol. A lookup masks the address once per length, so it costs a
// handful of map probes however many rules and CIDRs there are, and keeps
// the lowest rule index found. Lengths are sorted by the lowest rule they
// hold, so the walk stops as soon as no remaining length can do better.

type key struct{ hi, lo uint64 }

type index struct{ lens []lenTable }

type lenTable struct {
	bits uint8
	min  int32 // lowest rule index in this table
	m    map[key]*bucket
}

type bucket struct {
	starts []uint16   // elementary port intervals: [starts[i], starts[i+1])
	first  [][2]int32 // per interval, the first rule for tcp and udp, or -1
	rules  []int32    // while building: the rules with this prefix, in order
}

func addrKey(a netip.Addr) key {
	if a.Is4() {
		b := a.As4()
		return key{lo: uint64(binary.BigEndian.Uint32(b[:]))}
	}
	b := a.As16()
	return key{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:])}
}

// mask keeps the first bits of k (32 bits for IPv4, in lo; 128 for IPv6).
func mask(k key, bits uint8, v4 bool) key {
	if v4 {
		if bits == 0 {
			return key{}
		}
		return key{lo: k.lo &^ (1<<(32-uint(bits)) - 1)}
	}
	switch {
	case bits == 0:
		return key{}
	case bits <= 64:
		return key{hi: k.hi &^ (1<<(64-uint(bits)) - 1)}
	case bits == 128:
		return k
	}
	return key{hi: k.hi, lo: k.lo &^ (1<<(128-uint(bits)) - 1)}
}

func (p *Policy) build() {
	add := func(ix *index, pf netip.Prefix, rule int32) {
		bits := uint8(pf.Bits())
		var t *lenTable
		for i := range ix.lens {
			if ix.lens[i].bits == bits {
				t = &ix.lens[i]
			}
		}
		if t == nil {
			ix.lens = append(ix.lens, lenTable{bits: bits, min: rule, m: map[key]*bucket{}})
			t = &ix.lens[len(ix.lens)-1]
		}
		k := addrKey(pf.Addr())
		b := t.m[k]
		if b == nil {
			b = &bucket{}
			t.m[k] = b
		}
		if n := len(b.rules); n == 0 || b.rules[n-1] != rule {
			b.rules = append(b.rules, rule)
		}
	}
	for i, r := range p.rules {
		if r.From == nil {
			add(&p.v4, netip.PrefixFrom(netip.IPv4Unspecified(), 0), int32(i))
			add(&p.v6, netip.PrefixFrom(netip.IPv6Unspecified(), 0), int32(i))
			continue
		}
		for _, pf := range r.From {
			if pf.Addr().Is4() {
				add(&p.v4, pf, int32(i))
			} else {
				add(&p.v6, pf, int32(i))
			}
		}
	}
	for _, ix := range []*index{&p.v4, &p.v6} {
		slices.SortFunc(ix.lens, func(a, b lenTable) int { return int(a.min - b.min) })
		for _, t := range ix.lens {
			for _, b := range t.m {
				b.compile(p.rules)
			}
		}
	}
}

// compile turns the bucket's rules into first-match answers per port
// interval and protocol. Rules are visited in order and fill only the
// intervals still open, skipping filled runs through next pointers, so a
// bucket of many rules compiles in about linear time.
func (b *bucket) compile(rules []*Rule) {
	starts := []uint16{0}
	for _, ri := range b.rules {
		for _, pr := range rules[ri].Ports {
			starts = append(starts, pr.Lo)
			if pr.Hi < 65535 {
				starts = append(starts, pr.Hi+1)
			}
		}
	}
	slices.Sort(starts)
	starts = slices.Compact(starts)
	b.starts = starts
	b.first = make([][2]int32, len(starts))
	for i := range b.first {
		b.first[i] = [2]int32{-1, -1}
	}
	for proto := range 2 {
		next := make([]int32, len(starts)+1) // next[i]: first open interval ≥ i
		for i := range next {
			next[i] = int32(i)
		}
		find := func(i int32) int32 {
			for next[i] != i {
				next[i] = next[next[i]]
				i = next[i]
			}
			return i
		}
		for _, ri := range b.rules {
			r := rules[ri]
			if r.Proto&(1<<proto) == 0 {
				continue
			}
			ranges := r.Ports
			if ranges == nil {
				ranges = []PortRange{{0, 65535}}
			}
			for _, pr := range ranges {
				lo, _ := slices.BinarySearch(starts, pr.Lo)
				for i := find(int32(lo)); int(i) < len(starts) && starts[i] <= pr.Hi; i = find(i) {
					b.first[i][proto] = ri
					next[i] = i + 1
				}
			}
		}
	}
	b.rules = nil
}

// lookup returns the index of the first rule matching, or -1.
func (p *Policy) lookup(proto Proto, port uint16, src netip.Addr) int32 {
	src = src.Unmap()
	ix, v4 := &p.v6, false
	if src.Is4() {
		ix, v4 = &p.v4, true
	}
	pi := 0
	if proto == UDP {
		pi = 1
	}
	k := addrKey(src)
	best := int32(len(p.rules))
	for i := range ix.lens {
		t := &ix.lens[i]
		if t.min >= best {
			break
		}
		b := t.m[mask(k, t.bits, v4)]
		if b == nil {
			continue
		}
		// The last interval starting at or below port.
		lo, hi := 0, len(b.starts)
		for lo+1 < hi {
			mid := int(uint(lo+hi) >> 1)
			if b.starts[mid] <= port {
				lo = mid
			} else {
				hi = mid
			}
		}
		if r := b.first[lo][pi]; r >= 0 && r < best {
			best = r
		}
	}
	if best == int32(len(p.rules)) {
		return -1
	}
	return best
}

// exempted reports whether src is never limited nor banned.
func (p *Policy) exempted(src netip.Addr) bool {
	for _, pf := range p.exempt {
		if pf.Contains(src) {
			return true
		}
	}
	return false
}

// Exempts reports whether any address of pf is exempt from limits and
// bans: a kernel backend leaves such a ban out, as it cannot spare the one
// address of a banned /64.
func (p *Policy) Exempts(pf netip.Prefix) bool {
	for _, e := range p.exempt {
		if e.Overlaps(pf) {
			return true
		}
	}
	return false
}

// describe writes a rule as it would be written in the config.
func (r *Rule) describe() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	b.WriteByte(' ')
	b.WriteString(r.Proto.String())
	if r.Ports != nil {
		b.WriteByte(' ')
		for i, pr := range r.Ports {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.Itoa(int(pr.Lo)))
			if pr.Hi != pr.Lo {
				b.WriteByte('-')
				b.WriteString(strconv.Itoa(int(pr.Hi)))
			}
		}
	}
	if r.From != nil {
		b.WriteString(" from ")
		for i, pf := range r.From {
			if i == 3 {
				fmt.Fprintf(&b, ", … (%d in all)", len(r.From))
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(PrefixString(pf))
		}
	}
	return b.String()
}

// prefixString writes a lone address without its /32 or /128.
// PrefixString writes a prefix as the config would: a single address
// without its length.
func PrefixString(pf netip.Prefix) string {
	if pf.IsSingleIP() {
		return pf.Addr().String()
	}
	return pf.String()
}
