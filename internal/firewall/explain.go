package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// maxExplained bounds how many skipped rules Explain lists one by one.
const maxExplained = 40

// ParseTarget reads what `gatehouse firewall explain --to` takes: tcp/22,
// udp/53, or a bare port (tcp).
func ParseTarget(s string) (Proto, uint16, error) {
	proto, port, found := strings.Cut(s, "/")
	if !found {
		proto, port = "tcp", s
	}
	p, ok := ParseProto(proto)
	if !ok || p == Any {
		return 0, 0, fmt.Errorf("protocol %q is not tcp or udp: write tcp/22 or udp/53", proto)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return 0, 0, fmt.Errorf("port %q is not from 1 to 65535: write tcp/22 or udp/53", port)
	}
	return p, uint16(n), nil
}

// Explain says, from the config alone, what the policy does with traffic
// from `from` to proto/port (proto tcp or udp): the verdict and the rule
// that decides it, then every rule tried before it and why it did not
// match. Limits and bans are state of the running server and not part of it.
func Explain(p *Policy, from netip.Addr, proto string, port uint16) string {
	pr, ok := ParseProto(proto)
	if !ok || pr == Any {
		return fmt.Sprintf("protocol %q is not tcp or udp\n", proto)
	}
	from = from.Unmap()
	v := p.Check(pr, port, from)
	var b strings.Builder
	fmt.Fprintf(&b, "%s/%d from %s: %s\n", pr, port, from, v)
	skipped := 0
	for _, r := range append(p.rules[:len(p.rules):len(p.rules)], p.def) {
		why := r.mismatch(pr, port, from)
		if why == "" {
			fmt.Fprintf(&b, "  → %s%s: %s — decides\n", r.Name(), r.at(), r.matches(from))
			break
		}
		if skipped++; skipped <= maxExplained {
			fmt.Fprintf(&b, "    %s%s: %s — %s\n", r.Name(), r.at(), r.describe(), why)
		}
	}
	if skipped > maxExplained {
		fmt.Fprintf(&b, "    … %d more rules skipped\n", skipped-maxExplained)
	}
	b.WriteString("  Limits and bans are decided at run time; the admin status lists them.\n")
	return b.String()
}

func (r *Rule) at() string {
	if r.Kind == KindRule && r.Pos != "" {
		return " (" + r.Pos + ")"
	}
	return ""
}

// matches says what matched in a rule that decides.
func (r *Rule) matches(src netip.Addr) string {
	switch r.Kind {
	case KindDefault:
		return "nothing else matches, so " + r.Action.String()
	case KindDenyList:
		for i, pf := range r.From {
			if pf.Contains(src) {
				return fmt.Sprintf("line %d lists %s", r.Lines[i], PrefixString(pf))
			}
		}
	}
	return r.describe()
}

// mismatch says why r does not match, or "" when it does.
func (r *Rule) mismatch(proto Proto, port uint16, src netip.Addr) string {
	if r.Kind == KindDefault {
		return ""
	}
	if r.Proto&proto == 0 {
		return "not for " + proto.String()
	}
	if r.Ports != nil {
		in := false
		for _, pr := range r.Ports {
			in = in || pr.Lo <= port && port <= pr.Hi
		}
		if !in {
			return fmt.Sprintf("port %d is not listed", port)
		}
	}
	if r.From != nil {
		for _, pf := range r.From {
			if pf.Contains(src) {
				return ""
			}
		}
		return fmt.Sprintf("%s is not in its sources", src)
	}
	return ""
}
