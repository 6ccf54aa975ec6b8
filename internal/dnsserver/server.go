// Package dnsserver owns gatehouse's authoritative DNS server: the UDP and
// TCP sockets, the query path from packet to reply, response rate limiting,
// zone transfers, the TXT records published at run time (ACME DNS-01), the
// serial each zone is served with (Serials) and the NOTIFY messages that
// tell secondaries of a new one.
//
// A Server lives as long as the process; each config generation hands it a
// compiled zone.Set with Update, swapped atomically. The socket loops are
// written here rather than with miekg/dns's Server because that server
// unpacks every query into a dns.Msg (several allocations per query) before
// a handler sees it, while most answers here are packed once per zone; the
// firewall hook also needs the source before any byte is parsed. Messages
// themselves are still read and built with miekg/dns.
package dnsserver

import (
	"bufio"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/zone"
)

// Server answers DNS queries for the zones of the current zone.Set on UDP
// and TCP. Set its fields before Start.
type Server struct {
	// Addrs are the addresses served, each on both UDP and TCP. A port 0
	// picks a free port, the same for both; Addrs reports the bound ones.
	Addrs []string
	// Allow, when set, decides whether a packet or connection from src is
	// served (network is "udp" or "tcp"). Denied UDP packets are dropped
	// and denied TCP connections closed before anything is read. Nil
	// allows everyone.
	Allow func(src netip.AddrPort, network string) bool
	// Logger receives start, stop, zone and error events (slog.Default
	// when nil). Queries are counted, not logged.
	Logger *slog.Logger
	// IdleTimeout closes a TCP connection with no query for this long
	// (default 10s, RFC 7766 §6.2.3).
	IdleTimeout time.Duration
	// MaxTCP caps open TCP connections (default 1024); more are closed at
	// once.
	MaxTCP int
	// Serials decides every zone's serial from the last one served (see
	// Serials); share one across servers, and give it a file, so that a
	// new server or a restart goes on from there. Nil: one in memory.
	Serials *Serials
	// TXT holds the run-time TXT records; share one across servers (see
	// TXTRecords). Nil: its own.
	TXT *TXTRecords

	zones atomic.Pointer[zone.Set] // base plus run-time TXT records
	rrl   atomic.Pointer[limiter]

	mu      sync.Mutex
	base    *zone.Set
	started bool
	// notifying cancels the NOTIFY messages of a zone's last change, when
	// a newer one replaces it; stop cancels them all (Close).
	notifying map[string]context.CancelFunc
	stop      context.Context
	stopAll   context.CancelFunc
	notified  map[notifyKey]*NotifyStatus // the last announcement to each secondary
	udp       []*net.UDPConn
	tcp       []*net.TCPListener
	conns     map[net.Conn]struct{}
	closed    bool
	wg        sync.WaitGroup

	rcodes                      [24]atomic.Uint64
	dropped, slipped, denied    atomic.Uint64
	tcpConns, transfers, panics atomic.Uint64
}

// New returns a server for addrs with the default rate limit.
func New(addrs []string) *Server {
	s := &Server{Addrs: addrs}
	s.SetRateLimit(RateLimit{})
	return s
}

func (s *Server) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Update serves set from now on; queries in flight finish with the old
// one. Run-time TXT records are kept. Compile the set first: a Set that
// does not compile never reaches the server.
func (s *Server) Update(set *zone.Set) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	eff, err := s.effective(set)
	if err != nil {
		return err
	}
	if s.base == nil && !s.closed {
		s.TXT.serve(s, true)
	}
	s.base = set
	s.storeZones(eff)
	for _, z := range eff.Status() {
		s.log().Info("DNS zone loaded", "zone", z.Name, "serial", z.Serial, "records", z.Records, "source", z.Source)
	}
	return nil
}

// Resync serves the zones again with the serials decided now and the TXT
// records as they are now. A server that replaces another sharing its
// Serials calls it once the other is closed: what the other served in
// between (a DNS-01 record) is then taken into account. TXTRecords calls
// it on every server sharing them when a record comes or goes.
func (s *Server) Resync() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if eff, err := s.effective(s.base); err == nil && eff != nil {
		s.storeZones(eff)
	}
}

// effective is set as served: with the run-time TXT records (a record
// whose zone is gone from set is kept for when the zone returns, but not
// served), and each zone at the serial Serials.next gives it: the one
// last served while its records are the same, a higher one once they
// change (a DNS-01 record that comes or goes is a change). s.mu is held.
func (s *Server) effective(set *zone.Set) (*zone.Set, error) {
	if set == nil {
		return nil, nil
	}
	if s.Serials == nil {
		s.Serials = NewSerials("")
	}
	if s.TXT == nil {
		s.TXT = NewTXTRecords()
	}
	var recs []zone.TXT
	for _, r := range s.TXT.list() {
		if set.ZoneFor(r.Name) != nil {
			recs = append(recs, r)
		}
	}
	eff, err := set.WithTXT(recs, nil)
	if err != nil {
		return nil, err
	}
	var raise map[string]uint32
	for _, z := range eff.Zones() {
		cur := z.SOA().Serial
		if want := s.Serials.next(z.Origin, cur, z.Digest(), z.SerialMade()); want != cur {
			if raise == nil {
				raise = map[string]uint32{}
			}
			raise[z.Origin] = want - cur // serial arithmetic: wraps as RFC 1982 does
		}
	}
	if raise == nil {
		return eff, nil
	}
	return set.WithTXT(recs, raise)
}

// PublishTXT serves a TXT record at fqdn until remove is called, across
// Updates, and on the servers sharing s.TXT (one that replaces s). The
// name must be inside a served zone. It satisfies the TXT publisher that
// ACME's DNS-01 challenge uses.
func (s *Server) PublishTXT(fqdn, value string) (remove func(), err error) {
	s.mu.Lock()
	if s.base == nil {
		s.mu.Unlock()
		return nil, errors.New("publishing TXT: no zones are served yet")
	}
	if s.base.ZoneFor(fqdn) == nil {
		s.mu.Unlock()
		return nil, fmt.Errorf("publishing TXT %s: no zone served here holds it: add its zone to dns.zones", strings.TrimSuffix(fqdn, "."))
	}
	id := s.TXT.add(zone.TXT{Name: fqdn, Value: value})
	eff, err := s.effective(s.base)
	if err != nil {
		s.TXT.remove(id)
		s.mu.Unlock()
		return nil, err
	}
	s.storeZones(eff)
	s.mu.Unlock()
	txt := s.TXT
	txt.changed(s)
	var once sync.Once
	return func() {
		once.Do(func() {
			txt.remove(id)
			txt.changed(nil)
		})
	}, nil
}

// Start binds every address on UDP and TCP and serves until Close. It
// fails, with nothing left open, when an address cannot be bound.
func (s *Server) Start() error {
	if s.rrl.Load() == nil {
		s.SetRateLimit(RateLimit{})
	}
	var bound []string
	for _, a := range s.Addrs {
		u, t, err := listenBoth(a)
		if err != nil {
			s.Close()
			return fmt.Errorf("dnsserver: listening on %s: %w", a, err)
		}
		s.mu.Lock()
		s.udp = append(s.udp, u)
		s.tcp = append(s.tcp, t)
		s.mu.Unlock()
		bound = append(bound, u.LocalAddr().String())
	}
	s.Addrs = bound
	s.mu.Lock()
	defer s.mu.Unlock()
	// The secondaries hear of the zones once they can be asked for them.
	s.started = true
	s.notifyChanged(nil, s.zones.Load())
	for _, u := range s.udp {
		// Several readers per socket let the kernel spread packets over
		// the cores; each reader owns its buffers.
		for range runtime.GOMAXPROCS(0) {
			s.wg.Add(1)
			go s.serveUDP(u)
		}
	}
	for _, t := range s.tcp {
		s.wg.Add(1)
		go s.serveTCP(t)
	}
	s.log().Info("DNS server listening", "addrs", bound)
	return nil
}

// listenBoth binds addr on UDP, then TCP on the same port (port 0 picks
// one free on both).
func listenBoth(addr string) (*net.UDPConn, *net.TCPListener, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	for try := 0; ; try++ {
		u, err := net.ListenUDP("udp", ua)
		if err != nil {
			return nil, nil, err
		}
		ta := &net.TCPAddr{IP: ua.IP, Port: u.LocalAddr().(*net.UDPAddr).Port, Zone: ua.Zone}
		t, err := net.ListenTCP("tcp", ta)
		if err == nil {
			return u, t, nil
		}
		u.Close()
		if ua.Port != 0 || try >= 10 {
			return nil, nil, err
		}
	}
}

// Close stops serving and waits for the socket loops to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.TXT != nil {
		s.TXT.serve(s, false)
	}
	if s.stopAll != nil {
		s.stopAll()
	}
	for _, u := range s.udp {
		u.Close()
	}
	for _, t := range s.tcp {
		t.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// batch is how many datagrams one system call reads or writes.
const batch = 32

// udpReply is the reply to a datagram after the firewall hook and rate
// limiting, or nil.
func (s *Server) udpReply(w *worker, q []byte, src netip.AddrPort) []byte {
	if s.Allow != nil && !s.Allow(src, "udp") {
		s.denied.Add(1)
		return nil
	}
	reply := s.answer(w, q, src, true)
	if reply == nil {
		return nil
	}
	if l := s.rrl.Load(); !src.Addr().IsLoopback() || l.cfg.LimitLoopback {
		switch l.check(src.Addr()) {
		case verdictDrop:
			s.dropped.Add(1)
			return nil
		case verdictSlip:
			s.slipped.Add(1)
			reply = w.slip(reply)
		}
	}
	return reply
}

// answer is respond, with a panic turned into silence and counted: a bad
// packet must never stop the server.
func (s *Server) answer(w *worker, q []byte, src netip.AddrPort, udp bool) (reply []byte) {
	defer func() {
		if p := recover(); p != nil {
			s.panics.Add(1)
			s.log().Error("DNS query handler panicked", "panic", p, "client", src)
			reply = nil
		}
	}()
	reply = w.respond(q, src, udp)
	if len(reply) >= 4 {
		rc := int(reply[3] & 0xF)
		if w.edns && len(reply) > 11 {
			rc |= int(reply[len(reply)-6]) << 4
		}
		if rc < len(s.rcodes) {
			s.rcodes[rc].Add(1)
		}
	}
	return reply
}

// slip turns a reply into an empty truncated one: header and question,
// TC set, so a real resolver retries over TCP (which is not limited).
func (w *worker) slip(reply []byte) []byte {
	n := hdrLen
	if w.qEnd > 0 {
		n = w.qEnd
	}
	reply = reply[:min(n, len(reply))]
	binary.BigEndian.PutUint16(reply[2:], binary.BigEndian.Uint16(reply[2:])|flagTC)
	for i := 6; i < hdrLen; i++ {
		reply[i] = 0
	}
	return reply
}

func (s *Server) serveTCP(l *net.TCPListener) {
	defer s.wg.Done()
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // out of descriptors: let some close
			continue
		}
		src := c.RemoteAddr().(*net.TCPAddr).AddrPort()
		if s.Allow != nil && !s.Allow(src, "tcp") {
			s.denied.Add(1)
			c.Close()
			continue
		}
		max := s.MaxTCP
		if max <= 0 {
			max = 1024
		}
		s.mu.Lock()
		if s.closed || len(s.conns) >= max {
			s.mu.Unlock()
			c.Close()
			continue
		}
		if s.conns == nil {
			s.conns = map[net.Conn]struct{}{}
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		s.tcpConns.Add(1)
		go s.serveConn(c, src)
	}
}

// serveConn answers queries on one TCP connection in order, each framed
// by a two-byte length (RFC 1035 §4.2.2).
func (s *Server) serveConn(c *net.TCPConn, src netip.AddrPort) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 10 * time.Second
	}
	r := bufio.NewReader(c)
	w := newWorker(s)
	buf := make([]byte, dns.MaxMsgSize)
	for {
		c.SetReadDeadline(time.Now().Add(idle))
		if _, err := io.ReadFull(r, buf[:2]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(buf))
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return
		}
		reply := s.answer(w, buf[:n], src, false)
		c.SetWriteDeadline(time.Now().Add(idle))
		if w.xfr != nil {
			if err := s.sendTransfer(c, buf[:n], w.xfr); err != nil {
				return
			}
			continue
		}
		if reply == nil {
			return
		}
		if err := writeFramed(c, reply); err != nil {
			return
		}
	}
}

func writeFramed(c net.Conn, msg []byte) error {
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(msg)))
	_, err := (&net.Buffers{l[:], msg}).WriteTo(c)
	return err
}

// sendTransfer streams z as AXFR messages of up to about 16 KB each.
func (s *Server) sendTransfer(c net.Conn, q []byte, z *zone.Zone) error {
	var req dns.Msg
	if err := req.Unpack(q); err != nil || len(req.Question) != 1 {
		return errors.New("bad transfer request")
	}
	s.transfers.Add(1)
	s.log().Info("DNS zone transfer", "zone", z.Origin, "client", c.RemoteAddr().String())
	rrs := z.Transfer()
	for len(rrs) > 0 {
		m := new(dns.Msg)
		m.SetReply(&req)
		m.Authoritative = true
		m.Compress = true
		n := 0
		for n < len(rrs) {
			m.Answer = append(m.Answer, rrs[n])
			n++
			if m.Len() > 16<<10 {
				if n > 1 {
					m.Answer = m.Answer[:n-1]
					n--
				}
				break
			}
		}
		rrs = rrs[n:]
		b, err := m.Pack()
		if err != nil {
			return err
		}
		if err := writeFramed(c, b); err != nil {
			return err
		}
	}
	return nil
}

// Status is the server's admin view.
type Status struct {
	Addrs []string          `json:"addrs"`
	Zones []zone.ZoneStatus `json:"zones"`
	// Responses counts replies by rcode name.
	Responses map[string]uint64 `json:"responses"`
	// RateLimited counts UDP replies dropped and sent truncated instead.
	Dropped   uint64 `json:"rate_limit_dropped"`
	Slipped   uint64 `json:"rate_limit_truncated"`
	Denied    uint64 `json:"firewall_denied"`
	TCPConns  uint64 `json:"tcp_connections"`
	Transfers uint64 `json:"transfers"`
	Published int    `json:"published_txt"`
	Panics    uint64 `json:"panics,omitempty"`
	// Notify is the last announcement to each secondary, by zone.
	Notify []NotifyStatus `json:"notify,omitempty"`
}

// Status reports the zones served and the counters since Start.
func (s *Server) Status() Status {
	st := Status{
		Addrs: s.Addrs, Zones: s.zones.Load().Status(), Responses: map[string]uint64{},
		Dropped: s.dropped.Load(), Slipped: s.slipped.Load(), Denied: s.denied.Load(),
		TCPConns: s.tcpConns.Load(), Transfers: s.transfers.Load(), Panics: s.panics.Load(),
	}
	for rc := range s.rcodes {
		if n := s.rcodes[rc].Load(); n > 0 {
			name := dns.RcodeToString[rc]
			if name == "" {
				name = fmt.Sprint(rc)
			}
			st.Responses[name] = n
		}
	}
	s.mu.Lock()
	if s.TXT != nil {
		st.Published = s.TXT.len()
	}
	for _, n := range s.notified {
		st.Notify = append(st.Notify, *n)
	}
	s.mu.Unlock()
	slices.SortFunc(st.Notify, func(a, b NotifyStatus) int {
		return cmp.Or(cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.Secondary, b.Secondary))
	})
	return st
}
