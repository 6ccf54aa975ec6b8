package firewall

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"
)

// The bans file keeps bans across restarts, as fail2ban's database does: a
// source banned for an hour is still banned when gatehouse restarts a
// minute later.
//
//	{"bans": [{"source": "203.0.113.7/32", "until": "2026-12-07T10:00:00Z", "reason": "request rate"}]}

type bansFile struct {
	Bans []banEntry `json:"bans"`
}

type banEntry struct {
	Source string    `json:"source"`
	Until  time.Time `json:"until"`
	Reason string    `json:"reason"`
}

// EncodeBans is the bans file's content for bans. It fails only on an end
// outside years 1 to 9999, which RFC 3339 cannot write (DecodeBans refuses
// them, and bans made by the clock end within hours).
func EncodeBans(bans []Ban) ([]byte, error) {
	f := bansFile{Bans: make([]banEntry, 0, len(bans))}
	for _, b := range bans {
		f.Bans = append(f.Bans, banEntry{Source: b.Source.String(), Until: b.Until.UTC(), Reason: b.Reason.String()})
	}
	out, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// DecodeBans reads a bans file. Any entry it cannot read fails the whole
// file, named by its position: the file is gatehouse's own, so such an
// entry means it was edited or damaged, and half of it is not to be trusted.
func DecodeBans(data []byte) ([]Ban, error) {
	var f bansFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("not a bans file: %w", err)
	}
	bans := make([]Ban, 0, len(f.Bans))
	for i, e := range f.Bans {
		p, err := netip.ParsePrefix(e.Source)
		if err != nil {
			return nil, fmt.Errorf("ban %d: %w", i+1, err)
		}
		if p != banPrefix(sourceKey(p.Addr())) {
			return nil, fmt.Errorf("ban %d: source %s is not an IPv4 /32 or an IPv6 /64", i+1, e.Source)
		}
		if y := e.Until.UTC().Year(); y < 1 || y > 9999 {
			return nil, fmt.Errorf("ban %d: end %s is outside years 1 to 9999", i+1, e.Until)
		}
		reason, ok := violationNamed(e.Reason)
		if !ok {
			return nil, fmt.Errorf("ban %d: unknown reason %q", i+1, e.Reason)
		}
		bans = append(bans, Ban{Source: p, Until: e.Until, Reason: reason})
	}
	return bans, nil
}

func violationNamed(name string) (Violation, bool) {
	for v := range numViolations {
		if v.String() == name {
			return v, true
		}
	}
	return 0, false
}
