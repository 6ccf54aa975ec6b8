// Package clientip decides who the client of a request is: the TCP peer,
// unless the peer is a trusted proxy, in which case the right-most address
// in X-Forwarded-For that is not itself a trusted proxy (what nginx's
// real_ip module does with real_ip_recursive on). By default nobody is
// trusted, so a client cannot claim another address.
package clientip

import (
	"net/http"
	"net/netip"
	"strings"
)

// Resolver holds the trusted proxies. The zero value trusts nobody.
type Resolver struct {
	trusted []netip.Prefix
}

// New returns a Resolver trusting the given prefixes.
func New(trusted []netip.Prefix) *Resolver { return &Resolver{trusted: trusted} }

// Trusts reports whether a is a trusted proxy.
func (res *Resolver) Trusts(a netip.Addr) bool {
	if res == nil {
		return false
	}
	a = a.Unmap()
	for _, p := range res.trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Peer parses r.RemoteAddr.
func Peer(r *http.Request) netip.AddrPort {
	ap, _ := netip.ParseAddrPort(r.RemoteAddr)
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Client returns the client address of r and whether it came from
// X-Forwarded-For rather than the peer.
func (res *Resolver) Client(r *http.Request, peer netip.Addr) (netip.Addr, bool) {
	if !res.Trusts(peer) {
		return peer, false
	}
	xff := r.Header["X-Forwarded-For"]
	for i := len(xff) - 1; i >= 0; i-- {
		list := xff[i]
		for list != "" {
			j := strings.LastIndexByte(list, ',')
			item := strings.TrimSpace(list[j+1:])
			list = list[:max(j, 0)]
			a, err := netip.ParseAddr(item)
			if err != nil {
				// A malformed entry ends what can be believed; the hop
				// before it is the last one we can vouch for.
				return peer, false
			}
			if !res.Trusts(a) {
				return a.Unmap(), true
			}
			peer = a.Unmap()
		}
	}
	return peer, false
}
