package zone

import (
	"fmt"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// TXT is a record added at run time, such as an ACME DNS-01 challenge.
type TXT struct {
	Name  string // fully qualified; the final dot is optional
	Value string
}

// TXTTTL is the TTL of run-time TXT records: short, as they come and go
// within minutes.
const TXTTTL = 60

// WithTXT returns a Set that also serves recs, leaving s unchanged, with
// the serial of each zone in raise (by apex) raised by its amount (the
// caller decides serials: see dnsserver.Serials). A name outside the
// zones, delegated away, or holding a CNAME is an error.
func (s *Set) WithTXT(recs []TXT, raise map[string]uint32) (*Set, error) {
	if len(recs) == 0 && len(raise) == 0 {
		return s, nil
	}
	inputs := slices.Clone(s.inputs)
	changed := make([]bool, len(inputs))
	raiseAt := func(i int) {
		if changed[i] {
			return
		}
		changed[i] = true
		rrs := make([]dns.RR, len(inputs[i].rrs))
		for j, rr := range inputs[i].rrs {
			if soa, ok := rr.(*dns.SOA); ok {
				c := dns.Copy(soa).(*dns.SOA)
				c.Serial += raise[inputs[i].apex]
				rr = c
			}
			rrs[j] = rr
		}
		inputs[i].rrs = rrs
	}
	for apex := range raise {
		if i := slices.IndexFunc(inputs, func(in zoneInput) bool { return in.apex == apex }); i >= 0 {
			raiseAt(i)
		}
	}
	for _, r := range recs {
		name := dns.CanonicalName(r.Name)
		if _, ok := dns.IsDomainName(name); !ok || strings.Contains(name, "..") {
			return nil, fmt.Errorf("publishing TXT %q: not a domain name", r.Name)
		}
		z := s.ZoneFor(name)
		if z == nil {
			return nil, fmt.Errorf("publishing TXT %s: no zone served here holds it: add its zone to dns.zones", strings.TrimSuffix(name, "."))
		}
		if n := z.nodes[name]; n != nil && len(n.sets[dns.TypeCNAME]) > 0 {
			return nil, fmt.Errorf("publishing TXT %s: the name is a CNAME, which cannot have other records", strings.TrimSuffix(name, "."))
		}
		var ref Answer
		if z.cuts && z.referral(name, &ref) {
			return nil, fmt.Errorf("publishing TXT %s: the name is delegated to other name servers", strings.TrimSuffix(name, "."))
		}
		i := slices.IndexFunc(inputs, func(in zoneInput) bool { return in.apex == z.Origin })
		raiseAt(i)
		inputs[i].rrs = append(inputs[i].rrs, &dns.TXT{
			Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: TXTTTL},
			Txt: splitTXT(r.Value),
		})
	}
	return build(inputs), nil
}

func splitTXT(s string) []string {
	var out []string
	for len(s) > 255 {
		out = append(out, s[:255])
		s = s[255:]
	}
	return append(out, s)
}
