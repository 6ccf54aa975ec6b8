package journey

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// The client side of the journey: Trace performs a request for real and
// describes each step it takes (DNS, firewall, TCP, TLS, redirect, proxy,
// app), in plain words, stopping at the first step that fails. Steps the
// client cannot see (firewall, proxy) come from the server's own record when
// the server is gatehouse and the trace token is accepted.

// TraceOptions configure a trace.
type TraceOptions struct {
	// DNS is the resolver to ask (host:port); empty asks the system's
	// (the first nameserver of /etc/resolv.conf).
	DNS string
	// Resolve pins host:port to an address, as curl's --resolve does.
	Resolve map[string]string
	// Roots verify the server's certificate; nil means the system roots.
	Roots *x509.CertPool
	// Insecure goes on when verification fails (and says so).
	Insecure bool
	// Token is sent in the Gatehouse-Trace header; it is sent only to the
	// hosts for which TokenFor returns true.
	Token    string
	TokenFor func(host string) bool
	// Method is the request method (GET).
	Method string
	// Timeout bounds each network step (default 5s).
	Timeout time.Duration
	// MaxRedirects bounds redirects followed (default 5).
	MaxRedirects int
}

// Step is one step of a trace.
type Step struct {
	N    int    `json:"n"`
	Name string `json:"step"`
	OK   bool   `json:"ok"`
	Text string `json:"text"`
	// Took is how long the step took, when it is timed.
	Took time.Duration `json:"-"`
	MS   float64       `json:"ms,omitempty"`
}

// Result is a whole trace.
type Result struct {
	URL   string        `json:"url"`
	Steps []Step        `json:"steps"`
	OK    bool          `json:"ok"`
	Total time.Duration `json:"-"`
	// TotalMS is Total in milliseconds, for --json.
	TotalMS float64 `json:"total_ms"`
	// Server is the server's journey record of the last request, if shown.
	Server *View `json:"server,omitempty"`
}

type tracer struct {
	o     TraceOptions
	res   *Result
	start time.Time
}

// Trace runs a trace of rawURL.
func Trace(ctx context.Context, rawURL string, o TraceOptions) *Result {
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = 5
	}
	if o.Method == "" {
		o.Method = http.MethodGet
	}
	t := &tracer{o: o, res: &Result{URL: rawURL}, start: time.Now()}
	t.res.OK = t.run(ctx, rawURL)
	t.res.Total = time.Since(t.start)
	t.res.TotalMS = ms(t.res.Total)
	return t.res
}

func (t *tracer) add(name string, ok bool, took time.Duration, format string, args ...any) int {
	s := Step{N: len(t.res.Steps) + 1, Name: name, OK: ok, Text: fmt.Sprintf(format, args...), Took: took, MS: ms(took)}
	t.res.Steps = append(t.res.Steps, s)
	return len(t.res.Steps) - 1
}

func (t *tracer) run(ctx context.Context, rawURL string) bool {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.add("URL", false, 0, "%q is not an http:// or https:// URL", rawURL)
		return false
	}
	var lastAddr netip.Addr
	lastHost := ""
	for hop := 0; ; hop++ {
		host, port := u.Hostname(), u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		var addrs []netip.Addr
		if host == lastHost && lastAddr.IsValid() {
			addrs = []netip.Addr{lastAddr}
		} else {
			var ok bool
			if addrs, ok = t.resolve(ctx, host, port); !ok {
				return false
			}
		}
		lastHost = host
		fw := t.add("Firewall", true, 0, "tcp/%s: allowed (the client sees only that the connection was accepted)", port)
		conn, addr, ok := t.connect(ctx, addrs, port)
		if !ok {
			t.res.Steps[fw].OK = false
			t.res.Steps[fw].Text = fmt.Sprintf("tcp/%s: not reached: see the next step", port)
			return false
		}
		lastAddr = addr
		var state *tls.ConnectionState
		if u.Scheme == "https" {
			tc, ok := t.handshake(ctx, conn, host)
			if !ok {
				if strings.HasPrefix(t.res.Steps[len(t.res.Steps)-1].Text, closedBeforeTLS) {
					t.res.Steps[fw].OK = false
					t.res.Steps[fw].Text = fmt.Sprintf("tcp/%s: accepted, then closed at once: most likely denied by the server's firewall", port)
				}
				return false
			}
			cs := tc.ConnectionState()
			state, conn = &cs, tc
		}
		ans, ok := t.request(ctx, conn, u, state)
		if !ok {
			return false
		}
		resp, view := ans.resp, ans.view
		t.res.Server = view
		if view != nil {
			if view.Firewall != "" {
				t.res.Steps[fw].Text = fmt.Sprintf("tcp/%s from %s → %s", port, view.Client, view.Firewall)
			} else {
				t.res.Steps[fw].Text = fmt.Sprintf("tcp/%s from %s → no firewall rule applies to this listener", port, view.Client)
			}
		}
		if loc := resp.Header.Get("Location"); resp.StatusCode >= 300 && resp.StatusCode < 400 && loc != "" {
			next, err := u.Parse(loc)
			if err != nil {
				t.add("Redirect", false, 0, "%d to %q, which is not a valid URL", resp.StatusCode, loc)
				return false
			}
			who := "the server"
			if view != nil && view.Handler == "https-redirect" {
				who = "gatehouse redirects HTTP to HTTPS"
			} else if view != nil && view.Handler == "redirect" {
				who = fmt.Sprintf("route %q of site %s", view.Route, view.Site)
			}
			if hop >= t.o.MaxRedirects {
				t.add("Redirect", false, 0, "%d → %s: more than %d redirects, stopping", resp.StatusCode, next, t.o.MaxRedirects)
				return false
			}
			t.add("Redirect", true, 0, "%d %s → %s (%s)", resp.StatusCode, http.StatusText(resp.StatusCode), next, who)
			u = next
			continue
		}
		return t.describeAnswer(ans)
	}
}

// resolve is the DNS step.
func (t *tracer) resolve(ctx context.Context, host, port string) ([]netip.Addr, bool) {
	if a, ok := t.o.Resolve[host+":"+port]; ok {
		addr, err := netip.ParseAddr(a)
		if err != nil {
			t.add("DNS", false, 0, "--resolve gives %q for %s, which is not an address", a, host)
			return nil, false
		}
		t.add("DNS", true, 0, "%s → %s  (pinned by --resolve, no DNS asked)", host, addr)
		return []netip.Addr{addr}, true
	}
	if a, err := netip.ParseAddr(host); err == nil {
		t.add("DNS", true, 0, "%s is an address: no DNS needed", host)
		return []netip.Addr{a}, true
	}
	if host == "localhost" || strings.HasSuffix(host, ".localhost") {
		t.add("DNS", true, 0, "%s is this machine (RFC 6761: no DNS asked) → 127.0.0.1", host)
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, true
	}
	server := t.o.DNS
	via := server
	if server == "" {
		if cc, err := dns.ClientConfigFromFile("/etc/resolv.conf"); err == nil && len(cc.Servers) > 0 {
			server = net.JoinHostPort(cc.Servers[0], cc.Port)
			via = server + ", the system resolver"
		}
	}
	start := time.Now()
	if server == "" {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			t.add("DNS", false, time.Since(start), "%s does not resolve: %v", host, err)
			return nil, false
		}
		t.add("DNS", true, time.Since(start), "%s → %s  (system resolver)", host, joinAddrs(ips))
		return ips, true
	}
	chain, addrs, ttl, err := lookup(ctx, server, host, t.o.Timeout)
	took := time.Since(start)
	if err != nil {
		t.add("DNS", false, took, "%s: %v (asked %s)", host, err, via)
		return nil, false
	}
	t.add("DNS", true, took, "%s → %s  (TTL %d, via %s)", strings.Join(chain, " → CNAME "), joinAddrs(addrs), ttl, via)
	return addrs, true
}

// lookup asks server for A and AAAA records of host, returning the CNAME
// chain walked (host first), the addresses, and the lowest TTL seen.
func lookup(ctx context.Context, server, host string, timeout time.Duration) ([]string, []netip.Addr, uint32, error) {
	c := &dns.Client{Timeout: timeout}
	chain := []string{host}
	var addrs []netip.Addr
	var ttl uint32 = 1<<32 - 1
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(host), qtype)
		m.RecursionDesired = true
		m.SetEdns0(1232, false)
		r, _, err := c.ExchangeContext(ctx, m, server)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil, nil, 0, fmt.Errorf("no answer from the DNS server within %s", timeout)
			}
			return nil, nil, 0, fmt.Errorf("the DNS server could not be asked: %v", err)
		}
		switch r.Rcode {
		case dns.RcodeSuccess:
		case dns.RcodeNameError:
			return nil, nil, 0, fmt.Errorf("the name does not exist (NXDOMAIN): check the spelling, or add a record for it")
		case dns.RcodeRefused:
			return nil, nil, 0, fmt.Errorf("the DNS server refused to answer (REFUSED): it serves no zone holding this name")
		default:
			return nil, nil, 0, fmt.Errorf("the DNS server answered %s", dns.RcodeToString[r.Rcode])
		}
		for _, rr := range r.Answer {
			ttl = min(ttl, rr.Header().Ttl)
			switch v := rr.(type) {
			case *dns.CNAME:
				if qtype == dns.TypeA {
					chain = append(chain, strings.TrimSuffix(v.Target, "."))
				}
			case *dns.A:
				a, _ := netip.AddrFromSlice(v.A.To4())
				addrs = append(addrs, a)
			case *dns.AAAA:
				a, _ := netip.AddrFromSlice(v.AAAA)
				addrs = append(addrs, a)
			}
		}
	}
	if len(addrs) == 0 {
		return nil, nil, 0, fmt.Errorf("the name exists but has no A or AAAA record")
	}
	return chain, addrs, ttl, nil
}

func joinAddrs(as []netip.Addr) string {
	parts := make([]string, len(as))
	for i, a := range as {
		if a.Is4() {
			parts[i] = "A " + a.String()
		} else {
			parts[i] = "AAAA " + a.String()
		}
	}
	return strings.Join(parts, ", ")
}

// connect is the TCP step: the addresses are tried in order.
func (t *tracer) connect(ctx context.Context, addrs []netip.Addr, port string) (net.Conn, netip.Addr, bool) {
	var lastErr error
	var last netip.Addr
	for _, a := range addrs {
		start := time.Now()
		d := net.Dialer{Timeout: t.o.Timeout}
		c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(a.String(), port))
		if err == nil {
			t.add("TCP", true, time.Since(start), "connected %s", net.JoinHostPort(a.String(), port))
			return c, a, true
		}
		lastErr, last = err, a
	}
	target := net.JoinHostPort(last.String(), port)
	switch {
	case errors.Is(lastErr, syscall.ECONNREFUSED):
		t.add("TCP", false, 0, "port %s is closed on %s: nothing accepted the connection — a firewall rule that rejects it, or a server that is not listening", port, last)
	case isTimeout(lastErr):
		t.add("TCP", false, 0, "no answer from %s within %s: a firewall dropping the packets, or the host is down", target, t.o.Timeout)
	case errors.Is(lastErr, syscall.ENETUNREACH), errors.Is(lastErr, syscall.EHOSTUNREACH):
		t.add("TCP", false, 0, "%s cannot be reached from here: no route to it", target)
	default:
		t.add("TCP", false, 0, "connecting to %s failed: %v", target, lastErr)
	}
	return nil, netip.Addr{}, false
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

const closedBeforeTLS = "the server closed the connection before TLS began"

// handshake is the TLS step. Verification is done here, not inside the
// handshake, so a failure can be named in plain words.
func (t *tracer) handshake(ctx context.Context, conn net.Conn, host string) (*tls.Conn, bool) {
	start := time.Now()
	tc := tls.Client(conn, &tls.Config{
		ServerName:         host,
		NextProtos:         []string{"h2", "http/1.1"},
		InsecureSkipVerify: true, // verified below, to explain failures
	})
	hctx, cancel := context.WithTimeout(ctx, t.o.Timeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			t.add("TLS", false, time.Since(start), closedBeforeTLS+": a firewall rule on the server (gatehouse closes denied connections before TLS), or a port that does not speak TLS")
		} else {
			t.add("TLS", false, time.Since(start), "handshake failed: %v", err)
		}
		return nil, false
	}
	took := time.Since(start)
	cs := tc.ConnectionState()
	leaf := cs.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, verr := leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: t.o.Roots, Intermediates: inter})
	days := int(time.Until(leaf.NotAfter).Hours() / 24)
	summary := fmt.Sprintf("%s, %s, %s; %s by %s, valid %d more days", versionName(cs.Version), curveName(cs), alpnName(cs.NegotiatedProtocol), subject(leaf), issuerName(leaf), days)
	if verr != nil {
		why := plainVerifyError(verr, leaf, host)
		if !t.o.Insecure {
			tc.Close()
			t.add("TLS", false, took, "%s — %s", summary, why)
			return nil, false
		}
		t.add("TLS", true, took, "%s — NOT VERIFIED (%s), going on because of --insecure", summary, why)
		return tc, true
	}
	t.add("TLS", true, took, "%s, verified", summary)
	return tc, true
}

func plainVerifyError(err error, leaf *x509.Certificate, host string) string {
	var hn x509.HostnameError
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	switch {
	case errors.As(err, &hn):
		names := append([]string{}, leaf.DNSNames...)
		for _, ip := range leaf.IPAddresses {
			names = append(names, ip.String())
		}
		return fmt.Sprintf("certificate is for %s, not %s", strings.Join(names, ", "), host)
	case errors.As(err, &ua):
		return fmt.Sprintf("certificate is signed by %q, which this machine does not trust (pass --ca FILE, or trust gatehouse's local CA: `gatehouse ca`)", issuerName(leaf))
	case errors.As(err, &ci) && ci.Reason == x509.Expired:
		return fmt.Sprintf("certificate expired on %s (or is not valid yet)", leaf.NotAfter.Format("2006-01-02"))
	}
	return "certificate not verified: " + err.Error()
}

func subject(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	return c.Issuer.String()
}

func versionName(v uint16) string {
	switch v {
	case tls.VersionTLS13:
		return "TLS 1.3"
	case tls.VersionTLS12:
		return "TLS 1.2"
	}
	return fmt.Sprintf("TLS %#x", v)
}

func curveName(cs tls.ConnectionState) string {
	if cs.CurveID != 0 {
		return cs.CurveID.String()
	}
	return tls.CipherSuiteName(cs.CipherSuite)
}

func alpnName(p string) string {
	if p == "" {
		return "http/1.1"
	}
	return p
}

// request sends the request over conn and reads the whole answer.
// answer is what came back for a request.
type answer struct {
	resp      *http.Response
	view      *View
	firstByte time.Duration
}

func (t *tracer) request(ctx context.Context, conn net.Conn, u *url.URL, state *tls.ConnectionState) (answer, bool) {
	used := false
	give := func(context.Context, string, string) (net.Conn, error) {
		if used {
			return nil, errors.New("one connection per step")
		}
		used = true
		return conn, nil
	}
	tr := &http.Transport{DialContext: give, DisableKeepAlives: true, DisableCompression: true}
	if state != nil {
		tr.DialTLSContext = give
		tr.ForceAttemptHTTP2 = state.NegotiatedProtocol == "h2"
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, t.o.Method, u.String(), nil)
	if err != nil {
		t.add("HTTP", false, 0, "%v", err)
		return answer{}, false
	}
	req.Header.Set("User-Agent", "gatehouse-trace")
	if t.o.Token != "" && (t.o.TokenFor == nil || t.o.TokenFor(u.Hostname())) {
		req.Header.Set("Gatehouse-Trace", t.o.Token)
	}
	var firstByte time.Time
	start := time.Now()
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotFirstResponseByte: func() { firstByte = time.Now() },
	}))
	rctx, cancel := context.WithTimeout(req.Context(), 4*t.o.Timeout)
	defer cancel()
	resp, err := tr.RoundTrip(req.WithContext(rctx))
	if err != nil {
		t.add("HTTP", false, time.Since(start), "the request got no answer: %v", err)
		return answer{}, false
	}
	n, _ := io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
	resp.Body.Close()
	resp.ContentLength = n
	a := answer{resp: resp, view: decodeView(resp.Header.Get("Gatehouse-Journey"))}
	if !firstByte.IsZero() {
		a.firstByte = firstByte.Sub(start)
	}
	return a, true
}

func decodeView(h string) *View {
	if h == "" {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return nil
	}
	var v View
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return &v
}

// describeAnswer adds the Proxy and App steps for the final answer.
func (t *tracer) describeAnswer(a answer) bool {
	resp, v := a.resp, a.view
	firstByte := fmt.Sprintf("first byte %.1f ms", ms(a.firstByte))
	ct := resp.Header.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	answer := strings.TrimSpace(fmt.Sprintf("%d %s %s %s", resp.StatusCode, http.StatusText(resp.StatusCode), ct, size(resp.ContentLength)))
	if v == nil {
		server := resp.Header.Get("Server")
		if server == "" {
			server = "the server"
		}
		t.add("Proxy", true, 0, "not visible: %s did not share its journey (not gatehouse, or no trace token)", server)
		ok := resp.StatusCode < 500
		t.add("App", ok, 0, "%s  (%s)", answer, firstByte)
		return ok
	}
	switch v.Handler {
	case "unknown-host":
		t.add("Proxy", false, 0, "no site serves %s on this gatehouse: it answered %d (add the host to a site's hosts)", hostOnly(v.Host), resp.StatusCode)
		return false
	case "":
		t.add("Proxy", false, 0, "site %s has no route for %s: it answered %d", v.Site, v.Path, resp.StatusCode)
		return false
	case "proxy":
		t.add("Proxy", true, 0, "site %s, route %q → %s, sending %s", v.Site, v.Route, v.Upstream, v.ProxyHeaders)
	default:
		t.add("Proxy", true, 0, "site %s, route %q answered by gatehouse (%s)", v.Site, v.Route, v.Handler)
	}
	timing := firstByte
	if v.Upstream != "" {
		timing = fmt.Sprintf("upstream %.1f ms, %s", v.UpstreamMS, firstByte)
	}
	if v.UpstreamErr != "" {
		t.add("App", false, 0, "%s: %s is not answering — %s", answer, v.Upstream, v.UpstreamErr)
		return false
	}
	ok := resp.StatusCode < 500
	t.add("App", ok, 0, "%s  (%s)", answer, timing)
	return ok
}

func hostOnly(h string) string {
	if host, _, err := net.SplitHostPort(h); err == nil {
		return host
	}
	return h
}

func size(n int64) string {
	switch {
	case n < 1000:
		return fmt.Sprintf("%d B", n)
	case n < 1000_000:
		return fmt.Sprintf("%.1f kB", float64(n)/1000)
	}
	return fmt.Sprintf("%.1f MB", float64(n)/1e6)
}

// WriteText prints the trace the way people read it.
func (r *Result) WriteText(w io.Writer) {
	for _, s := range r.Steps {
		mark := " "
		if !s.OK {
			mark = "✗"
		}
		line := fmt.Sprintf("%s%2d %-9s %s", mark, s.N, s.Name, s.Text)
		if s.Took > 0 {
			line += fmt.Sprintf("  (%.1f ms)", ms(s.Took))
		}
		fmt.Fprintln(w, line)
	}
	if r.OK {
		fmt.Fprintf(w, "   total %.1f ms\n", ms(r.Total))
	} else {
		fmt.Fprintf(w, "   the journey stops here (after %.1f ms)\n", ms(r.Total))
	}
}

// WriteJSON prints the trace for machines.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
