package firewall

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestCollector(t *testing.T) {
	g, addr := serve(t, nil, `firewall:
  default: deny
  rules:
    - {allow: tcp, from: [127.0.0.2], description: web}
  bans: {after: 1, for: 1m}
`)
	for _, src := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.3"} {
		c := dialFrom(t, src, addr)
		greeted(t, c)
		c.Close()
	}
	g.Report(netip.MustParseAddr("127.0.0.2"), ViolationTLSHandshake)
	c := dialFrom(t, "127.0.0.2", addr)
	greeted(t, c)
	c.Close()

	reg := prometheus.NewRegistry()
	reg.MustRegister(g.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += " " + l.GetName() + "=" + l.GetValue()
			}
			switch {
			case m.GetCounter() != nil:
				got[name] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	for name, want := range map[string]float64{
		"gatehouse_firewall_verdicts_total action=allow rule=1":      1,
		"gatehouse_firewall_verdicts_total action=deny rule=default": 2,
		"gatehouse_firewall_verdicts_total action=deny rule=ban":     1,
		"gatehouse_firewall_violations_total kind=tls_handshake":     1,
		"gatehouse_firewall_bans_total":                              1,
		"gatehouse_firewall_bans_active":                             1,
	} {
		if got[name] != want {
			t.Errorf("%s: got %v, want %v", name, got[name], want)
		}
	}
	if t.Failed() {
		t.Logf("gathered: %v", got)
	}
}
