package firewall

import (
	"net/netip"
	"time"
)

// Denial is one denied connection or packet in the sampled log.
type Denial struct {
	Time    time.Time `json:"time"`
	Source  string    `json:"source"`
	To      string    `json:"to"` // tcp/443
	Verdict string    `json:"verdict"`
}

// Status is the firewall's admin view.
type Status struct {
	Default string       `json:"default"`
	Rules   []RuleStatus `json:"rules"`
	Bans    []BanStatus  `json:"bans"`
	// LimitHits counts violations by kind since start.
	LimitHits map[string]uint64 `json:"limit_hits"`
	BansTotal uint64            `json:"bans_total"`
	// Denied counts every denial since start; Denials are the latest of
	// the ones sampled (a few a second at most).
	Denied  uint64   `json:"denied"`
	Sampled uint64   `json:"sampled"`
	Denials []Denial `json:"denials"`
}

// RuleStatus is one rule of the policy in force with its counters, which
// start from zero at each reload.
type RuleStatus struct {
	Rule    string `json:"rule"`
	Match   string `json:"match"`
	Pos     string `json:"pos,omitempty"`
	Allowed uint64 `json:"allowed"`
	Denied  uint64 `json:"denied"`
}

// BanStatus is one ban in force.
type BanStatus struct {
	Source string    `json:"source"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"` // the violation that tipped the count
}

// Status returns the counters, bans and sampled denials.
func (g *Guard) Status() Status {
	st := Status{
		LimitHits: map[string]uint64{},
		BansTotal: g.bansTotal.Load(),
		Denied:    g.denied.Load(),
		Sampled:   g.sampled.Load(),
		Rules:     []RuleStatus{},
		Bans:      []BanStatus{},
		Denials:   []Denial{},
	}
	for v := range numViolations {
		st.LimitHits[v.String()] = g.limitHits[v].Load()
	}
	if p := g.policy.Load(); p != nil {
		st.Default = p.def.Action.String()
		for i, r := range append(p.rules[:len(p.rules):len(p.rules)], p.def) {
			st.Rules = append(st.Rules, RuleStatus{
				Rule: r.Name(), Match: r.describe(), Pos: r.Pos,
				Allowed: p.counts[i].allowed.Load(), Denied: p.counts[i].denied.Load(),
			})
		}
	}
	for _, b := range g.Bans() {
		st.Bans = append(st.Bans, BanStatus{Source: PrefixString(b.Source), Until: b.Until, Reason: b.Reason.String()})
	}
	g.sampleMu.Lock()
	n := min(g.sampleN, sampleKeep)
	for i := range n { // newest first
		st.Denials = append(st.Denials, g.samples[(g.sampleN-1-i)%sampleKeep])
	}
	g.sampleMu.Unlock()
	return st
}

// sample counts a denial and keeps it in the log when the sampler lets it:
// a flood must not turn the log into a flood of its own.
func (g *Guard) sample(proto Proto, port uint16, src netip.Addr, v Verdict) {
	g.denied.Add(1)
	switch v.Rule.Kind {
	case KindBan:
		g.banDenied.Add(1)
	case KindLimit:
		for i := range g.limitRule {
			if v.Rule == &g.limitRule[i] {
				g.limitDenied[i].Add(1)
			}
		}
	}
	if !g.sampler.Allow() {
		return
	}
	g.sampled.Add(1)
	d := Denial{Time: time.Now(), Source: src.Unmap().String(), To: proto.String() + "/" + itoa(port), Verdict: v.String()}
	g.sampleMu.Lock()
	g.samples[g.sampleN%sampleKeep] = d
	g.sampleN++
	g.sampleMu.Unlock()
	if g.Logger != nil {
		g.Logger.Info("firewall: denied", "source", d.Source, "to", d.To, "verdict", d.Verdict)
	}
}

func itoa(n uint16) string {
	var b [5]byte
	i := len(b)
	for {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
		if n == 0 {
			return string(b[i:])
		}
	}
}
