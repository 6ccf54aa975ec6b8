package zone

import (
	"github.com/miekg/dns"
)

// Answer is what an authoritative server says about one question. Its
// records are shared with the Set: read them, never change them.
type Answer struct {
	Rcode int
	// Authoritative is false for names outside every zone and for
	// referrals to a delegated child zone.
	Authoritative bool
	Answer        []dns.RR
	Ns            []dns.RR
	Extra         []dns.RR
	// Zone is the zone of the question's name, nil when Rcode is REFUSED.
	Zone *Zone
}

// maxChain bounds how many CNAMEs are followed in one answer; resolvers
// follow the rest themselves.
const maxChain = 12

// Lookup answers qname and qtype (case does not matter) as the zones say:
//
//   - a name outside every zone is REFUSED: gatehouse is never a resolver;
//   - at or below a delegation (NS records below the apex) the answer is a
//     referral: not authoritative, the NS records, and their glue;
//   - a name that exists answers its RRset, or NODATA (NOERROR, nothing in
//     the answer, the SOA in authority) when it has none of that type;
//   - a name that does not exist is synthesised from the wildcard at its
//     closest encloser (RFC 4592), else it is NXDOMAIN with the SOA;
//   - a CNAME is followed while its target is in our zones, loops stop at
//     the first repeated name, and the rcode is that of the last name
//     (RFC 6604);
//   - ANY gets a single RRset (RFC 8482 §4.1).
//
// Negative answers carry the SOA with TTL min(SOA TTL, SOA minimum)
// (RFC 2308 §3).
func (s *Set) Lookup(qname string, qtype uint16) Answer {
	qname = dns.CanonicalName(qname)
	z := s.ZoneFor(qname)
	if z == nil {
		return Answer{Rcode: dns.RcodeRefused}
	}
	a := Answer{Rcode: dns.RcodeSuccess, Authoritative: true, Zone: z}
	name := qname
	for hops := 0; ; hops++ {
		next := z.resolve(name, qtype, &a)
		if next == "" || hops >= maxChain {
			return a
		}
		next = dns.CanonicalName(next)
		for _, rr := range a.Answer {
			if rr.Header().Name == next {
				return a // a loop: the resolver sees it in the chain
			}
		}
		if z = s.ZoneFor(next); z == nil {
			return a // the target is elsewhere: the resolver goes on
		}
		name = next
	}
}

// resolve adds what z says about name to a, and returns the target of a
// CNAME to follow, if any.
func (z *Zone) resolve(name string, qtype uint16, a *Answer) string {
	if z.cuts && z.referral(name, a) {
		return ""
	}
	n, ok := z.nodes[name]
	owner := ""
	if !ok {
		n = z.wildcard(name)
		if n == nil {
			a.Rcode = dns.RcodeNameError
			a.Ns = append(a.Ns[:0], z.negSOA)
			return ""
		}
		owner = name // synthesised from the wildcard: the answer names the query
	}
	if c := n.sets[dns.TypeCNAME]; len(c) > 0 && qtype != dns.TypeCNAME {
		a.Answer = appendOwned(a.Answer, c, owner)
		return c[0].(*dns.CNAME).Target
	}
	set := n.sets[qtype]
	if qtype == dns.TypeANY {
		set = n.any()
	}
	if len(set) == 0 {
		a.Ns = append(a.Ns[:0], z.negSOA)
		return ""
	}
	a.Answer = appendOwned(a.Answer, set, owner)
	return ""
}

// referral fills a with the delegation name is at or under, if any.
func (z *Zone) referral(name string, a *Answer) bool {
	// The topmost cut between the apex and name wins: walk up from name
	// and keep the last one seen.
	var cut []dns.RR
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		p := name[off:]
		if p == z.Origin {
			break
		}
		if n := z.nodes[p]; n != nil && len(n.sets[dns.TypeNS]) > 0 {
			cut = n.sets[dns.TypeNS]
		}
	}
	if cut == nil {
		return false
	}
	a.Authoritative = len(a.Answer) > 0 // AA covers the CNAMEs already in the answer
	a.Ns = append(a.Ns[:0], cut...)
	for _, rr := range cut {
		if g := z.nodes[dns.CanonicalName(rr.(*dns.NS).Ns)]; g != nil {
			a.Extra = append(a.Extra, g.sets[dns.TypeA]...)
			a.Extra = append(a.Extra, g.sets[dns.TypeAAAA]...)
		}
	}
	return true
}

// wildcard returns the node of *.<closest encloser> for a name that does
// not exist, or nil (RFC 4592 §3.3.1).
func (z *Zone) wildcard(name string) *node {
	for off, end := dns.NextLabel(name, 0); !end; off, end = dns.NextLabel(name, off) {
		ce := name[off:]
		if _, ok := z.nodes[ce]; ok || ce == z.Origin {
			return z.nodes["*."+ce]
		}
		if len(ce) <= len(z.Origin) {
			return nil
		}
	}
	return nil
}

// anyOrder is the order in which ANY picks the one RRset it returns.
var anyOrder = []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeMX, dns.TypeTXT, dns.TypeNS, dns.TypeSOA, dns.TypeSRV, dns.TypeCAA, dns.TypePTR}

func (n *node) any() []dns.RR {
	for _, t := range anyOrder {
		if set := n.sets[t]; len(set) > 0 {
			return set
		}
	}
	return nil
}

// appendOwned appends set to dst, renamed to owner when it is not empty.
func appendOwned(dst, set []dns.RR, owner string) []dns.RR {
	if owner == "" {
		return append(dst, set...)
	}
	for _, rr := range set {
		c := dns.Copy(rr)
		c.Header().Name = owner
		dst = append(dst, c)
	}
	return dst
}
