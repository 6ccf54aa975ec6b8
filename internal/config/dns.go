package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/miekg/dns"
)

// DNS is the authoritative DNS server. It is off unless Listen is set.
type DNS struct {
	// Listen lists addresses served on both UDP and TCP (":53" in production).
	Listen []string `yaml:"listen"`
	// Zones maps each zone's apex name to its records.
	Zones map[string]*Zone `yaml:"zones"`
	// Publish gives the addresses every site host inside a served zone
	// resolves to, unless a record for the name is written explicitly.
	Publish Publish `yaml:"publish"`
	// RateLimit bounds the UDP answers sent to one source network, to blunt
	// reflection and amplification abuse.
	RateLimit DNSRateLimit `yaml:"rate_limit"`

	// dir is the folder of the config file, which relative zone files are
	// read from; posOf positions values of this DNS (Config.PosOf).
	dir   string
	posOf func(any) Pos
}

// Zone is one zone served authoritatively: records written inline, or an
// RFC 1035 master file. Without SOA and NS records, gatehouse makes them:
// SOA ns1.<zone>. hostmaster.<zone>. and NS ns1.<zone>.
type Zone struct {
	// File is an RFC 1035 master file (BIND's zone format), relative to the
	// config file's folder. $INCLUDE is not followed.
	File string `yaml:"file"`
	// TTL is the default record TTL in seconds (default 300); it is also
	// the negative-answer TTL of a made SOA.
	TTL     uint32   `yaml:"ttl"`
	Records []Record `yaml:"records"`
	// Transfer lists the addresses or CIDRs allowed to transfer the whole
	// zone (AXFR over TCP); nobody may by default.
	Transfer []string `yaml:"transfer"`
	// Notify lists the secondaries told of every new serial (RFC 1996
	// NOTIFY), as addresses with an optional port (default 53). Unset, it
	// is the lone addresses in Transfer; [] tells nobody.
	Notify []string `yaml:"notify"`
}

// NotifyTargets returns where z's NOTIFY messages go (see Zone.Notify).
// Entries that do not parse are left out; validation reports them.
func (z *Zone) NotifyTargets() []netip.AddrPort {
	var out []netip.AddrPort
	if z.Notify == nil {
		for _, t := range z.Transfer {
			if a, err := netip.ParseAddr(t); err == nil {
				out = append(out, netip.AddrPortFrom(a, 53))
			}
		}
		return out
	}
	for _, n := range z.Notify {
		if ap, err := parseNotify(n); err == nil {
			out = append(out, ap)
		}
	}
	return out
}

// parseNotify accepts 192.0.2.53, 192.0.2.53:5353, 2001:db8::53 or
// [2001:db8::53]:5353.
func parseNotify(s string) (netip.AddrPort, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, 53), nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err == nil && ap.Port() == 0 {
		err = errors.New("port 0")
	}
	return ap, err
}

// Record is one resource record; Name is relative to the zone, @ for the
// apex, *.x for a wildcard, or absolute when it ends in a dot. Value is
// written as in a zone file (MX "10 mail", SRV "10 5 5060 sip", CAA
// `0 issue "letsencrypt.org"`), except TXT, whose value is taken as one
// text unless it starts with a double quote.
type Record struct {
	Name  string `yaml:"name"`
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
	TTL   uint32 `yaml:"ttl"` // 0 means the zone's TTL
}

// Publish holds the addresses of this edge for automatic site records.
type Publish struct {
	IPv4 string `yaml:"ipv4"`
	IPv6 string `yaml:"ipv6"`
}

// DNSRateLimit is response rate limiting per source network. Queries over
// TCP are never limited (the handshake proves the source address), nor are
// loopback sources (they cannot be forged from outside the machine).
type DNSRateLimit struct {
	// Responses is how many UDP answers per second one network gets
	// (default 5000, far above what a caching resolver sends one
	// authoritative server); -1 turns rate limiting off.
	Responses int `yaml:"responses"`
	// Burst is how many answers may go out at once (default 2×Responses).
	Burst int `yaml:"burst"`
	// Slip sends every Nth answer over the limit as an empty truncated
	// reply, so a real resolver retries over TCP and still gets its answer;
	// the others are dropped. Default 1 (every one: nothing is dropped and
	// nothing is amplified); -1 drops them all.
	Slip int `yaml:"slip"`
	// IPv4Prefix and IPv6Prefix size a source network (default 24 and 56).
	IPv4Prefix int `yaml:"ipv4_prefix"`
	IPv6Prefix int `yaml:"ipv6_prefix"`
}

// DefaultDNSTTL is the record TTL of a zone that gives none.
const DefaultDNSTTL = 300

// RecordTypes are the record types a zone may hold, by name.
var RecordTypes = map[string]uint16{
	"A": dns.TypeA, "AAAA": dns.TypeAAAA, "CNAME": dns.TypeCNAME, "MX": dns.TypeMX,
	"TXT": dns.TypeTXT, "NS": dns.TypeNS, "SRV": dns.TypeSRV, "CAA": dns.TypeCAA,
	"PTR": dns.TypePTR, "SOA": dns.TypeSOA,
}

func recordTypeNames() string {
	var names []string
	for n := range RecordTypes {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// PosOf returns where a value of this DNS section (a pointer into it) was
// written, when it came from a parsed config.
func (d *DNS) PosOf(ptr any) Pos {
	if d.posOf == nil {
		return Pos{}
	}
	return d.posOf(ptr)
}

// ZoneFile returns the path z's master file is read from.
func (d *DNS) ZoneFile(z *Zone) string {
	if z.File == "" || filepath.IsAbs(z.File) {
		return z.File
	}
	return filepath.Join(d.dir, z.File)
}

// ZoneTTL is z's default record TTL.
func (z *Zone) ZoneTTL() uint32 {
	if z.TTL == 0 {
		return DefaultDNSTTL
	}
	return z.TTL
}

// Apex returns a zone key as a lowercase fully qualified name.
func Apex(key string) string {
	return dns.CanonicalName(strings.TrimSpace(key))
}

// RR parses r as a record of the zone at apex (fully qualified), with ttl
// when r gives none. The error says what is wrong and how to fix it.
func (r *Record) RR(apex string, ttl uint32) (dns.RR, error) {
	typ := strings.ToUpper(strings.TrimSpace(r.Type))
	t, ok := RecordTypes[typ]
	if !ok {
		return nil, fmt.Errorf("record type %q is not supported: use one of %s", r.Type, recordTypeNames())
	}
	owner, err := OwnerName(r.Name, apex)
	if err != nil {
		return nil, err
	}
	if r.TTL != 0 {
		ttl = r.TTL
	}
	if r.TTL > 1<<31-1 {
		return nil, fmt.Errorf("ttl %d is too large: use at most 2147483647 seconds (RFC 2181)", r.TTL)
	}
	value := strings.TrimSpace(r.Value)
	if value == "" {
		return nil, fmt.Errorf("%s record %s has no value: add value: %s", typ, r.Name, valueExample(t))
	}
	if strings.ContainsAny(value, "\n\r") {
		return nil, fmt.Errorf("%s record value spans lines: write it on one line", typ)
	}
	hdr := dns.RR_Header{Name: owner, Rrtype: t, Class: dns.ClassINET, Ttl: ttl}
	if t == dns.TypeTXT && !strings.HasPrefix(value, `"`) {
		// Written as one text: split into 255-byte strings (RFC 7208 §3.3),
		// which resolvers join back without spaces.
		return &dns.TXT{Hdr: hdr, Txt: splitTXT(r.Value)}, nil
	}
	if strings.HasPrefix(value, "$") || strings.Contains(value, ";") && t != dns.TypeTXT && t != dns.TypeCAA {
		return nil, fmt.Errorf("%s value %q holds zone-file syntax that is not a record value: write only the value, such as %s", typ, value, valueExample(t))
	}
	zp := dns.NewZoneParser(strings.NewReader(owner+" "+strconv.Itoa(int(ttl))+" IN "+typ+" "+value+"\n"), apex, "")
	rr, ok := zp.Next()
	if err := zp.Err(); err != nil || !ok || rr == nil {
		return nil, fmt.Errorf("%s value %q does not parse%s: write it as %s", typ, value, parseReason(err), valueExample(t))
	}
	if _, more := zp.Next(); more {
		return nil, fmt.Errorf("%s value %q holds more than one record: write one record per entry", typ, value)
	}
	if rr.Header().Rrtype != t {
		return nil, fmt.Errorf("%s value %q does not parse: write it as %s", typ, value, valueExample(t))
	}
	return rr, nil
}

// parseReason is the useful part of a miekg/dns parse error.
// miekg's "bad A A: ..." says nothing the message does not, so it is left out.
func parseReason(err error) string {
	if err == nil {
		return " (incomplete)"
	}
	s := strings.TrimPrefix(err.Error(), "dns: ")
	if i := strings.Index(s, ": "); i >= 0 {
		s = s[:i]
	}
	if strings.HasPrefix(s, "bad ") {
		return ""
	}
	return " (" + s + ")"
}

func valueExample(t uint16) string {
	switch t {
	case dns.TypeA:
		return "192.0.2.10"
	case dns.TypeAAAA:
		return "2001:db8::10"
	case dns.TypeCNAME, dns.TypePTR, dns.TypeNS:
		return "host.example.org. (absolute, with the final dot) or host (in this zone)"
	case dns.TypeMX:
		return `"10 mail.example.org." (preference, then host)`
	case dns.TypeSRV:
		return `"10 5 443 host.example.org." (priority, weight, port, target)`
	case dns.TypeCAA:
		return `'0 issue "letsencrypt.org"' (flags, tag, quoted value)`
	case dns.TypeSOA:
		return "ns1.example.org. hostmaster.example.org. 1 3600 600 604800 300"
	}
	return "text"
}

func splitTXT(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}

// OwnerName turns a record name written in the zone at apex into a
// lowercase fully qualified name inside that zone.
func OwnerName(name, apex string) (string, error) {
	name = strings.TrimSpace(name)
	var fqdn string
	switch {
	case name == "" || name == "@":
		fqdn = apex
	case strings.HasSuffix(name, "."):
		fqdn = name
	default:
		fqdn = name + "." + apex
	}
	fqdn = dns.CanonicalName(fqdn)
	if _, ok := dns.IsDomainName(fqdn); !ok || len(fqdn) > 254 || strings.Contains(fqdn, "..") {
		return "", fmt.Errorf("record name %q is not a domain name: write www, @ for the apex, or *.apps", name)
	}
	if !dns.IsSubDomain(apex, fqdn) {
		return "", fmt.Errorf("record name %q is outside the zone %s: write it relative to the zone (without the final dot)", name, strings.TrimSuffix(apex, "."))
	}
	if i := strings.LastIndex(fqdn, "*"); i > 0 || (i == 0 && !strings.HasPrefix(fqdn, "*.")) {
		return "", fmt.Errorf("record name %q has a * that is not the whole first label: write *.apps", name)
	}
	return fqdn, nil
}

var zoneErrPos = regexp.MustCompile(` at line: (\d+):(\d+)$`)

// ZoneFileError is a problem in a master file, at a line of it.
type ZoneFileError struct {
	Pos Pos
	Msg string
}

func (e *ZoneFileError) Error() string { return e.Pos.String() + ": " + e.Msg }

// ReadZoneFile parses the RFC 1035 master file at path for the zone at apex,
// with ttl as the default TTL. Errors are *ZoneFileError naming file:line.
func ReadZoneFile(path, apex string, ttl uint32) ([]dns.RR, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &ZoneFileError{Pos{File: path}, fmt.Sprintf("cannot read zone file: %v: check the path (relative to the config file) and that gatehouse may read it", unwrapPathErr(err))}
	}
	defer f.Close()
	return ParseZone(f, path, apex, ttl)
}

// ParseZone parses master-file text read from r (named file in errors).
func ParseZone(r interface{ Read([]byte) (int, error) }, file, apex string, ttl uint32) ([]dns.RR, error) {
	zp := dns.NewZoneParser(r, apex, file)
	zp.SetDefaultTTL(ttl)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		if len(rrs) >= 1_000_000 {
			return nil, &ZoneFileError{Pos{File: file}, "zone file holds more than a million records"}
		}
		rr.Header().Name = dns.CanonicalName(rr.Header().Name)
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		p := Pos{File: file}
		msg := strings.TrimPrefix(strings.TrimPrefix(err.Error(), file+": "), "dns: ")
		if m := zoneErrPos.FindStringSubmatch(msg); m != nil {
			p.Line, _ = strconv.Atoi(m[1])
			p.Col, _ = strconv.Atoi(m[2])
			msg = msg[:len(msg)-len(m[0])]
		}
		if p.Line == 0 {
			p.Line = 1 // a problem with no place in the file is at its start
		}
		return nil, &ZoneFileError{p, "zone file: " + msg}
	}
	return rrs, nil
}

// ZoneProblem is a record that does not fit with the rest of its zone.
type ZoneProblem struct {
	Index int // into the records given to CheckZone
	Msg   string
}

// CheckZone finds records that cannot be served together: names outside
// the zone, a CNAME beside other data or another CNAME (RFC 1034 §3.6.2,
// RFC 2181 §10.1), classes other than IN, and a SOA anywhere but once at
// the apex.
func CheckZone(apex string, rrs []dns.RR) []ZoneProblem {
	var out []ZoneProblem
	type seen struct {
		cname, other int // index+1 of the first record of each kind
	}
	names := map[string]*seen{}
	soas := 0
	for i, rr := range rrs {
		h := rr.Header()
		name := dns.CanonicalName(h.Name)
		if !dns.IsSubDomain(apex, name) {
			out = append(out, ZoneProblem{i, fmt.Sprintf("%s is outside the zone %s: records of a zone must end in its name", strings.TrimSuffix(name, "."), strings.TrimSuffix(apex, "."))})
			continue
		}
		if h.Class != dns.ClassINET {
			out = append(out, ZoneProblem{i, fmt.Sprintf("%s has class %s: only IN is served", strings.TrimSuffix(name, "."), dns.ClassToString[h.Class])})
			continue
		}
		if h.Rrtype == dns.TypeSOA {
			soas++
			if name != apex || soas > 1 {
				out = append(out, ZoneProblem{i, "a zone has one SOA record, at its apex (@)"})
			}
		}
		s := names[name]
		if s == nil {
			s = &seen{}
			names[name] = s
		}
		if h.Rrtype == dns.TypeCNAME {
			switch {
			case name == apex:
				out = append(out, ZoneProblem{i, "a CNAME cannot be at the zone apex, which holds the SOA and NS records: use A/AAAA records at @"})
			case s.cname > 0:
				out = append(out, ZoneProblem{i, fmt.Sprintf("%s already has a CNAME: a name has at most one", strings.TrimSuffix(name, "."))})
			case s.other > 0:
				out = append(out, ZoneProblem{i, fmt.Sprintf("%s has other records, so it cannot also be a CNAME (RFC 1034 §3.6.2): remove the CNAME or the other records", strings.TrimSuffix(name, "."))})
			}
			if s.cname == 0 {
				s.cname = i + 1
			}
			continue
		}
		if s.cname > 0 {
			out = append(out, ZoneProblem{i, fmt.Sprintf("%s is a CNAME, so it cannot have other records (RFC 1034 §3.6.2): remove the CNAME or this record", strings.TrimSuffix(name, "."))})
		}
		if s.other == 0 {
			s.other = i + 1
		}
	}
	return out
}

// ParseTransfer reads a transfer entry: 192.0.2.0/24, or a lone address
// as its /32 or /128.
func ParseTransfer(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (c *Config) validateDNS(errs *ErrorList) {
	d := &c.DNS
	d.posOf = c.PosOf
	if c.File != "" && c.File != DefaultName {
		d.dir = filepath.Dir(c.File)
	}
	for i := range d.Listen {
		c.checkListenAddr(errs, &d.Listen[i])
	}
	if len(d.Listen) == 0 && len(d.Zones) > 0 {
		errs.Warn(c.PosOf(&d.Zones), "dns.zones are not served because dns.listen is empty: add listen: [\":53\"]")
	}
	if d.Publish.IPv4 != "" {
		if a, err := netip.ParseAddr(d.Publish.IPv4); err != nil || !a.Is4() {
			errs.Add(c.PosOf(&d.Publish.IPv4), fmt.Sprintf("publish ipv4 %q is not an IPv4 address: write this server's public address, such as 203.0.113.10", d.Publish.IPv4))
		}
	}
	if d.Publish.IPv6 != "" {
		if a, err := netip.ParseAddr(d.Publish.IPv6); err != nil || !a.Is6() || a.Is4In6() {
			errs.Add(c.PosOf(&d.Publish.IPv6), fmt.Sprintf("publish ipv6 %q is not an IPv6 address: write this server's public address, such as 2001:db8::10", d.Publish.IPv6))
		}
	}
	rl := &d.RateLimit
	if rl.Responses < -1 {
		errs.Add(c.PosOf(&rl.Responses), "rate_limit responses must be a positive number of answers per second, or -1 for no limit")
	}
	if rl.Burst < 0 {
		errs.Add(c.PosOf(&rl.Burst), "rate_limit burst must be positive")
	}
	if rl.Slip < -1 {
		errs.Add(c.PosOf(&rl.Slip), "rate_limit slip must be 1 (truncate every answer over the limit), N (every Nth) or -1 (drop them all)")
	}
	if rl.IPv4Prefix < 0 || rl.IPv4Prefix > 32 {
		errs.Add(c.PosOf(&rl.IPv4Prefix), "rate_limit ipv4_prefix must be between 0 and 32, such as 24")
	}
	if rl.IPv6Prefix < 0 || rl.IPv6Prefix > 128 {
		errs.Add(c.PosOf(&rl.IPv6Prefix), "rate_limit ipv6_prefix must be between 0 and 128, such as 56")
	}

	keys := make([]string, 0, len(d.Zones))
	for k := range d.Zones {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	apexes := map[string]string{}
	for _, key := range keys {
		z := d.Zones[key]
		if z == nil {
			z = &Zone{}
			d.Zones[key] = z
		}
		apex := Apex(key)
		if _, ok := dns.IsDomainName(apex); !ok || apex == "." || strings.Contains(apex, "*") || strings.Contains(apex, "..") {
			errs.Add(c.PosOf(z), fmt.Sprintf("zone name %q is not a domain name: write example.org", key))
			continue
		}
		if prev, dup := apexes[apex]; dup {
			errs.Add(c.PosOf(z), fmt.Sprintf("zone %q is the same zone as %q: keep one", key, prev))
			continue
		}
		apexes[apex] = key
		c.validateZone(errs, d, z, apex)
	}
}

func (c *Config) validateZone(errs *ErrorList, d *DNS, z *Zone, apex string) {
	for i := range z.Transfer {
		if _, err := ParseTransfer(z.Transfer[i]); err != nil {
			errs.Add(c.PosOf(&z.Transfer[i]), fmt.Sprintf("transfer %q is not an address or CIDR: write 192.0.2.53 or 192.0.2.0/24", z.Transfer[i]))
		}
	}
	for i := range z.Notify {
		ap, err := parseNotify(z.Notify[i])
		if err != nil {
			errs.Add(c.PosOf(&z.Notify[i]), fmt.Sprintf("notify %q is not an address with an optional port: write 192.0.2.53, 192.0.2.53:5353 or [2001:db8::53]:5353", z.Notify[i]))
			continue
		}
		if !slices.ContainsFunc(z.Transfer, func(t string) bool {
			p, err := ParseTransfer(t)
			return err == nil && p.Contains(ap.Addr())
		}) {
			errs.Warn(c.PosOf(&z.Notify[i]), fmt.Sprintf("notify %s is not in this zone's transfer list, so the secondary is told of each change and then refused the transfer: add %s to transfer", z.Notify[i], ap.Addr()))
		}
	}
	if z.TTL > 1<<31-1 {
		errs.Add(c.PosOf(&z.TTL), "zone ttl is too large: use at most 2147483647 seconds")
	}
	if z.File != "" {
		if len(z.Records) > 0 {
			errs.Add(c.PosOf(&z.Records), "a zone has either a file or records, not both: move these records into the zone file")
			return
		}
		rrs, err := ReadZoneFile(d.ZoneFile(z), apex, z.ZoneTTL())
		var zerr *ZoneFileError
		switch {
		case errors.As(err, &zerr) && zerr.Pos.Line > 0:
			errs.Add(zerr.Pos, zerr.Msg)
		case err != nil:
			errs.Add(c.PosOf(&z.File), err.Error())
		default:
			for _, p := range CheckZone(apex, rrs) {
				errs.Add(c.PosOf(&z.File), fmt.Sprintf("zone file %s: %s", z.File, p.Msg))
			}
		}
		return
	}
	var rrs []dns.RR
	var at []int
	for i := range z.Records {
		r := &z.Records[i]
		rr, err := r.RR(apex, z.ZoneTTL())
		if err != nil {
			errs.Add(c.recordPos(r, apex), err.Error())
			continue
		}
		rrs = append(rrs, rr)
		at = append(at, i)
	}
	for _, p := range CheckZone(apex, rrs) {
		errs.Add(c.PosOf(&z.Records[at[p.Index]]), p.Msg)
	}
}

// recordPos points at the part of r that is wrong when that is clear.
func (c *Config) recordPos(r *Record, apex string) Pos {
	if _, err := OwnerName(r.Name, apex); err != nil {
		return c.PosOf(&r.Name)
	}
	if _, ok := RecordTypes[strings.ToUpper(r.Type)]; !ok {
		return c.PosOf(&r.Type)
	}
	return c.PosOf(&r.Value)
}
