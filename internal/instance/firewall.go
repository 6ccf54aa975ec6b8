package instance

import (
	"bytes"
	"net/netip"
	"strings"

	"gatehouse/internal/firewall"
	"gatehouse/internal/journey"
)

// reportHandshakeFailure counts a failed TLS handshake, which net/http
// reports only as a log line ("http: TLS handshake error from ADDR: …"),
// towards the source's ban.
func (in *Instance) reportHandshakeFailure(line []byte) {
	rest, ok := bytes.CutPrefix(line, []byte("http: TLS handshake error from "))
	if !ok {
		return
	}
	addr, _, _ := strings.Cut(string(rest), ": ")
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		in.guard.Report(ap.Addr().Unmap(), firewall.ViolationTLSHandshake)
	}
}

// observe is told of every finished request: metrics, and 4xx answers
// towards floods.
func (in *Instance) observe(rec *journey.Record) {
	in.metrics.ObserveRequest(rec)
	if rec.Status >= 400 && rec.Status < 500 && rec.Status != 401 && rec.Status != 407 {
		in.guard.Report(rec.Peer.Addr(), firewall.ViolationHTTPError)
	}
}

// dnsAllowFor is the firewall's say on DNS packets arriving on port.
func (in *Instance) dnsAllowFor(port func() uint16) func(netip.AddrPort, string) bool {
	return func(src netip.AddrPort, network string) bool {
		return in.guard.AllowPacket(network, port(), src)
	}
}
