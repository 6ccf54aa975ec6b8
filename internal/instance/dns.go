package instance

import (
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/config"
	"gatehouse/internal/dnsserver"
	"gatehouse/internal/zone"
)

// siteHosts lists every site host, for records published automatically.
func siteHosts(cfg *config.Config) []string {
	var hosts []string
	for _, s := range cfg.Sites {
		hosts = append(hosts, s.Hosts...)
	}
	return hosts
}

// compileZones builds the generation's zones (nil when there are none).
func compileZones(cfg *config.Config) (*zone.Set, error) {
	if len(cfg.DNS.Zones) == 0 {
		return nil, nil
	}
	return zone.Compile(cfg.DNS, siteHosts(cfg))
}

// applyDNS makes the DNS server match g: a new server when the addresses
// change (started before anything else changes, so a port that cannot be
// bound refuses the whole reload), else new zones on the running one.
// in.mu is held. It returns what to do once the reload is certain.
func (in *Instance) applyDNS(g *generation) (commit func(), err error) {
	want := g.cfg.DNS.Listen
	rate := dnsserver.RateLimitFrom(g.cfg.DNS.RateLimit)
	set := g.zones
	if set == nil {
		set, _ = zone.Compile(config.DNS{}, nil)
	}
	if in.dns != nil && slices.Equal(want, in.dnsListen) {
		if err := in.dns.Update(set); err != nil {
			return nil, err
		}
		in.dns.SetRateLimit(rate)
		return func() {}, nil
	}
	var next *dnsserver.Server
	if len(want) > 0 {
		next = dnsserver.New(want)
		next.Logger = in.log
		next.Serials, next.TXT = in.serials, in.txt
		var port atomic.Uint32
		next.Allow = in.dnsAllowFor(func() uint16 { return uint16(port.Load()) })
		next.SetRateLimit(rate)
		if err := next.Update(set); err != nil {
			return nil, err
		}
		if err := next.Start(); err != nil {
			return nil, err
		}
		if _, p, err := net.SplitHostPort(next.Addrs[0]); err == nil {
			n, _ := strconv.Atoi(p)
			port.Store(uint32(n))
		}
	}
	return func() {
		if in.dns != nil {
			in.dns.Close()
			if next != nil {
				next.Resync()
			}
		}
		in.dns, in.dnsListen = next, slices.Clone(want)
	}, nil
}

// PublishTXT publishes a TXT record in gatehouse's own DNS (ACME DNS-01),
// on whichever DNS server is current: a server that replaces it at a
// reload shares the records (in.txt).
func (in *Instance) PublishTXT(fqdn, value string) (func(), error) {
	in.dnsMu.RLock()
	defer in.dnsMu.RUnlock()
	if in.dns == nil {
		return nil, errors.New("gatehouse serves no DNS: set dns.listen and the zone under dns.zones for DNS-01")
	}
	return in.dns.PublishTXT(fqdn, value)
}

// DNSAddrs returns the bound DNS addresses (UDP; TCP is on the same ports).
func (in *Instance) DNSAddrs() []string {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dns == nil {
		return nil
	}
	return slices.Clone(in.dns.Addrs)
}

// dnsCollector reports DNS answers by rcode when Prometheus scrapes.
type dnsCollector struct {
	in   *Instance
	desc *prometheus.Desc
}

func (c *dnsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *dnsCollector) Collect(ch chan<- prometheus.Metric) {
	c.in.dnsMu.RLock()
	s := c.in.dns
	c.in.dnsMu.RUnlock()
	if s == nil {
		return
	}
	for rcode, n := range s.Status().Responses {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n), rcode)
	}
}

// restoreSerials reads the zones' serials served by the last process.
func (in *Instance) restoreSerials() {
	path := filepath.Join(in.opts.DataDir, "dns", "serials.json")
	in.serials = dnsserver.NewSerials(path)
	in.readKept(path, "DNS serials file", in.serials.Load)
}
