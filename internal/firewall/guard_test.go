package firewall

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"gatehouse/internal/journey"
	"gatehouse/internal/testserve"
)

// serve accepts on g.Listener(ln) and greets every allowed connection with
// "ok", holding it open until the client closes it.
func serve(t *testing.T, g *Guard, yaml string) (*Guard, string) {
	t.Helper()
	if g == nil {
		g = NewGuard(nil)
	}
	g.Update(compile(t, yaml))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testserve.Serve(t, g.Listener(ln), func(c net.Conn, _ int) {
		c.Write([]byte("ok"))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.Copy(io.Discard, c)
	})
	return g, ln.Addr().String()
}

// dialFrom connects from a loopback source address.
func dialFrom(t *testing.T, src, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if errors.Is(err, syscall.ECONNRESET) {
		// Reset before the dial returned: a closed pipe reads as EOF.
		a, b := net.Pipe()
		b.Close()
		return a
	}
	if err != nil {
		t.Fatalf("dial from %s: %v", src, err)
	}
	return c
}

// greeted reports whether the server greeted the connection (allowed) or
// closed it (denied).
func greeted(t *testing.T, c net.Conn) bool {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 2)
	_, err := io.ReadFull(c, buf)
	if err == nil {
		return true
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return false
	}
	t.Fatalf("reading greeting: %v", err)
	return false
}

func TestListenerSources(t *testing.T) {
	_, addr := serve(t, nil, `firewall:
  default: deny
  rules:
    - {reject: tcp, from: [127.0.0.3]}
    - {allow: tcp, from: [127.0.0.2, 127.0.0.4/31]}
`)
	tests := []struct {
		src  string
		want bool
	}{
		{"127.0.0.2", true}, {"127.0.0.3", false}, {"127.0.0.4", true}, {"127.0.0.5", true}, {"127.0.0.6", false}, {"127.0.0.1", false},
	}
	for _, tc := range tests {
		c := dialFrom(t, tc.src, addr)
		if got := greeted(t, c); got != tc.want {
			t.Errorf("from %s: allowed %v, want %v", tc.src, got, tc.want)
		}
		c.Close()
	}
}

func TestRejectResets(t *testing.T) {
	_, addr := serve(t, nil, "firewall:\n  rules: [{reject: tcp}]\n")
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err == nil { // the reset may come before the dial returns, or after
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = c.Read(make([]byte, 1))
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("rejected connection: %v, want a reset", err)
	}
}

// TestDeniedBeforeTLS shows the handshake never starts for a denied
// source: its ClientHello gets no ServerHello, only a closed connection.
func TestDeniedBeforeTLS(t *testing.T) {
	g := NewGuard(compile(t, "firewall:\n  rules: [{allow: tcp, from: [127.0.0.2]}]\n"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.NewListener(g.Listener(ln), &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}})
	defer tl.Close()
	var handshakes sync.WaitGroup
	go func() {
		for {
			c, err := tl.Accept()
			if err != nil {
				return
			}
			handshakes.Add(1)
			go func() {
				defer handshakes.Done()
				defer c.Close()
				c.(*tls.Conn).Handshake()
				c.Write([]byte("hi"))
			}()
		}
	}()
	dial := func(src string) error {
		c := dialFrom(t, src, ln.Addr().String())
		defer c.Close()
		tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
		tc.SetDeadline(time.Now().Add(2 * time.Second))
		return tc.Handshake()
	}
	if err := dial("127.0.0.2"); err != nil {
		t.Fatalf("allowed source: %v", err)
	}
	err = dial("127.0.0.3")
	if err == nil {
		t.Fatal("denied source completed a TLS handshake")
	}
	// EOF or a reset: the server closed the connection without answering
	// the ClientHello. A ServerHello would have led to an alert or a
	// certificate error instead.
	if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("denied source: handshake error %v, want EOF or reset", err)
	}
	var alert tls.AlertError
	if errors.As(err, &alert) {
		t.Errorf("denied source got a TLS alert: %v", err)
	}
}

func TestConnectionCap(t *testing.T) {
	g, addr := serve(t, nil, "firewall: {limits: {connections: 2}}")
	a, b := dialFrom(t, "127.0.0.7", addr), dialFrom(t, "127.0.0.7", addr)
	defer a.Close()
	if !greeted(t, a) || !greeted(t, b) {
		t.Fatal("connections under the cap were closed")
	}
	c := dialFrom(t, "127.0.0.7", addr)
	if greeted(t, c) {
		t.Error("a third connection got through a cap of 2")
	}
	c.Close()
	if other := dialFrom(t, "127.0.0.8", addr); !greeted(t, other) {
		t.Error("another source was capped")
	} else {
		other.Close()
	}
	b.Close() // the server sees EOF and closes its side: the count drops
	if !eventually(func() bool {
		c := dialFrom(t, "127.0.0.7", addr)
		defer c.Close()
		return greeted(t, c)
	}) {
		t.Error("the cap did not free up after a connection closed")
	}
	if st := g.Status(); st.LimitHits["connections"] == 0 || st.Denials[0].Verdict != "denied by the connections limit" {
		t.Errorf("status: %+v", st)
	}
}

func TestConnectionRate(t *testing.T) {
	_, addr := serve(t, nil, "firewall: {limits: {connections_per_second: 4, connection_burst: 2}}")
	var got []bool
	for range 3 {
		c := dialFrom(t, "127.0.0.9", addr)
		got = append(got, greeted(t, c))
		c.Close()
	}
	if !got[0] || !got[1] || got[2] {
		t.Errorf("burst of 2 then limit: got %v", got)
	}
	time.Sleep(300 * time.Millisecond) // one token back at 4/s
	c := dialFrom(t, "127.0.0.9", addr)
	defer c.Close()
	if !greeted(t, c) {
		t.Error("the rate did not refill")
	}
}

func TestBanTripsAndExpires(t *testing.T) {
	g := NewGuard(nil)
	bans := make(chan Ban, 4)
	g.OnBan = func(b Ban) { bans <- b }
	g, addr := serve(t, g, "firewall:\n  limits: {connections: 1, exempt: [127.0.0.12]}\n  bans: {after: 3, within: 10s, for: 400ms}\n")
	held := dialFrom(t, "127.0.0.10", addr)
	if !greeted(t, held) {
		t.Fatal("first connection closed")
	}
	for range 3 { // over the cap three times: banned
		c := dialFrom(t, "127.0.0.10", addr)
		if greeted(t, c) {
			t.Fatal("connection over the cap got through")
		}
		c.Close()
	}
	select {
	case b := <-bans:
		if b.Source != netip.MustParsePrefix("127.0.0.10/32") || b.Reason != ViolationConnections {
			t.Errorf("ban %+v", b)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no ban after 3 violations")
	}
	held.Close()
	time.Sleep(50 * time.Millisecond)
	c := dialFrom(t, "127.0.0.10", addr)
	if greeted(t, c) {
		t.Error("banned source got through")
	}
	c.Close()
	if st := g.Status(); len(st.Bans) != 1 || st.Bans[0].Source != "127.0.0.10" || st.Bans[0].Reason != "connections" || st.BansTotal != 1 {
		t.Errorf("status bans: %+v", st.Bans)
	}
	// Reported violations count too; exempt sources are never banned.
	for range 5 {
		g.Report(netip.MustParseAddr("127.0.0.11"), ViolationTLSHandshake)
		g.Report(netip.MustParseAddr("127.0.0.12"), ViolationTLSHandshake)
	}
	for src, want := range map[string]bool{"127.0.0.11": false, "127.0.0.12": true} {
		c := dialFrom(t, src, addr)
		if got := greeted(t, c); got != want {
			t.Errorf("after reports, %s allowed %v, want %v", src, got, want)
		}
		c.Close()
	}
	if !eventually(func() bool {
		c := dialFrom(t, "127.0.0.10", addr)
		defer c.Close()
		return greeted(t, c)
	}) {
		t.Error("ban did not expire")
	}
}

func TestMiddlewareRequestRate(t *testing.T) {
	g := NewGuard(compile(t, "firewall: {limits: {requests_per_second: 2, request_burst: 2}}"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))}
	go srv.Serve(g.Listener(ln))
	defer srv.Close()
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.13")}}).DialContext}}
	var codes []int
	for range 3 {
		resp, err := client.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == 429 && resp.Header.Get("Retry-After") != "1" {
			t.Error("429 without Retry-After")
		}
	}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Errorf("statuses %v, want 200 200 429", codes)
	}
}

// TestDNSDrops runs a real DNS server whose UDP handler asks AllowPacket,
// as the DNS server's Allow hook does, and real clients from two sources.
// Behind a trusted proxy every request comes from the proxy's address; the
// limit must fall on the client the journey record names instead.
func TestMiddlewareLimitsJourneyClient(t *testing.T) {
	g := NewGuard(compile(t, "firewall: {limits: {requests_per_second: 0.5, request_burst: 1}}"))
	limited := g.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	// Stands in for the step that trusts the proxy and names the client.
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &journey.Record{}
		if c, err := netip.ParseAddr(r.Header.Get("X-Client")); err == nil {
			rec.Client = c
		}
		limited.ServeHTTP(w, r.WithContext(journey.With(r.Context(), rec)))
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(g.Listener(ln))
	defer srv.Close()
	client := &http.Client{Timeout: 2 * time.Second}
	get := func(clientIP string) (int, string) {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/", nil)
		req.Header.Set("X-Client", clientIP)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	for _, tc := range []struct {
		client     string
		want       int
		retryAfter string
	}{
		{"198.51.100.1", 200, ""},
		{"198.51.100.1", 429, "2"}, // one request every 2 s
		{"198.51.100.2", 200, ""},  // same peer, another client
		{"2001:db8::1", 200, ""},
		{"2001:db8::2", 429, "2"}, // same /64 as 2001:db8::1
	} {
		code, ra := get(tc.client)
		if code != tc.want || ra != tc.retryAfter {
			t.Errorf("client %s: got %d (Retry-After %q), want %d (%q)", tc.client, code, ra, tc.want, tc.retryAfter)
		}
	}
}

func TestDNSDrops(t *testing.T) {
	g := NewGuard(compile(t, "firewall:\n  rules: [{allow: udp, ports: [1-65535], from: [127.0.0.2]}]\n"))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		src := w.RemoteAddr().(*net.UDPAddr).AddrPort()
		if !g.AllowPacket("udp", port, src) {
			return // dropped: no answer at all
		}
		m := new(dns.Msg)
		m.SetRcode(r, dns.RcodeNameError)
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	defer srv.Shutdown()
	<-started
	ask := func(src string) error {
		c := &dns.Client{Net: "udp", Timeout: 300 * time.Millisecond, Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}, Timeout: 300 * time.Millisecond}}
		_, _, err := c.Exchange(new(dns.Msg).SetQuestion("example.org.", dns.TypeA), pc.LocalAddr().String())
		return err
	}
	if err := ask("127.0.0.2"); err != nil {
		t.Errorf("allowed source: %v", err)
	}
	if err := ask("127.0.0.3"); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("denied source: %v, want a timeout", err)
	}
	st := g.Status()
	if st.Denied != 1 || st.Rules[1].Denied != 1 || st.Rules[0].Allowed != 1 {
		t.Errorf("counters: denied %d, rules %+v", st.Denied, st.Rules)
	}
}

func TestUpdateKeepsState(t *testing.T) {
	g, addr := serve(t, nil, "firewall: {limits: {connections: 1}}")
	held := dialFrom(t, "127.0.0.14", addr)
	defer held.Close()
	if !greeted(t, held) {
		t.Fatal("first connection closed")
	}
	g.Update(compile(t, "firewall: {limits: {connections: 1}, rules: [{allow: tcp}]}"))
	c := dialFrom(t, "127.0.0.14", addr)
	defer c.Close()
	if greeted(t, c) {
		t.Error("a reload forgot the open connection")
	}
	g.Update(compile(t, "firewall: {rules: [{deny: tcp, from: [127.0.0.14]}]}"))
	d := dialFrom(t, "127.0.0.14", addr)
	defer d.Close()
	if greeted(t, d) {
		t.Error("the new policy was not applied")
	}
}

// eventually polls f for up to 3 seconds.
func eventually(f func() bool) bool {
	for range 60 {
		if f() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func selfSigned(t *testing.T) tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example.org"},
		DNSNames: []string{"example.org"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
