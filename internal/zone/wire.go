package zone

import (
	"github.com/miekg/dns"
)

// Packed answers, made at compile time.
//
// For a name that exists in a zone, the answer to a question depends only
// on the question's type, and for most types not even on that: every type
// the name (or the end of its CNAME chain) does not hold gets the same
// NODATA, chain, or referral. So Compile packs, per name, one message for
// each type that matters and one for all the others, with the question
// written in lowercase and ID 0. The server copies the message, patches the
// ID, the flags the client sets, and the question as the client wrote it
// (same length, so every compression pointer stays valid), and sends it.
// Names that do not exist (NXDOMAIN, wildcards) are answered by Lookup.

// probeType is a type no zone holds (private use, RFC 6895 §3.1), asked
// to pack the answer shared by every type the name does not hold.
const probeType = 65534

type wireNode struct {
	types []uint16
	msgs  [][]byte
	other []byte
}

func (s *Set) pack() map[string]*wireNode {
	out := map[string]*wireNode{}
	buf := make([]byte, 256)
	for _, z := range s.zones {
		for name := range z.nodes {
			n, err := dns.PackDomainName(name, buf, 0, nil, false)
			if err != nil {
				continue
			}
			key := string(buf[:n])
			if _, done := out[key]; done {
				continue
			}
			types := map[uint16]bool{dns.TypeCNAME: true}
			s.typesAlong(name, types)
			w := &wireNode{other: packAnswer(name, probeType, s.Lookup(name, probeType))}
			if w.other == nil {
				continue
			}
			for t := range types {
				if m := packAnswer(name, t, s.Lookup(name, t)); m != nil {
					w.types = append(w.types, t)
					w.msgs = append(w.msgs, m)
				}
			}
			out[key] = w
		}
	}
	return out
}

// typesAlong adds the types held by name and by every name its CNAME chain
// goes through; these are the types whose answers differ from the rest.
func (s *Set) typesAlong(name string, types map[uint16]bool) {
	for hops := 0; hops <= maxChain; hops++ {
		z := s.ZoneFor(name)
		if z == nil {
			return
		}
		n := z.nodes[name]
		if n == nil {
			n = z.wildcard(name)
		}
		if n == nil {
			return
		}
		for t := range n.sets {
			types[t] = true
		}
		c := n.sets[dns.TypeCNAME]
		if len(c) == 0 {
			return
		}
		name = dns.CanonicalName(c[0].(*dns.CNAME).Target)
	}
}

func packAnswer(name string, qtype uint16, a Answer) []byte {
	m := dns.Msg{
		MsgHdr:   dns.MsgHdr{Response: true, Authoritative: a.Authoritative, Rcode: a.Rcode},
		Question: []dns.Question{{Name: name, Qtype: qtype, Qclass: dns.ClassINET}},
		Answer:   a.Answer, Ns: a.Ns, Extra: a.Extra,
		Compress: true,
	}
	b, err := m.Pack()
	if err != nil {
		return nil
	}
	return b
}

// Packed returns the packed answer for the question name (in wire format,
// lowercase) and qtype, with ID 0 and the question as packed, or nil when
// Lookup must answer. The bytes are shared: copy them before changing.
func (s *Set) Packed(name []byte, qtype uint16) []byte {
	w := s.wire[string(name)]
	if w == nil {
		return nil
	}
	for i, t := range w.types {
		if t == qtype {
			return w.msgs[i]
		}
	}
	return w.other
}
