package test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/config"
	"gatehouse/internal/gatetest"
)

// TestReloadNotifiesSecondary: a zone's secondary hears of the zone when
// gatehouse starts and of the new serial at each reload, and the transfer
// it then asks for holds the change.
func TestReloadNotifiesSecondary(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *dns.Msg, 8)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, m *dns.Msg) {
		got <- m
		r := new(dns.Msg)
		w.WriteMsg(r.SetReply(m))
	})}
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	cfg := func(ip string) string {
		return fmt.Sprintf("dns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.org:\n      transfer: [127.0.0.1]\n      notify: [\"127.0.0.1:%s\"]\n      records:\n        - {name: www, type: A, value: %s}\n", port, ip)
	}
	serial := func() uint32 {
		t.Helper()
		select {
		case m := <-got:
			if m.Opcode != dns.OpcodeNotify || len(m.Answer) != 1 {
				t.Fatalf("not a NOTIFY with the SOA: %v", m)
			}
			return m.Answer[0].(*dns.SOA).Serial
		case <-time.After(5 * time.Second):
			t.Fatal("no NOTIFY")
			return 0
		}
	}
	g := gatetest.Start(t, cfg("192.0.2.1"))
	first := serial()
	c, err := config.Parse("reloaded.yaml", []byte(cfg("192.0.2.2")))
	if err != nil {
		t.Fatal(err)
	}
	c.Listen, c.DNS.Listen = g.Config.Listen, g.Config.DNS.Listen // the same sockets
	if err := g.Reload(c); err != nil {
		t.Fatal(err)
	}
	if next := serial(); next <= first {
		t.Errorf("the reload's serial %d is not above %d", next, first)
	}
	// The secondary would now transfer: it is allowed to.
	tr := new(dns.Transfer)
	m := new(dns.Msg)
	m.SetAxfr("example.org.")
	env, err := tr.In(m, g.DNS)
	if err != nil {
		t.Fatal(err)
	}
	var a []string
	for e := range env {
		if e.Error != nil {
			t.Fatal(e.Error)
		}
		for _, rr := range e.RR {
			if r, ok := rr.(*dns.A); ok {
				a = append(a, r.A.String())
			}
		}
	}
	if fmt.Sprint(a) != "[192.0.2.2]" {
		t.Errorf("the transfer after the reload holds %v", a)
	}
}

// TestSerialOutlivesRestart: a serial raised by a DNS-01 record that came
// and went is served as it was after gatehouse restarts on the same data,
// not at the zone's own, lower, one.
func TestSerialOutlivesRestart(t *testing.T) {
	data := t.TempDir()
	cfg := "data: " + data + "\ndns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.org:\n      records:\n        - {name: \"@\", type: SOA, value: \"ns1 hostmaster 7 3600 600 604800 300\"}\n        - {name: \"@\", type: NS, value: ns1}\n        - {name: ns1, type: A, value: 192.0.2.53}\n"
	soa := func(g *gatetest.Gatehouse) uint32 {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("example.org.", dns.TypeSOA)
		r, err := dns.Exchange(m, g.DNS)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("SOA: %v %v", r, err)
		}
		return r.Answer[0].(*dns.SOA).Serial
	}
	g1 := gatetest.Start(t, cfg)
	remove, err := g1.PublishTXT("_acme-challenge.example.org", "token")
	if err != nil {
		t.Fatal(err)
	}
	remove()
	before := soa(g1)
	if before != 9 {
		t.Fatalf("serial %d after a record came and went, want 9", before)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g1.Shutdown(ctx)
	g2 := gatetest.Start(t, cfg)
	if after := soa(g2); after != before {
		t.Errorf("after a restart with the same records the serial went from %d to %d", before, after)
	}
}

// TestTXTOutlivesNewDNSServer: a DNS-01 record published before a reload
// that moves DNS to new addresses is served by the new server, also when
// the move drops its zone and a later reload brings the zone back, and
// taking it off reaches that server.
func TestTXTOutlivesNewDNSServer(t *testing.T) {
	cfg := func(addr, zone string) string {
		return "dns:\n  listen: [\"" + addr + "\"]\n  zones:\n    " + zone + ":\n      records:\n        - {name: www, type: A, value: 192.0.2.1}\n"
	}
	reload := func(g *gatetest.Gatehouse, text string) string {
		t.Helper()
		c, err := config.Parse("reloaded.yaml", []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		c.Listen = g.Config.Listen // the same HTTP sockets; only DNS changes
		if err := g.Reload(c); err != nil {
			t.Fatal(err)
		}
		addrs := g.DNSAddrs()
		if len(addrs) != 1 {
			t.Fatalf("DNS on %v", addrs)
		}
		return addrs[0]
	}
	txt := func(server string) []string {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion("_acme-challenge.example.org.", dns.TypeTXT)
		r, err := dns.Exchange(m, server)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, rr := range r.Answer {
			if x, ok := rr.(*dns.TXT); ok {
				out = append(out, x.Txt...)
			}
		}
		return out
	}
	g := gatetest.Start(t, cfg("127.0.0.1:0", "example.org"))
	remove, err := g.PublishTXT("_acme-challenge.example.org", "token")
	if err != nil {
		t.Fatal(err)
	}
	addr := reload(g, cfg("127.0.0.2:0", "example.org"))
	if addr == g.DNS {
		t.Fatalf("DNS did not move from %s", g.DNS)
	}
	if got := txt(addr); fmt.Sprint(got) != "[token]" {
		t.Errorf("the new DNS server serves %q, want the record published before the reload", got)
	}
	reload(g, cfg("127.0.0.3:0", "other.test")) // moves and drops the zone
	addr = reload(g, cfg("127.0.0.3:0", "example.org"))
	if got := txt(addr); fmt.Sprint(got) != "[token]" {
		t.Errorf("with its zone back the DNS server serves %q, want the record", got)
	}
	remove()
	if got := txt(addr); len(got) != 0 {
		t.Errorf("after its removal the DNS server still serves %q", got)
	}
}

// TestShutdownClosesDNS: after Shutdown the DNS sockets are closed, so a
// gatehouse started again in the same process can take the same address.
func TestShutdownClosesDNS(t *testing.T) {
	text := "dns:\n  listen: [\"127.0.0.1:0\"]\n  zones:\n    example.org:\n      records:\n        - {name: www, type: A, value: 192.0.2.1}\n"
	g1 := gatetest.Start(t, text)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, network := range []string{"udp", "tcp"} {
		var err error
		if network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp", g1.DNS); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp", g1.DNS); err == nil {
				l.Close()
			}
		}
		if err != nil {
			t.Errorf("%s %s is still taken after Shutdown: %v", network, g1.DNS, err)
		}
	}
}
