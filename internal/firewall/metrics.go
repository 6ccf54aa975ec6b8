package firewall

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	verdictsDesc = prometheus.NewDesc("gatehouse_firewall_verdicts_total",
		"Connections and packets decided by the firewall, by deciding rule and action. Rule counters start again from zero when a reload changes the policy.",
		[]string{"rule", "action"}, nil)
	violationsDesc = prometheus.NewDesc("gatehouse_firewall_violations_total",
		"Violations counted towards bans, by kind.", []string{"kind"}, nil)
	bansDesc = prometheus.NewDesc("gatehouse_firewall_bans_total",
		"Sources banned since start.", nil, nil)
	bansActiveDesc = prometheus.NewDesc("gatehouse_firewall_bans_active",
		"Sources banned now.", nil, nil)
)

// Collector returns the Guard's counters for Prometheus; register it once,
// as the Guard outlives reloads. The rule label is the rule's number in
// firewall.rules, or default, deny_list, ban, or limit_ and the limit.
func (g *Guard) Collector() prometheus.Collector { return collector{g} }

type collector struct{ g *Guard }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- verdictsDesc
	ch <- violationsDesc
	ch <- bansDesc
	ch <- bansActiveDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	g := c.g
	if p := g.policy.Load(); p != nil {
		for i, r := range append(p.rules[:len(p.rules):len(p.rules)], p.def) {
			label := metricLabel(r)
			if n := p.counts[i].allowed.Load(); n > 0 || r.Action == Allow {
				ch <- prometheus.MustNewConstMetric(verdictsDesc, prometheus.CounterValue, float64(n), label, "allow")
			}
			if n := p.counts[i].denied.Load(); n > 0 || r.Action != Allow {
				ch <- prometheus.MustNewConstMetric(verdictsDesc, prometheus.CounterValue, float64(n), label, r.Action.String())
			}
		}
	}
	ch <- prometheus.MustNewConstMetric(verdictsDesc, prometheus.CounterValue, float64(g.banDenied.Load()), "ban", "deny")
	for i := range g.limitRule {
		ch <- prometheus.MustNewConstMetric(verdictsDesc, prometheus.CounterValue, float64(g.limitDenied[i].Load()), metricLabel(&g.limitRule[i]), "deny")
	}
	for v := range numViolations {
		ch <- prometheus.MustNewConstMetric(violationsDesc, prometheus.CounterValue, float64(g.limitHits[v].Load()), v.metricName())
	}
	ch <- prometheus.MustNewConstMetric(bansDesc, prometheus.CounterValue, float64(g.bansTotal.Load()))
	ch <- prometheus.MustNewConstMetric(bansActiveDesc, prometheus.GaugeValue, float64(len(g.Bans())))
}

func metricLabel(r *Rule) string {
	switch r.Kind {
	case KindDefault:
		return "default"
	case KindDenyList:
		return "deny_list"
	case KindBan:
		return "ban"
	case KindLimit:
		return "limit_" + map[string]string{"connections": "connections", "connection rate": "connection_rate", "request rate": "request_rate"}[r.Description]
	}
	return strconv.Itoa(r.Number)
}

func (v Violation) metricName() string {
	return [...]string{"connections", "connection_rate", "request_rate", "tls_handshake", "http_4xx"}[v]
}

var _ prometheus.Collector = collector{}
