package dnsserver

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/syncbuf"
)

// secondary is a DNS server on loopback that records the NOTIFY messages
// it gets and answers each with rcode, unless drop says to stay silent.
type secondary struct {
	addr  string
	mu    sync.Mutex
	got   []*dns.Msg
	from  []string // the source address of each
	seen  chan *dns.Msg
	rcode int
	drop  func(n int) bool // n counts the messages so far, from 1
}

func startSecondary(t *testing.T, rcode int, drop func(n int) bool) *secondary {
	t.Helper()
	sec := &secondary{seen: make(chan *dns.Msg, 64), rcode: rcode, drop: drop}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sec.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		sec.mu.Lock()
		sec.got = append(sec.got, m)
		sec.from = append(sec.from, w.RemoteAddr().(*net.UDPAddr).IP.String())
		n, rcode, drop := len(sec.got), sec.rcode, sec.drop
		sec.mu.Unlock()
		sec.seen <- m
		if drop != nil && drop(n) {
			return
		}
		r := new(dns.Msg)
		r.SetRcode(m, rcode)
		w.WriteMsg(r)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return sec
}

// next waits for the next NOTIFY the secondary gets.
func (sec *secondary) next(t *testing.T) *dns.Msg {
	t.Helper()
	select {
	case m := <-sec.seen:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no NOTIFY came")
		return nil
	}
}

// none checks that no NOTIFY comes within a short while.
func (sec *secondary) none(t *testing.T, why string) {
	t.Helper()
	select {
	case m := <-sec.seen:
		t.Errorf("%s: a NOTIFY came: %v", why, m)
	case <-time.After(300 * time.Millisecond):
	}
}

func notifyZones(to string) string {
	return fmt.Sprintf("dns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.org:\n      notify: [%q]\n      records:\n        - {name: www, type: A, value: 192.0.2.1}\n    quiet.test:\n      records:\n        - {name: a, type: A, value: 192.0.2.2}\n", to)
}

// serialOf checks m is a NOTIFY for example.org as RFC 1996 §3 has it and
// returns the serial of the SOA it carries.
func serialOf(t *testing.T, m *dns.Msg) uint32 {
	t.Helper()
	if m.Opcode != dns.OpcodeNotify || m.Response || !m.Authoritative || len(m.Question) != 1 ||
		m.Question[0].Name != "example.org." || m.Question[0].Qtype != dns.TypeSOA {
		t.Fatalf("not a NOTIFY for example.org: %v", m)
	}
	if len(m.Answer) != 1 {
		t.Fatalf("NOTIFY without the SOA: %v", m)
	}
	return m.Answer[0].(*dns.SOA).Serial
}

// TestNotify: the secondaries hear of the zone when the server starts, of
// each new serial after (a reload, a run-time TXT record and its
// removal), and of nothing else.
func TestNotify(t *testing.T) {
	sec := startSecondary(t, dns.RcodeSuccess, nil)
	logs := &syncbuf.Buffer{}
	s := New([]string{"127.0.0.1:0"})
	s.Logger = slog.New(slog.NewTextHandler(logs, nil))
	base := compile(t, notifyZones(sec.addr))
	if err := s.Update(base); err != nil {
		t.Fatal(err)
	}
	sec.none(t, "before Start")
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	first := serialOf(t, sec.next(t))
	if first != base.Zone("example.org").SOA().Serial {
		t.Errorf("serial %d, want %d", first, base.Zone("example.org").SOA().Serial)
	}

	if err := s.Update(base); err != nil { // the same serial: nothing to tell
		t.Fatal(err)
	}
	sec.none(t, "an Update with the same serial")

	remove, err := s.PublishTXT("_acme-challenge.example.org", "token")
	if err != nil {
		t.Fatal(err)
	}
	withTXT := serialOf(t, sec.next(t))
	remove()
	removed := serialOf(t, sec.next(t))
	if !(first < withTXT && withTXT < removed) {
		t.Errorf("serials %d, %d, %d: each change must raise it", first, withTXT, removed)
	}
	// A reload that changes nothing keeps the serial and tells nobody;
	// one that changes a record raises it.
	if err := s.Update(compile(t, notifyZones(sec.addr))); err != nil {
		t.Fatal(err)
	}
	sec.none(t, "a reload that changes nothing")
	changed := strings.Replace(notifyZones(sec.addr), "192.0.2.1", "192.0.2.9", 1)
	if err := s.Update(compile(t, changed)); err != nil {
		t.Fatal(err)
	}
	if got := serialOf(t, sec.next(t)); !serialLess(removed, got) {
		t.Errorf("after a reload that changes a record the serial went from %d to %d", removed, got)
	}
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), "DNS NOTIFY acknowledged") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "DNS NOTIFY acknowledged") || !strings.Contains(logs.String(), "secondary="+sec.addr) {
		t.Errorf("acknowledgement not logged:\n%s", logs.String())
	}
	last := s.zones.Load().Zone("example.org").SOA().Serial
	if !eventually(func() bool {
		st := s.Status().Notify
		return len(st) == 1 && st[0].Zone == "example.org." && st[0].Secondary == sec.addr && st[0].Serial == last && st[0].State == "acknowledged"
	}) {
		t.Errorf("status: %+v, want serial %d acknowledged", s.Status().Notify, last)
	}
	// A zone no longer served is no longer announced nor shown.
	if err := s.Update(compile(t, defaultSnippet)); err != nil {
		t.Fatal(err)
	}
	if st := s.Status().Notify; len(st) != 0 {
		t.Errorf("status after the zone left: %+v", st)
	}
}

func eventually(f func() bool) bool {
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}

// TestNotifyRetries: a secondary that does not answer is asked again, one
// that refuses is not, and Close stops the asking at once.
func TestNotifyRetries(t *testing.T) {
	waits, timeout := notifyWaits, notifyTimeout
	notifyWaits, notifyTimeout = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}, 100*time.Millisecond
	t.Cleanup(func() { notifyWaits, notifyTimeout = waits, timeout })

	t.Run("silent twice", func(t *testing.T) {
		sec := startSecondary(t, dns.RcodeSuccess, func(n int) bool { return n <= 2 })
		logs := &syncbuf.Buffer{}
		start(t, notifyZones(sec.addr), func(s *Server) { s.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		a, b, c := sec.next(t), sec.next(t), sec.next(t)
		if a.Id != b.Id || b.Id != c.Id {
			t.Errorf("a retry is a new message: ids %d %d %d", a.Id, b.Id, c.Id)
		}
		sec.none(t, "after the answer")
		deadline := time.Now().Add(2 * time.Second)
		for !strings.Contains(logs.String(), "DNS NOTIFY acknowledged") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if !strings.Contains(logs.String(), "DNS NOTIFY acknowledged") {
			t.Errorf("not acknowledged:\n%s", logs.String())
		}
	})
	t.Run("never answers", func(t *testing.T) {
		sec := startSecondary(t, dns.RcodeSuccess, func(int) bool { return true })
		logs := &syncbuf.Buffer{}
		s, _ := start(t, notifyZones(sec.addr), func(s *Server) { s.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		for range len(notifyWaits) + 1 {
			sec.next(t)
		}
		sec.none(t, "after the last try")
		if !strings.Contains(logs.String(), "DNS NOTIFY not answered") {
			t.Errorf("giving up not logged:\n%s", logs.String())
		}
		if st := s.Status().Notify; len(st) != 1 || st[0].State != "not answered" || st[0].Tries != len(notifyWaits)+1 {
			t.Errorf("status: %+v", st)
		}
	})
	t.Run("refused", func(t *testing.T) {
		sec := startSecondary(t, dns.RcodeRefused, nil)
		logs := &syncbuf.Buffer{}
		s, _ := start(t, notifyZones(sec.addr), func(s *Server) { s.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
		sec.next(t)
		sec.none(t, "after a refusal")
		if st := s.Status().Notify; len(st) != 1 || st[0].State != "refused (REFUSED)" || st[0].Tries != 1 {
			t.Errorf("status: %+v", st)
		}
		if !strings.Contains(logs.String(), "DNS NOTIFY refused") || !strings.Contains(logs.String(), "rcode=REFUSED") {
			t.Errorf("refusal not logged:\n%s", logs.String())
		}
	})
	t.Run("close", func(t *testing.T) {
		notifyWaits = []time.Duration{time.Hour}
		sec := startSecondary(t, dns.RcodeSuccess, func(int) bool { return true })
		s, _ := start(t, notifyZones(sec.addr))
		sec.next(t)
		began := time.Now()
		s.Close()
		if d := time.Since(began); d > time.Second {
			t.Errorf("Close waited %v for the NOTIFY retries", d)
		}
	})
}

// TestNotifyOnlyChangedZone: a DNS-01 record in one zone raises that
// zone's serial alone, so the other zone's secondaries transfer nothing.
func TestNotifyOnlyChangedZone(t *testing.T) {
	sec := startSecondary(t, dns.RcodeSuccess, nil)
	text := notifyZones(sec.addr) + fmt.Sprintf("    other.test:\n      notify: [%q]\n      records:\n        - {name: a, type: A, value: 192.0.2.3}\n", sec.addr)
	s, _ := start(t, text)
	before := map[string]uint32{}
	for range 2 {
		m := sec.next(t)
		before[m.Question[0].Name] = m.Answer[0].(*dns.SOA).Serial
	}
	remove, err := s.PublishTXT("_acme-challenge.other.test", "token")
	if err != nil {
		t.Fatal(err)
	}
	remove()
	// The removal's serial supersedes the publication's, whose NOTIFY may
	// never leave: one or two come, all for other.test.
	final := s.zones.Load().Zone("other.test").SOA().Serial
	var last uint32
	for m := sec.next(t); m != nil; {
		if m.Question[0].Name != "other.test." {
			t.Errorf("a record in other.test announced %s", m.Question[0].Name)
		}
		last = m.Answer[0].(*dns.SOA).Serial
		select {
		case m = <-sec.seen:
		case <-time.After(300 * time.Millisecond):
			m = nil
		}
	}
	if last != final {
		t.Errorf("last NOTIFY for serial %d, want %d", last, final)
	}
	if got := s.zones.Load().Zone("example.org").SOA().Serial; got != before["example.org."] {
		t.Errorf("example.org's serial moved from %d to %d", before["example.org."], got)
	}
}

// TestNoNotifyAfterClose: zones given to a closed server start nothing.
func TestNoNotifyAfterClose(t *testing.T) {
	sec := startSecondary(t, dns.RcodeSuccess, nil)
	s, _ := start(t, "dns:\n  zones:\n    quiet.test:\n      records: [{name: a, type: A, value: 192.0.2.2}]\n")
	s.Close()
	if err := s.Update(compile(t, notifyZones(sec.addr))); err != nil {
		t.Fatal(err)
	}
	sec.none(t, "an Update after Close")
}

// TestNotifySource: NOTIFY leaves from the address the server listens on,
// the one secondaries know as their primary's.
func TestNotifySource(t *testing.T) {
	sec := startSecondary(t, dns.RcodeSuccess, nil)
	s := New([]string{"127.0.0.5:0"})
	s.Logger = slog.New(slog.DiscardHandler)
	if err := s.Update(compile(t, notifyZones(sec.addr))); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	sec.next(t)
	sec.mu.Lock()
	defer sec.mu.Unlock()
	if sec.from[0] != "127.0.0.5" {
		t.Errorf("NOTIFY came from %s, want 127.0.0.5", sec.from[0])
	}
}

// TestNotifySourceReach: a loopback listener is never the source of a
// NOTIFY to another host, which it could not reach.
func TestNotifySourceReach(t *testing.T) {
	s, _ := start(t, "dns:\n  zones:\n    quiet.test:\n      records: [{name: a, type: A, value: 192.0.2.2}]\n")
	s.mu.Lock()
	defer s.mu.Unlock()
	if got := s.sourceFor(netip.MustParseAddrPort("192.0.2.53:53")); got.IsValid() {
		t.Errorf("to a remote secondary from %s", got)
	}
	if got := s.sourceFor(netip.MustParseAddrPort("127.0.0.9:53")); got != netip.MustParseAddr("127.0.0.1") {
		t.Errorf("to a loopback secondary from %v", got)
	}
	if got := s.sourceFor(netip.MustParseAddrPort("[::1]:53")); got.IsValid() {
		t.Errorf("to an IPv6 secondary from %s", got)
	}
}
