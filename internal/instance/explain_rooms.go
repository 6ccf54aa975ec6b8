package instance

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/miekg/dns"

	"gatehouse/internal/config"
	"gatehouse/internal/firewall"
	"gatehouse/internal/zone"
)

// explainDNS says which records answer for host in cfg's own zones.
func explainDNS(cfg *config.Config, host string) (string, bool) {
	set, err := compileZones(cfg)
	if err != nil || set == nil {
		return fmt.Sprintf("%s: no zone in this config serves it; public DNS must point it at this server", host), true
	}
	name := dns.Fqdn(strings.ToLower(host))
	var chain, addrs []string
	for _, qtype := range []uint16{dns.TypeA, dns.TypeAAAA} {
		ans := set.Lookup(name, qtype)
		switch ans.Rcode {
		case dns.RcodeRefused:
			return fmt.Sprintf("%s: no zone in this config serves it; public DNS must point it at this server", host), true
		case dns.RcodeNameError:
			return fmt.Sprintf("%s does not exist in zone %s (NXDOMAIN): add a record, or a site host with dns.publish", host, zoneName(ans)), false
		}
		for _, rr := range ans.Answer {
			switch v := rr.(type) {
			case *dns.CNAME:
				if qtype == dns.TypeA {
					chain = append(chain, "CNAME "+strings.TrimSuffix(v.Target, "."))
				}
			case *dns.A:
				addrs = append(addrs, "A "+v.A.String())
			case *dns.AAAA:
				addrs = append(addrs, "AAAA "+v.AAAA.String())
			}
		}
	}
	if len(addrs) == 0 {
		return fmt.Sprintf("%s has no A or AAAA record in this config's zones", host), false
	}
	steps := append([]string{host}, chain...)
	return fmt.Sprintf("%s → %s (from this config's zones)", strings.Join(steps, " → "), strings.Join(addrs, ", ")), true
}

func zoneName(a zone.Answer) string {
	if a.Zone != nil {
		return strings.TrimSuffix(a.Zone.Origin, ".")
	}
	return "?"
}

// explainFirewall says which rule decides a connection from `from` to port.
func explainFirewall(cfg *config.Config, from netip.Addr, port uint16) (string, bool) {
	p, err := firewall.Compile(cfg.Firewall)
	if err != nil {
		return "the firewall section does not compile: " + err.Error(), false
	}
	if len(cfg.Firewall.Rules) == 0 && len(cfg.Firewall.DenyFiles) == 0 {
		return fmt.Sprintf("tcp/%d from %s: allowed (no firewall rules in this config)", port, from), true
	}
	v := p.Check(firewall.TCP, port, from)
	return fmt.Sprintf("tcp/%d from %s: %s", port, from, v), v.Allowed()
}
