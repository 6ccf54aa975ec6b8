package instance

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/certs"
)

// setupCerts gives the certificate manager what lives as long as the
// instance: where ACME state is kept and where it logs.
func (in *Instance) setupCerts() {
	in.certs.DataDir = in.opts.DataDir
	in.certs.Log = in.log
	in.certs.DNS = in // DNS-01 answers come from gatehouse's own DNS
}

// manageCerts starts or updates ACME for the generation just applied,
// pointing the challenges at the listeners now open. A failure is logged
// and serving goes on: sites get local-CA certificates until ACME works.
// in.mu is held.
func (in *Instance) manageCerts() {
	var ports certs.Ports
	if a := in.addrs(kindHTTP); len(a) > 0 {
		ports.HTTP = a[0].String()
	}
	if a := in.addrs(kindHTTPS); len(a) > 0 {
		ports.HTTPS = a[0].String()
	}
	if err := in.certs.Manage(ports); err != nil {
		in.log.Error("ACME certificates are not managed", "error", err.Error())
	}
}

// Certs returns the certificate manager, which outlives reloads. Set its
// DNS publisher before Start for dns-01.
func (in *Instance) Certs() *certs.Manager { return in.certs }

// certCollector reports every certificate's expiry as a metric, read from
// the certificate manager when Prometheus scrapes.
type certCollector struct {
	m    *certs.Manager
	desc *prometheus.Desc
}

func newCertCollector(m *certs.Manager) *certCollector {
	return &certCollector{m: m, desc: prometheus.NewDesc("gatehouse_certificate_expiry_timestamp_seconds",
		"When each certificate stops being valid (Unix time).", []string{"names", "source"}, nil)}
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	infos, err := c.m.Status()
	if err != nil {
		return
	}
	for _, ci := range infos {
		if ci.NotAfter.IsZero() {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(ci.NotAfter.Unix()), strings.Join(ci.Names, ","), ci.Source)
	}
}
