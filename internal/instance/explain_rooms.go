package instance

import (
	"fmt"
	"net/netip"

	"gatehouse/internal/config"
)

// explainDNS says which record answers for host in cfg's own zones.
func explainDNS(cfg *config.Config, host string) string {
	return fmt.Sprintf("%s: no zone in this config serves it; public DNS must point it at this server", host)
}

// explainFirewall says which rule decides a connection from `from` to port.
func explainFirewall(cfg *config.Config, from netip.Addr, port uint16) (string, bool) {
	return fmt.Sprintf("tcp/%d from %s: no firewall rules in this config", port, from), true
}
