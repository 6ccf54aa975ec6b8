package dnsserver

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/zone"
)

// NOTIFY (RFC 1996): each new serial of a zone is announced to the zone's
// secondaries, so they transfer it now rather than at their next SOA
// refresh. A secondary that does not answer is asked again after each of
// notifyWaits; one that answers with an error is not asked again.
var (
	notifyWaits   = []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	notifyTimeout = 2 * time.Second
)

// NotifyStatus is the last announcement of a zone to one secondary.
type NotifyStatus struct {
	Zone      string    `json:"zone"`
	Secondary string    `json:"secondary"`
	Serial    uint32    `json:"serial"`
	State     string    `json:"state"` // sending, acknowledged, refused (RCODE), not answered
	Tries     int       `json:"tries"`
	At        time.Time `json:"at"` // when the state was reached
}

type notifyKey struct {
	zone string
	to   netip.AddrPort
}

// storeZones serves eff, records its serials (see Serials) and, once the
// server is started, tells the secondaries of every zone whose serial it
// changes. A zone gone from eff is no longer announced. s.mu is held.
func (s *Server) storeZones(eff *zone.Set) {
	old := s.zones.Swap(eff)
	if s.Serials != nil && !s.closed {
		served := map[string]servedSerial{}
		for _, z := range eff.Zones() {
			d := z.Digest()
			served[z.Origin] = servedSerial{Serial: z.SOA().Serial, Digest: hex.EncodeToString(d[:])}
		}
		if err := s.Serials.served(served); err != nil {
			s.log().Warn("DNS serials not kept on disk: after a restart a zone's serial may go back, and its secondaries miss changes until it passes the old one", "error", err.Error())
		}
	}
	for apex, cancel := range s.notifying {
		if eff.Zone(apex) == nil {
			cancel()
			delete(s.notifying, apex)
		}
	}
	for k := range s.notified {
		if z := eff.Zone(k.zone); z == nil || !slices.Contains(z.Notify(), k.to) {
			delete(s.notified, k)
		}
	}
	if s.started && !s.closed {
		s.notifyChanged(old, eff)
	}
}

// noteNotify records where an announcement stands.
func (s *Server) noteNotify(k notifyKey, serial uint32, state string, tries int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.notified == nil {
		s.notified = map[notifyKey]*NotifyStatus{}
	}
	n := s.notified[k]
	if n == nil {
		n = &NotifyStatus{Zone: k.zone, Secondary: k.to.String()}
		s.notified[k] = n
	}
	if serialLess(serial, n.Serial) {
		return // a newer serial's announcement is under way
	}
	n.Serial, n.State, n.Tries, n.At = serial, state, tries, time.Now()
}

// notifyChanged announces the zones of cur whose serial differs from
// old's (every zone when old is nil). s.mu is held.
func (s *Server) notifyChanged(old, cur *zone.Set) {
	for _, z := range cur.Zones() {
		if len(z.Notify()) == 0 {
			continue
		}
		if o := old.Zone(z.Origin); o != nil && o.SOA().Serial == z.SOA().Serial {
			continue
		}
		if s.stop == nil {
			s.stop, s.stopAll = context.WithCancel(context.Background())
			s.notifying = map[string]context.CancelFunc{}
		}
		// A newer serial makes the older announcement moot.
		if cancel := s.notifying[z.Origin]; cancel != nil {
			cancel()
		}
		ctx, cancel := context.WithCancel(s.stop)
		s.notifying[z.Origin] = cancel
		soa := z.SOA()
		for _, to := range z.Notify() {
			from := s.sourceFor(to)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.notify(ctx, soa, from, to)
			}()
		}
	}
}

// sourceFor is the address a NOTIFY to `to` leaves from: the first address
// the server listens on that can reach it (its family; loopback for a
// loopback secondary alone), as secondaries accept NOTIFY only from their
// primary's address; none (the route picks) when there is no such
// address, or the server listens on all of them. s.mu is held.
func (s *Server) sourceFor(to netip.AddrPort) netip.Addr {
	dst := to.Addr().Unmap()
	for _, u := range s.udp {
		a := u.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		if a.Is4() == dst.Is4() && !a.IsUnspecified() && a.IsLoopback() == dst.IsLoopback() &&
			a.IsLinkLocalUnicast() == dst.IsLinkLocalUnicast() {
			return a
		}
	}
	return netip.Addr{}
}

// notify announces soa's serial to one secondary, from the address from
// when valid, until it answers, the tries run out, or ctx ends.
func (s *Server) notify(ctx context.Context, soa *dns.SOA, from netip.Addr, to netip.AddrPort) {
	m := new(dns.Msg)
	m.SetNotify(soa.Hdr.Name)
	m.Answer = []dns.RR{soa}
	log := s.log().With("zone", soa.Hdr.Name, "serial", soa.Serial, "secondary", to.String())
	key := notifyKey{soa.Hdr.Name, to}
	s.noteNotify(key, soa.Serial, "sending", 0)
	var err error
	for try := 1; ; try++ {
		var r *dns.Msg
		r, err = exchangeNotify(ctx, m, from, to)
		switch {
		case ctx.Err() != nil:
			return
		case err == nil && r.Rcode == dns.RcodeSuccess:
			s.noteNotify(key, soa.Serial, "acknowledged", try)
			log.Info("DNS NOTIFY acknowledged")
			return
		case err == nil:
			rcode := dns.RcodeToString[r.Rcode]
			s.noteNotify(key, soa.Serial, "refused ("+rcode+")", try)
			log.Warn("DNS NOTIFY refused: the secondary sees the change at its next SOA refresh; let it accept NOTIFY from this server", "rcode", rcode)
			return
		}
		s.noteNotify(key, soa.Serial, "sending", try)
		if try > len(notifyWaits) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(notifyWaits[try-1]):
		}
	}
	s.noteNotify(key, soa.Serial, "not answered", len(notifyWaits)+1)
	log.Warn("DNS NOTIFY not answered: the secondary sees the change at its next SOA refresh", "tries", len(notifyWaits)+1, "error", err.Error())
}

var errNotNotify = errors.New("the answer is not a NOTIFY response")

// exchangeNotify sends m over UDP and waits notifyTimeout for the answer
// with its ID; ctx ending stops the wait at once.
func exchangeNotify(ctx context.Context, m *dns.Msg, from netip.Addr, to netip.AddrPort) (*dns.Msg, error) {
	c := &dns.Client{Net: "udp", Timeout: notifyTimeout}
	if from.IsValid() {
		c.Dialer = &net.Dialer{LocalAddr: net.UDPAddrFromAddrPort(netip.AddrPortFrom(from, 0))}
	}
	conn, err := c.DialContext(ctx, to.String())
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	conn.SetDeadline(time.Now().Add(notifyTimeout))
	if err := conn.WriteMsg(m); err != nil {
		return nil, err
	}
	for {
		r, err := conn.ReadMsg()
		if err != nil {
			return nil, err
		}
		if r.Id != m.Id {
			continue // a late answer to an earlier try, or noise
		}
		if !r.Response || r.Opcode != dns.OpcodeNotify {
			return nil, errNotNotify
		}
		return r, nil
	}
}
