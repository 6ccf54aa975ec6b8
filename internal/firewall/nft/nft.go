//go:build linux

// Package nft has the Linux kernel enforce a firewall.Policy host-wide,
// ports of other programs included, through gatehouse's own nftables table
// (inet gatehouse) written over netlink with github.com/google/nftables.
//
// The table is the whole of what it owns: it is replaced in one netlink
// transaction on every Apply, deleted by Remove, and no other table or the
// ruleset is ever flushed. CIDRs and port ranges live in interval sets, so
// a range is never stored as a single address; bans are elements of their
// own sets, which the kernel expires by itself.
package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"gatehouse/internal/firewall"
)

// ipsDstNAT is IPS_DST_NAT of linux/netfilter/nf_conntrack_common.h: the
// connection's destination was rewritten by DNAT.
const ipsDstNAT = 1 << 5

// TableName is the nftables table gatehouse owns, in the inet family.
const TableName = "gatehouse"

// Table installs policies as the inet gatehouse table. It needs
// CAP_NET_ADMIN. Methods are safe for concurrent use.
type Table struct {
	mu    sync.Mutex
	conn  *nftables.Conn
	table *nftables.Table
	ban4  *nftables.Set
	ban6  *nftables.Set
	// policy is the one installed; its exemptions keep bans out.
	policy *firewall.Policy
}

// Options says where the table lives.
type Options struct {
	// NetNS is an open file descriptor of a network namespace to work in;
	// 0 is the namespace of the process.
	NetNS int
}

// Open connects to nftables; it does not touch the ruleset yet.
func Open(opts Options) (*Table, error) {
	var o []nftables.ConnOption
	if opts.NetNS != 0 {
		o = append(o, nftables.WithNetNSFd(opts.NetNS))
	}
	c, err := nftables.New(o...)
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return &Table{conn: c, table: &nftables.Table{Family: nftables.TableFamilyINet, Name: TableName}}, nil
}

// Apply replaces the table with one enforcing p, with bans (from
// Guard.Bans) carried over, in a single transaction: the kernel switches
// from the old rules to the new ones with no moment in between.
func (t *Table) Apply(p *firewall.Policy, bans []firewall.Ban) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.conn
	// Adding before deleting makes the delete succeed on first install.
	c.AddTable(t.table)
	c.DelTable(t.table)
	c.AddTable(t.table)
	b := &builder{c: c, table: t.table}
	if err := b.build(p); err != nil {
		return err
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: installing table inet %s: %w", TableName, err)
	}
	t.ban4, t.ban6, t.policy = b.ban4, b.ban6, p
	for _, ban := range bans {
		if err := t.addBan(ban); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: restoring bans: %w", err)
	}
	return nil
}

// Ban drops every packet from b.Source until b.Until. Wire it to
// Guard.OnBan.
func (t *Table) Ban(b firewall.Ban) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ban4 == nil {
		return errors.New("nftables: no table installed")
	}
	if err := t.addBan(b); err != nil {
		return err
	}
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: banning %s: %w", b.Source, err)
	}
	return nil
}

func (t *Table) addBan(b firewall.Ban) error {
	left := time.Until(b.Until)
	if left < time.Second {
		return nil // about to expire; the kernel counts timeouts in ms but a past one is refused
	}
	if t.policy.Exempts(b.Source) {
		return nil // gatehouse lets the exempt source in; the kernel must too
	}
	set, key := t.banElement(b.Source)
	return t.conn.SetAddElements(set, []nftables.SetElement{{Key: key, Timeout: left.Truncate(time.Millisecond)}})
}

// banElement is the set and key that hold a ban on src.
func (t *Table) banElement(src netip.Prefix) (*nftables.Set, []byte) {
	if src.Addr().Is6() {
		pf, _ := src.Addr().Prefix(64)
		return t.ban6, pf.Addr().AsSlice()
	}
	return t.ban4, src.Addr().AsSlice()
}

// Unban lets src's packets in again before its ban ends. A ban the kernel
// no longer holds (it ended, or was never added) is not an error.
func (t *Table) Unban(src netip.Prefix) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.ban4 == nil {
		return errors.New("nftables: no table installed")
	}
	set, key := t.banElement(src)
	if err := t.conn.SetDeleteElements(set, []nftables.SetElement{{Key: key}}); err != nil {
		return err
	}
	if err := t.conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: unbanning %s: %w", src, err)
	}
	return nil
}

// Remove deletes the table; a table already gone is not an error.
func (t *Table) Remove() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.conn.AddTable(t.table)
	t.conn.DelTable(t.table)
	if err := t.conn.Flush(); err != nil {
		return fmt.Errorf("nftables: removing table inet %s: %w", TableName, err)
	}
	t.ban4, t.ban6 = nil, nil
	return nil
}

// Installed reports whether the table is in the kernel now.
func (t *Table) Installed() (bool, error) {
	tables, err := t.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, err
	}
	return slices.ContainsFunc(tables, func(x *nftables.Table) bool { return x.Name == TableName }), nil
}

// builder writes one policy into a batch.
type builder struct {
	c          *nftables.Conn
	table      *nftables.Table
	ban4, ban6 *nftables.Set
}

// The input chain, in order: packets of known connections pass; loopback,
// ICMP (IPv6 cannot work without neighbour discovery) and DHCP replies pass;
// banned sources drop; then deny lists and rules, first match wins; then
// the default. The chain's own policy stays accept so that the default is a
// visible rule, and other tables still see what gatehouse lets through.
func (b *builder) build(p *firewall.Policy) error {
	b.ban4 = &nftables.Set{Table: b.table, Name: "ban4", KeyType: nftables.TypeIPAddr, HasTimeout: true}
	b.ban6 = &nftables.Set{Table: b.table, Name: "ban6", KeyType: nftables.TypeIP6Addr, HasTimeout: true}
	for _, s := range []*nftables.Set{b.ban4, b.ban6} {
		if err := b.c.AddSet(s, nil); err != nil {
			return fmt.Errorf("nftables: ban set: %w", err)
		}
	}
	accept := nftables.ChainPolicyAccept
	input := b.c.AddChain(&nftables.Chain{Table: b.table, Name: "input", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept})
	b.rule(input, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	b.rule(input, ctState(expr.CtStateBitINVALID), verdict(expr.VerdictDrop))
	lo := make([]byte, unix.IFNAMSIZ)
	copy(lo, "lo")
	b.rule(input, []expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: lo}}, verdict(expr.VerdictAccept))
	b.rule(input, l4(unix.IPPROTO_ICMP), verdict(expr.VerdictAccept))
	b.rule(input, l4(unix.IPPROTO_ICMPV6), verdict(expr.VerdictAccept))
	b.rule(input, slices.Concat(l4(unix.IPPROTO_UDP), port(0, 67), port(2, 68)), verdict(expr.VerdictAccept))
	b.rule(input, slices.Concat(l4(unix.IPPROTO_UDP), port(0, 547), port(2, 546)), verdict(expr.VerdictAccept))
	if err := b.policyRules(input, p, false); err != nil {
		return err
	}
	if p.Nftables().Forward {
		// Only connections DNAT sent on (ports published by containers)
		// are filtered; other forwarded traffic, such as containers
		// reaching out, is none of the firewall's business. Their port is
		// the one the client asked for, before translation.
		fwd := b.c.AddChain(&nftables.Chain{Table: b.table, Name: "forward", Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept})
		b.rule(fwd, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
		b.rule(fwd, []expr.Any{
			&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: make([]byte, 4)},
		}, verdict(expr.VerdictAccept))
		if err := b.policyRules(fwd, p, true); err != nil {
			return err
		}
	}
	return nil
}

// policyRules writes bans, deny lists, rules and the default into ch.
func (b *builder) policyRules(ch *nftables.Chain, p *firewall.Policy, forward bool) error {
	b.rule(ch, saddrIn(4, b.ban4, false), verdict(expr.VerdictDrop))
	b.rule(ch, saddrIn(6, b.ban6, true), verdict(expr.VerdictDrop))
	for i, r := range p.Rules() {
		name := fmt.Sprintf("rule%d", r.Number)
		if r.Kind == firewall.KindDenyList {
			name = fmt.Sprintf("denylist%d", i+1)
		}
		if forward {
			name = "fwd_" + name
		}
		if err := b.policyRule(ch, r, name, forward); err != nil {
			return err
		}
	}
	d := p.Default()
	switch d.Action {
	case firewall.Deny:
		b.rule(ch, nil, verdict(expr.VerdictDrop))
	case firewall.Reject:
		b.rule(ch, l4(unix.IPPROTO_TCP), reject(firewall.TCP))
		b.rule(ch, nil, reject(firewall.UDP))
	}
	return nil
}

// policyRule writes one rule; its sets are named after it (rule3_src4,
// rule3_ports) so that `nft list table inet gatehouse` reads like the config.
func (b *builder) policyRule(ch *nftables.Chain, r *firewall.Rule, name string, forward bool) error {
	var v4, v6 []netip.Prefix
	for _, pf := range r.From {
		if pf.Addr().Is4() {
			v4 = append(v4, pf)
		} else {
			v6 = append(v6, pf)
		}
	}
	type family struct {
		n   int
		src *nftables.Set
	}
	var fams []family
	if r.From == nil {
		fams = []family{{0, nil}}
	}
	for _, f := range []struct {
		n  int
		pf []netip.Prefix
	}{{4, v4}, {6, v6}} {
		if len(f.pf) == 0 {
			continue
		}
		set, err := b.prefixSet(fmt.Sprintf("%s_src%d", name, f.n), f.n, f.pf)
		if err != nil {
			return err
		}
		fams = append(fams, family{f.n, set})
	}
	var ports *nftables.Set
	if r.Ports != nil {
		var err error
		if ports, err = b.portSet(name+"_ports", r.Ports); err != nil {
			return err
		}
	}
	for _, proto := range []firewall.Proto{firewall.TCP, firewall.UDP} {
		if r.Proto&proto == 0 {
			continue
		}
		for _, f := range fams {
			var m []expr.Any
			if f.src != nil {
				m = append(m, saddrIn(f.n, f.src, false)...)
			}
			num := byte(unix.IPPROTO_TCP)
			if proto == firewall.UDP {
				num = unix.IPPROTO_UDP
			}
			m = append(m, l4(num)...)
			if ports != nil {
				m = append(m, dport(forward)...)
				m = append(m, &expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID})
			}
			switch r.Action {
			case firewall.Allow:
				b.rule(ch, m, verdict(expr.VerdictAccept))
			case firewall.Deny:
				b.rule(ch, m, verdict(expr.VerdictDrop))
			case firewall.Reject:
				b.rule(ch, m, reject(proto))
			}
		}
	}
	return nil
}

// prefixSet makes an interval set of addresses of one family.
func (b *builder) prefixSet(name string, fam int, pfs []netip.Prefix) (*nftables.Set, error) {
	kt, width := nftables.TypeIPAddr, 4
	if fam == 6 {
		kt, width = nftables.TypeIP6Addr, 16
	}
	type iv struct{ lo, hi netip.Addr }
	ivs := make([]iv, 0, len(pfs))
	for _, pf := range pfs {
		ivs = append(ivs, iv{pf.Masked().Addr(), lastAddr(pf)})
	}
	slices.SortFunc(ivs, func(a, b iv) int { return a.lo.Compare(b.lo) })
	var merged []iv
	for _, x := range ivs {
		if n := len(merged); n > 0 && (x.lo.Compare(merged[n-1].hi) <= 0 || merged[n-1].hi.Next() == x.lo) {
			if x.hi.Compare(merged[n-1].hi) > 0 {
				merged[n-1].hi = x.hi
			}
			continue
		}
		merged = append(merged, x)
	}
	var elems []nftables.SetElement
	zero := make([]byte, width)
	if !merged[0].lo.IsUnspecified() {
		// As nft itself does: the interval set starts with an end at zero.
		elems = append(elems, nftables.SetElement{Key: zero, IntervalEnd: true})
	}
	for _, x := range merged {
		elems = append(elems, nftables.SetElement{Key: x.lo.AsSlice()})
		if end := x.hi.Next(); end.IsValid() {
			elems = append(elems, nftables.SetElement{Key: end.AsSlice(), IntervalEnd: true})
		}
	}
	return b.set(name, kt, elems)
}

// portSet makes an interval set of ports.
func (b *builder) portSet(name string, ranges []firewall.PortRange) (*nftables.Set, error) {
	rs := slices.Clone(ranges)
	slices.SortFunc(rs, func(a, b firewall.PortRange) int { return int(a.Lo) - int(b.Lo) })
	var merged []firewall.PortRange
	for _, r := range rs {
		if n := len(merged); n > 0 && int(r.Lo) <= int(merged[n-1].Hi)+1 {
			merged[n-1].Hi = max(merged[n-1].Hi, r.Hi)
			continue
		}
		merged = append(merged, r)
	}
	elems := []nftables.SetElement{{Key: binaryutil.BigEndian.PutUint16(0), IntervalEnd: true}}
	for _, r := range merged {
		elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r.Lo)})
		if r.Hi < 65535 {
			elems = append(elems, nftables.SetElement{Key: binaryutil.BigEndian.PutUint16(r.Hi + 1), IntervalEnd: true})
		}
	}
	return b.set(name, nftables.TypeInetService, elems)
}

// set adds a constant interval set, its elements in chunks that fit
// netlink messages.
func (b *builder) set(name string, kt nftables.SetDatatype, elems []nftables.SetElement) (*nftables.Set, error) {
	s := &nftables.Set{Table: b.table, Name: name, KeyType: kt, Interval: true}
	if err := b.c.AddSet(s, nil); err != nil {
		return nil, fmt.Errorf("nftables: set %s: %w", s.Name, err)
	}
	for chunk := range slices.Chunk(elems, 1024) {
		if err := b.c.SetAddElements(s, chunk); err != nil {
			return nil, fmt.Errorf("nftables: set %s: %w", s.Name, err)
		}
	}
	return s, nil
}

func lastAddr(pf netip.Prefix) netip.Addr {
	a := pf.Masked().Addr().As16()
	bits := pf.Bits()
	if pf.Addr().Is4() {
		bits += 96
	}
	for i := bits; i < 128; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	out := netip.AddrFrom16(a)
	if pf.Addr().Is4() {
		return out.Unmap()
	}
	return out
}

func (b *builder) rule(ch *nftables.Chain, match []expr.Any, then ...expr.Any) {
	exprs := append(slices.Clone(match), &expr.Counter{})
	b.c.AddRule(&nftables.Rule{Table: b.table, Chain: ch, Exprs: append(exprs, then...)})
}

func verdict(k expr.VerdictKind) expr.Any { return &expr.Verdict{Kind: k} }

func reject(proto firewall.Proto) expr.Any {
	if proto == firewall.TCP {
		return &expr.Reject{Type: unix.NFT_REJECT_TCP_RST}
	}
	return &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func l4(proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// port matches the transport header's source (offset 0) or destination
// (offset 2) port.
func port(offset uint32, n uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: offset, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(n)},
	}
}

// dport loads the destination port: the packet's own, or for forwarded
// traffic the one the client connected to, before DNAT rewrote it.
func dport(forward bool) []expr.Any {
	if forward {
		return []expr.Any{&expr.Ct{Register: 1, Key: expr.CtKeyPROTODST, Direction: 0}}
	}
	return []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}}
}

// saddrIn matches an IPv4 or IPv6 source in set; mask64 compares only the
// first 64 bits (IPv6 bans are per /64).
func saddrIn(fam int, set *nftables.Set, mask64 bool) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(12), uint32(4)
	if fam == 6 {
		proto, off, n = unix.NFPROTO_IPV6, 8, 16
	}
	m := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
	}
	if mask64 {
		mask := make([]byte, 16)
		binary.BigEndian.PutUint64(mask, ^uint64(0))
		m = append(m, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: mask, Xor: make([]byte, 16)})
	}
	return append(m, &expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID})
}
