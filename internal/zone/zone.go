// Package zone owns the data of the zones gatehouse serves authoritatively.
// Compile turns the dns section of the config (inline records, RFC 1035
// master files, site records published automatically, and the SOA and NS
// records it makes when none are written) into an immutable Set, and
// Set.Lookup says what an authoritative server answers for a name and type.
//
// Nothing here touches the network, so the rules of RFC 1034 §4.3.2 are
// table-tested as plain functions. Compile also packs, once, every answer
// that depends on the query only through its name's case and its ID (see
// wire.go), so the server answers most queries by copying bytes.
package zone

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/config"
)

// Set is every zone served, compiled and immutable: readers share it
// without locks and a new config builds a new Set.
type Set struct {
	zones map[string]*Zone // by apex, lowercase and fully qualified
	wire  map[string]*wireNode
	// inputs rebuild the Set with run-time TXT records (WithTXT).
	inputs []zoneInput
}

// Zone is one compiled zone.
type Zone struct {
	// Origin is the apex, lowercase and fully qualified.
	Origin string
	// Source says where the records came from: "config" or the file path.
	Source string
	soa    *dns.SOA
	negSOA *dns.SOA // the SOA with TTL min(TTL, minimum) for negative answers (RFC 2308 §3)
	nodes  map[string]*node
	cuts   bool // some name below the apex has NS records: a delegation
	all    []dns.RR
	allow  []netip.Prefix
	notify []netip.AddrPort
	made   bool // gatehouse made the SOA, and so its serial

	digestOnce sync.Once
	digest     [sha256.Size]byte
}

// node is one name of a zone; an empty node is an empty non-terminal
// (RFC 4592 §2.2.2): it exists, so it answers NODATA, not NXDOMAIN.
type node struct {
	sets map[uint16][]dns.RR
}

// zoneInput is what a zone is built from, kept so run-time TXT records can
// rebuild it.
type zoneInput struct {
	apex   string
	source string
	rrs    []dns.RR
	allow  []netip.Prefix
	notify []netip.AddrPort
	made   bool // see Zone.made
}

// Compile builds the Set served for cfg. siteHosts are the host names of
// every site; those inside a served zone get cfg.Publish's addresses unless
// the zone writes a record of that type (or a CNAME) for them. The error is
// a config.ErrorList positioned at the records at fault.
func Compile(cfg config.DNS, siteHosts []string) (*Set, error) {
	return compile(cfg, siteHosts, nextSerial(time.Now()))
}

// lastSerial is the serial the last Compile gave the SOAs it made. A
// config compiled again within the same second still gets a higher one:
// a secondary transfers a zone only when its serial rises.
var lastSerial atomic.Uint32

func nextSerial(now time.Time) uint32 {
	for {
		last := lastSerial.Load()
		s := max(uint32(now.Unix()), last+1)
		if lastSerial.CompareAndSwap(last, s) {
			return s
		}
	}
}

// compile builds the Set; serial is that of the SOAs it makes.
func compile(cfg config.DNS, siteHosts []string, serial uint32) (*Set, error) {
	var errs config.ErrorList
	keys := make([]string, 0, len(cfg.Zones))
	for k := range cfg.Zones {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var inputs []zoneInput
	seen := map[string]bool{}
	for _, key := range keys {
		z := cfg.Zones[key]
		if z == nil {
			z = &config.Zone{}
		}
		at := func(ptr any) config.Pos {
			if p := cfg.PosOf(ptr); p.File != "" {
				return p
			}
			return config.Pos{File: "dns.zones." + key}
		}
		apex := config.Apex(key)
		if _, ok := dns.IsDomainName(apex); !ok || apex == "." || strings.ContainsAny(apex, "* ") || seen[apex] {
			errs.Add(at(z), fmt.Sprintf("zone name %q is not a domain name, or names a zone twice: write example.org once", key))
			continue
		}
		seen[apex] = true
		in := zoneInput{apex: apex, source: "config", notify: z.NotifyTargets()}
		for _, t := range z.Transfer {
			p, err := config.ParseTransfer(t)
			if err != nil {
				errs.Add(at(&t), fmt.Sprintf("transfer %q is not an address or CIDR", t))
				continue
			}
			in.allow = append(in.allow, p)
		}
		var index []int // record index of each rr, for positions
		if z.File != "" {
			path := cfg.ZoneFile(z)
			in.source = path
			rrs, err := config.ReadZoneFile(path, apex, z.ZoneTTL())
			if err != nil {
				if ze, ok := err.(*config.ZoneFileError); ok {
					errs.Add(ze.Pos, ze.Msg)
				} else {
					errs.Add(at(&z.File), err.Error())
				}
				continue
			}
			in.rrs = rrs
		} else {
			for i := range z.Records {
				r := &z.Records[i]
				rr, err := r.RR(apex, z.ZoneTTL())
				if err != nil {
					errs.Add(at(r), err.Error())
					continue
				}
				in.rrs = append(in.rrs, rr)
				index = append(index, i)
			}
		}
		for _, p := range config.CheckZone(apex, in.rrs) {
			if index != nil {
				errs.Add(at(&z.Records[index[p.Index]]), p.Msg)
			} else {
				errs.Add(at(&z.File), p.Msg)
			}
		}
		in.rrs, in.made = withSOAandNS(in.rrs, apex, z.ZoneTTL(), serial)
		inputs = append(inputs, in)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	inputs = publish(inputs, cfg.Publish, siteHosts, cfg.Zones)
	return build(inputs), nil
}

// withSOAandNS adds the records every zone needs when they are not written:
// NS ns1.<apex> and a SOA naming it (RFC 1035 §5.2). made is whether it
// made the SOA.
func withSOAandNS(rrs []dns.RR, apex string, ttl, serial uint32) (_ []dns.RR, made bool) {
	var ns string
	hasSOA := false
	for _, rr := range rrs {
		h := rr.Header()
		if h.Name != apex {
			continue
		}
		switch r := rr.(type) {
		case *dns.SOA:
			hasSOA = true
		case *dns.NS:
			if ns == "" {
				ns = r.Ns
			}
		}
	}
	if ns == "" {
		ns = "ns1." + apex
		rrs = append(rrs, &dns.NS{Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: ttl}, Ns: ns})
	}
	if !hasSOA {
		rrs = append(rrs, &dns.SOA{
			Hdr: dns.RR_Header{Name: apex, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
			Ns:  ns, Mbox: "hostmaster." + apex, Serial: serial,
			Refresh: 3600, Retry: 600, Expire: 604800, Minttl: ttl,
		})
	}
	return rrs, !hasSOA
}

// publish adds A and AAAA records for the site hosts inside served zones.
// A record written in the zone wins: a name with a CNAME gets nothing, and
// a name with an A record gets no published A.
func publish(inputs []zoneInput, p config.Publish, hosts []string, zones map[string]*config.Zone) []zoneInput {
	v4, err4 := netip.ParseAddr(p.IPv4)
	v6, err6 := netip.ParseAddr(p.IPv6)
	if err4 != nil && err6 != nil {
		return inputs
	}
	for _, h := range hosts {
		name := dns.CanonicalName(h)
		best := -1
		for i, in := range inputs {
			if dns.IsSubDomain(in.apex, name) && (best < 0 || len(in.apex) > len(inputs[best].apex)) {
				best = i
			}
		}
		if best < 0 {
			continue
		}
		in := &inputs[best]
		has := map[uint16]bool{}
		for _, rr := range in.rrs {
			if rr.Header().Name == name {
				has[rr.Header().Rrtype] = true
			}
		}
		if has[dns.TypeCNAME] {
			continue
		}
		ttl := uint32(config.DefaultDNSTTL)
		for k, z := range zones {
			if config.Apex(k) == in.apex && z != nil {
				ttl = z.ZoneTTL()
			}
		}
		hdr := dns.RR_Header{Name: name, Class: dns.ClassINET, Ttl: ttl}
		if err4 == nil && v4.Is4() && !has[dns.TypeA] {
			hdr.Rrtype = dns.TypeA
			in.rrs = append(in.rrs, &dns.A{Hdr: hdr, A: v4.AsSlice()})
		}
		if err6 == nil && v6.Is6() && !has[dns.TypeAAAA] {
			hdr.Rrtype = dns.TypeAAAA
			in.rrs = append(in.rrs, &dns.AAAA{Hdr: hdr, AAAA: v6.AsSlice()})
		}
	}
	return inputs
}

// build compiles checked inputs into a Set.
func build(inputs []zoneInput) *Set {
	s := &Set{zones: make(map[string]*Zone, len(inputs)), inputs: inputs}
	for _, in := range inputs {
		z := &Zone{Origin: in.apex, Source: in.source, nodes: map[string]*node{}, allow: in.allow, notify: in.notify, made: in.made}
		for _, rr := range in.rrs {
			h := rr.Header()
			if c := dns.CanonicalName(h.Name); c != h.Name {
				rr = dns.Copy(rr)
				rr.Header().Name = c
				h = rr.Header()
			}
			n := z.node(h.Name)
			if slices.ContainsFunc(n.sets[h.Rrtype], func(o dns.RR) bool { return dns.IsDuplicate(o, rr) }) {
				continue
			}
			n.sets[h.Rrtype] = append(n.sets[h.Rrtype], rr)
		}
		// A RRset has one TTL (RFC 2181 §5.2): the lowest written. Records
		// may be shared with another Set, so a changed one is a copy.
		for _, n := range z.nodes {
			for _, set := range n.sets {
				low := set[0].Header().Ttl
				for _, rr := range set {
					low = min(low, rr.Header().Ttl)
				}
				for i, rr := range set {
					if rr.Header().Ttl != low {
						set[i] = dns.Copy(rr)
						set[i].Header().Ttl = low
					}
				}
				for _, rr := range set {
					z.all = append(z.all, rr)
					switch r := rr.(type) {
					case *dns.SOA:
						z.soa = r
					case *dns.NS:
						z.cuts = z.cuts || r.Hdr.Name != in.apex
					}
				}
			}
		}
		sortCanonical(z.all)
		z.negSOA = dns.Copy(z.soa).(*dns.SOA)
		z.negSOA.Hdr.Ttl = min(z.soa.Hdr.Ttl, z.soa.Minttl)
		s.zones[in.apex] = z
	}
	s.wire = s.pack()
	return s
}

// sortCanonical orders records by name, then type, so transfers and
// listings are stable.
func sortCanonical(rrs []dns.RR) {
	sort.SliceStable(rrs, func(i, j int) bool {
		a, b := rrs[i].Header(), rrs[j].Header()
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Rrtype < b.Rrtype
	})
}

// node returns the node for name, making it and the empty non-terminals
// between it and the apex.
func (z *Zone) node(name string) *node {
	n := z.nodes[name]
	if n != nil {
		return n
	}
	n = &node{sets: map[uint16][]dns.RR{}}
	z.nodes[name] = n
	for p := name; p != z.Origin; {
		i := strings.IndexByte(p, '.')
		if i < 0 || i == len(p)-1 {
			break
		}
		p = p[i+1:]
		if _, ok := z.nodes[p]; ok {
			break
		}
		z.nodes[p] = &node{sets: map[uint16][]dns.RR{}}
	}
	return n
}

// Zone returns the zone whose apex is name, or nil.
func (s *Set) Zone(name string) *Zone {
	if s == nil {
		return nil
	}
	return s.zones[dns.CanonicalName(name)]
}

// ZoneFor returns the zone name belongs to (the longest apex it is under),
// or nil when gatehouse is not authoritative for it.
func (s *Set) ZoneFor(name string) *Zone {
	if s == nil {
		return nil
	}
	name = dns.CanonicalName(name)
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if z := s.zones[name[off:]]; z != nil {
			return z
		}
	}
	return nil
}

// SOA returns the zone's SOA record.
func (z *Zone) SOA() *dns.SOA { return z.soa }

// Len is the number of records in the zone.
func (z *Zone) Len() int { return len(z.all) }

// TransferAllowed reports whether a client at addr may transfer the zone.
func (z *Zone) TransferAllowed(addr netip.Addr) bool {
	addr = addr.Unmap()
	for _, p := range z.allow {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// SerialMade reports whether gatehouse made the zone's SOA, and so its
// serial (a new one at each compile), rather than the zone writing it.
func (z *Zone) SerialMade() bool { return z.made }

// Digest is a SHA-256 of the zone's records, the SOA's serial left out:
// two zones with the same digest serve the same answers.
func (z *Zone) Digest() [sha256.Size]byte {
	z.digestOnce.Do(func() {
		lines := make([]string, 0, len(z.all))
		for _, rr := range z.all {
			if soa, ok := rr.(*dns.SOA); ok {
				c := *soa
				c.Serial = 0
				rr = &c
			}
			lines = append(lines, rr.String())
		}
		slices.Sort(lines)
		h := sha256.New()
		for _, l := range lines {
			h.Write([]byte(l))
			h.Write([]byte{'\n'})
		}
		h.Sum(z.digest[:0])
	})
	return z.digest
}

// Notify returns the secondaries to tell of a new serial.
func (z *Zone) Notify() []netip.AddrPort { return z.notify }

// Zones lists the zones, sorted by apex.
func (s *Set) Zones() []*Zone {
	if s == nil {
		return nil
	}
	out := make([]*Zone, 0, len(s.zones))
	for _, z := range s.zones {
		out = append(out, z)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Origin < out[j].Origin })
	return out
}

// Transfer returns the zone as an AXFR sends it: the SOA, every other
// record, and the SOA again (RFC 5936 §2.2).
func (z *Zone) Transfer() []dns.RR {
	out := make([]dns.RR, 0, len(z.all)+1)
	out = append(out, z.soa)
	for _, rr := range z.all {
		if rr.Header().Rrtype != dns.TypeSOA {
			out = append(out, rr)
		}
	}
	return append(out, z.soa)
}

// ZoneStatus describes one zone for the admin view.
type ZoneStatus struct {
	Name    string `json:"name"`
	Serial  uint32 `json:"serial"`
	Records int    `json:"records"`
	Source  string `json:"source"`
}

// Status lists the zones, sorted by name.
func (s *Set) Status() []ZoneStatus {
	if s == nil {
		return nil
	}
	out := make([]ZoneStatus, 0, len(s.zones))
	for _, z := range s.zones {
		out = append(out, ZoneStatus{Name: z.Origin, Serial: z.soa.Serial, Records: len(z.all), Source: z.Source})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
