package dnsserver

import (
	"encoding/binary"
	"net/netip"

	"github.com/miekg/dns"

	"gatehouse/internal/zone"
)

// The query path reads the header and question straight from the packet,
// without unpacking a dns.Msg: most queries are answered by copying a
// message packed at compile time (zone.Set.Packed) and patching its ID,
// flags and question, with no allocation. Everything else (names that do
// not exist, wildcards, ANY, answers too large for the client's buffer,
// errors) is built with miekg/dns from zone.Set.Lookup.

// EDNSSize is the UDP payload size advertised and used at most, the value
// agreed at DNS Flag Day 2020 to avoid IP fragmentation.
const EDNSSize = 1232

const (
	hdrLen   = 12
	flagQR   = 0x8000
	flagAA   = 0x0400
	flagTC   = 0x0200
	flagRD   = 0x0100
	flagCD   = 0x0010
	optDO    = 0x8000
	rcodeBad = 16 // BADVERS, RFC 6891 §6.1.3
)

// worker holds one goroutine's buffers, so answering allocates nothing.
type worker struct {
	s   *Server
	key [256]byte // the question name, lowercase, in wire format
	out []byte
	// Filled by parse:
	qEnd    int // end of the question in the query
	qtype   uint16
	edns    bool
	ednsDO  bool
	ednsLen int
	// xfr is the zone a TCP query asked to transfer.
	xfr *zone.Zone
}

func newWorker(s *Server) *worker { return &worker{s: s, out: make([]byte, 0, 4096)} }

// respond returns the reply to the message q from src, or nil to stay
// silent. The reply is in w's buffer, valid until the next call.
func (w *worker) respond(q []byte, src netip.AddrPort, udp bool) []byte {
	w.xfr, w.qEnd, w.edns = nil, 0, false
	if len(q) < hdrLen {
		return nil // not even a header: any reply could be used to amplify
	}
	flags := binary.BigEndian.Uint16(q[2:])
	if flags&flagQR != 0 {
		return nil // a response, never answered: two servers could loop
	}
	rc, nameLen := w.parse(q)
	if rc == -1 {
		return nil
	}
	if rc != dns.RcodeSuccess {
		return w.errorReply(q, rc)
	}
	if op := (flags >> 11) & 0xF; op != dns.OpcodeQuery {
		return w.errorReply(q, dns.RcodeNotImplemented)
	}
	switch w.qtype {
	case 0, dns.TypeOPT:
		return w.errorReply(q, dns.RcodeFormatError)
	case dns.TypeTSIG, dns.TypeTKEY, dns.TypeMAILA, dns.TypeMAILB:
		return w.errorReply(q, dns.RcodeNotImplemented)
	case dns.TypeAXFR, dns.TypeIXFR:
		return w.transfer(q, src, udp)
	}
	if binary.BigEndian.Uint16(q[w.qEnd-2:]) != dns.ClassINET {
		return w.errorReply(q, dns.RcodeRefused)
	}
	set := w.s.zones.Load()
	limit := dns.MaxMsgSize
	if udp {
		limit = dns.MinMsgSize
		if w.edns {
			limit = max(dns.MinMsgSize, min(w.ednsLen, EDNSSize))
		}
	}
	if w.qtype != dns.TypeANY && set != nil {
		if b := set.Packed(w.key[:nameLen], w.qtype); b != nil && len(b)+11 <= limit {
			return w.patch(q, b)
		}
	}
	return w.slow(q, set, limit)
}

// parse checks the header and reads the question and EDNS option. It
// returns an rcode to reply with, or -1 to stay silent, and the length of
// the lowercase name in w.key.
func (w *worker) parse(q []byte) (rcode, nameLen int) {
	qd := binary.BigEndian.Uint16(q[4:])
	an := binary.BigEndian.Uint16(q[6:])
	ns := binary.BigEndian.Uint16(q[8:])
	ar := binary.BigEndian.Uint16(q[10:])
	if qd != 1 || an != 0 || ns != 0 || ar > 1 {
		return dns.RcodeFormatError, 0
	}
	off := hdrLen
	for {
		if off >= len(q) {
			return dns.RcodeFormatError, 0
		}
		l := int(q[off])
		if l == 0 {
			break
		}
		// The first name of a message cannot be compressed: a pointer
		// could only point back into the header.
		if l&0xC0 != 0 || off+1+l >= len(q) || nameLen+1+l >= 255 {
			return dns.RcodeFormatError, 0
		}
		w.key[nameLen] = byte(l)
		for i := 1; i <= l; i++ {
			c := q[off+i]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			w.key[nameLen+i] = c
		}
		nameLen += 1 + l
		off += 1 + l
	}
	w.key[nameLen] = 0
	nameLen++
	off++
	if off+4 > len(q) {
		return dns.RcodeFormatError, 0
	}
	w.qtype = binary.BigEndian.Uint16(q[off:])
	off += 4
	w.qEnd = off
	w.edns, w.ednsDO = false, false
	if ar == 1 {
		// An OPT record (RFC 6891 §6.1.2): root name, type 41, the payload
		// size as class, extended rcode/version/flags as TTL, options.
		if off+11 > len(q) || q[off] != 0 || binary.BigEndian.Uint16(q[off+1:]) != dns.TypeOPT {
			return dns.RcodeFormatError, nameLen
		}
		w.edns = true
		w.ednsLen = int(binary.BigEndian.Uint16(q[off+3:]))
		version := q[off+6]
		w.ednsDO = binary.BigEndian.Uint16(q[off+7:])&optDO != 0
		rdlen := int(binary.BigEndian.Uint16(q[off+9:]))
		off += 11 + rdlen
		if off > len(q) {
			return dns.RcodeFormatError, nameLen
		}
		if version != 0 {
			return rcodeBad, nameLen
		}
	}
	if off != len(q) {
		return dns.RcodeFormatError, nameLen
	}
	return dns.RcodeSuccess, nameLen
}

// patch answers from a packed message: the client's ID, RD and CD bits,
// and question (same length as the packed one, so compression pointers
// hold), plus an OPT record when the client sent one.
func (w *worker) patch(q, packed []byte) []byte {
	out := append(w.out[:0], packed...)
	copy(out[0:2], q[0:2])
	flags := binary.BigEndian.Uint16(out[2:]) | binary.BigEndian.Uint16(q[2:])&(flagRD|flagCD)
	binary.BigEndian.PutUint16(out[2:], flags)
	copy(out[hdrLen:w.qEnd], q[hdrLen:w.qEnd])
	if w.edns {
		out = w.appendOPT(out, 0)
	}
	w.out = out
	return out
}

func (w *worker) appendOPT(out []byte, extRcode byte) []byte {
	var do byte
	if w.ednsDO {
		do = 0x80 // RFC 3225 §3: the DO bit is copied into the response
	}
	out = append(out, 0, 0, byte(dns.TypeOPT), EDNSSize>>8, EDNSSize&0xFF, extRcode, 0, do, 0, 0, 0)
	binary.BigEndian.PutUint16(out[10:], binary.BigEndian.Uint16(out[10:])+1)
	return out
}

// errorReply answers with rcode, the header and, when it parsed, the
// question: never larger than the query.
func (w *worker) errorReply(q []byte, rcode int) []byte {
	out := append(w.out[:0], q[:hdrLen]...)
	flags := binary.BigEndian.Uint16(q[2:])&(0x7800|flagRD|flagCD) | flagQR | uint16(rcode&0xF)
	binary.BigEndian.PutUint16(out[2:], flags)
	for i := 4; i < hdrLen; i++ {
		out[i] = 0
	}
	if w.qEnd > 0 {
		out = append(out, q[hdrLen:w.qEnd]...)
		out[5] = 1
	}
	if w.edns {
		out = w.appendOPT(out, byte(rcode>>4))
	}
	w.out = out
	return out
}

// slow builds the answer with miekg/dns.
func (w *worker) slow(q []byte, set *zone.Set, limit int) []byte {
	name, _, err := dns.UnpackDomainName(q, hdrLen)
	if err != nil {
		return w.errorReply(q, dns.RcodeFormatError)
	}
	a := zone.Answer{Rcode: dns.RcodeRefused}
	if set != nil {
		a = set.Lookup(name, w.qtype)
	}
	flags := binary.BigEndian.Uint16(q[2:])
	m := &dns.Msg{
		MsgHdr: dns.MsgHdr{
			Id: binary.BigEndian.Uint16(q), Response: true, Authoritative: a.Authoritative, Rcode: a.Rcode,
			RecursionDesired: flags&flagRD != 0, CheckingDisabled: flags&flagCD != 0,
		},
		Question: []dns.Question{{Name: name, Qtype: w.qtype, Qclass: dns.ClassINET}},
		Answer:   a.Answer, Ns: a.Ns, Extra: a.Extra,
		Compress: true,
	}
	if w.edns {
		m.SetEdns0(EDNSSize, w.ednsDO)
	}
	if m.Len() > limit {
		m.Truncate(limit) // sets TC: the resolver asks again over TCP
	}
	out, err := m.PackBuffer(w.out[:cap(w.out)])
	if err != nil {
		w.s.log().Error("packing a DNS answer", "name", name, "type", dns.TypeToString[w.qtype], "err", err)
		return w.errorReply(q, dns.RcodeServerFailure)
	}
	w.out = out
	return out
}

// transfer answers AXFR and IXFR: only over TCP (RFC 5936 §4.2), only for
// a zone's apex, and only to clients the zone allows. An IXFR is answered
// with the whole zone, which RFC 1995 §4 permits.
func (w *worker) transfer(q []byte, src netip.AddrPort, udp bool) []byte {
	if udp {
		return w.errorReply(q, dns.RcodeNotImplemented)
	}
	name, _, err := dns.UnpackDomainName(q, hdrLen)
	if err != nil {
		return w.errorReply(q, dns.RcodeFormatError)
	}
	z := w.s.zones.Load().Zone(name)
	if z == nil {
		return w.errorReply(q, dns.RcodeNotAuth)
	}
	if !z.TransferAllowed(src.Addr()) {
		w.s.log().Info("DNS zone transfer refused", "zone", z.Origin, "client", src.Addr())
		return w.errorReply(q, dns.RcodeRefused)
	}
	w.xfr = z
	return nil
}
