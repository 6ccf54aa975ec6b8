package firewall

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRestoreBans: bans kept by one guard shut the same sources out of a
// new one, with their ends and reasons, and those over are left out.
func TestRestoreBans(t *testing.T) {
	old := NewGuard(compile(t, "firewall:\n  bans: {after: 2, within: 10s, for: 1h}\n"))
	old.Report(netip.MustParseAddr("127.0.0.20"), ViolationRequestRate)
	old.Report(netip.MustParseAddr("127.0.0.20"), ViolationRequestRate)
	old.Report(netip.MustParseAddr("2001:db8:1:2::7"), ViolationHTTPError)
	old.Report(netip.MustParseAddr("2001:db8:1:2::8"), ViolationHTTPError) // the same /64
	kept := old.Bans()
	if len(kept) != 2 {
		t.Fatalf("bans before the restart: %+v", kept)
	}
	file, err := EncodeBans(append(kept, Ban{Source: netip.MustParsePrefix("127.0.0.21/32"), Until: time.Now().Add(-time.Second)}))
	if err != nil {
		t.Fatal(err)
	}
	bans, err := DecodeBans(file)
	if err != nil {
		t.Fatalf("%v\n%s", err, file)
	}

	g, addr := serve(t, nil, "firewall:\n  bans: {after: 2, within: 10s, for: 1h}\n")
	if n := g.Restore(bans); n != 2 {
		t.Errorf("restored %d bans, want 2 (the third is over)", n)
	}
	for src, want := range map[string]bool{"127.0.0.20": false, "127.0.0.21": true, "127.0.0.22": true} {
		c := dialFrom(t, src, addr)
		if got := greeted(t, c); got != want {
			t.Errorf("after the restore, %s allowed %v, want %v", src, got, want)
		}
		c.Close()
	}
	if !g.isBannedAddr(netip.MustParseAddr("2001:db8:1:2::99")) || g.isBannedAddr(netip.MustParseAddr("2001:db8:1:3::1")) {
		t.Error("the restored IPv6 ban does not cover its /64 alone")
	}
	// Ends compare by the wall clock: Restore makes them again from now.
	got := g.Bans()
	sortBans(got)
	sortBans(kept)
	for i := range got {
		if got[i].Source != kept[i].Source || got[i].Reason != kept[i].Reason || !got[i].Until.Round(0).Equal(kept[i].Until.Round(0)) {
			t.Errorf("restored ban %d is %+v, want %+v", i, got[i], kept[i])
		}
	}
	if src, ok := g.Unban(netip.MustParseAddr("127.0.0.20")); !ok || src != netip.MustParsePrefix("127.0.0.20/32") {
		t.Errorf("Unban of a restored ban: %v %v", src, ok)
	}
	if src, ok := g.Unban(netip.MustParseAddr("2001:db8:1:2::1234")); !ok || src != netip.MustParsePrefix("2001:db8:1:2::/64") {
		t.Errorf("Unban in a banned /64: %v %v", src, ok)
	}
	if _, ok := g.Unban(netip.MustParseAddr("127.0.0.20")); ok {
		t.Error("a second Unban found a ban")
	}
	c := dialFrom(t, "127.0.0.20", addr)
	if !greeted(t, c) {
		t.Error("unbanned source still shut out")
	}
	c.Close()
}

func sortBans(b []Ban) {
	slices.SortFunc(b, func(x, y Ban) int { return strings.Compare(x.Source.String(), y.Source.String()) })
}

func TestDecodeBansErrors(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{`{"bans": [`, "not a bans file"},
		{`{"bans": [{"source": "bogus", "until": "2030-01-01T00:00:00Z", "reason": "HTTP 4xx"}]}`, "ban 1:"},
		{`{"bans": [{"source": "203.0.113.0/24", "until": "2030-01-01T00:00:00Z", "reason": "HTTP 4xx"}]}`, "not an IPv4 /32 or an IPv6 /64"},
		{`{"bans": [{"source": "2001:db8::1/64", "until": "2030-01-01T00:00:00Z", "reason": "HTTP 4xx"}]}`, "not an IPv4 /32 or an IPv6 /64"},
		{`{"bans": [{"source": "203.0.113.1/32", "until": "2030-01-01T00:00:00Z", "reason": "HTTP 4xx"}, {"source": "203.0.113.2/32", "until": "2030-01-01T00:00:00Z", "reason": "bad luck"}]}`, `ban 2: unknown reason "bad luck"`},
		// In UTC these are years 10000 and 0, which RFC 3339 cannot write back.
		{`{"bans": [{"source": "203.0.113.1/32", "until": "9999-12-31T23:59:59-01:00", "reason": "HTTP 4xx"}]}`, "outside years 1 to 9999"},
		{`{"bans": [{"source": "203.0.113.1/32", "until": "0001-01-01T00:30:00+01:00", "reason": "HTTP 4xx"}]}`, "outside years 1 to 9999"},
	} {
		if _, err := DecodeBans([]byte(tc.file)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("DecodeBans(%s) = %v, want an error with %q", tc.file, err, tc.want)
		}
	}
	if bans, err := DecodeBans([]byte(`{"bans": []}`)); err != nil || len(bans) != 0 {
		t.Errorf("empty file: %v, %v", bans, err)
	}
}

// FuzzDecodeBans: any bytes give bans or an error, never a panic, and
// what decodes encodes back to the same bans.
func FuzzDecodeBans(f *testing.F) {
	seed, err := EncodeBans([]Ban{
		{Source: netip.MustParsePrefix("203.0.113.7/32"), Until: time.Unix(1900000000, 0), Reason: ViolationRequestRate},
		{Source: netip.MustParsePrefix("2001:db8::/64"), Until: time.Unix(1900000000, 5), Reason: ViolationTLSHandshake},
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte(`{"bans": [{"source": "::ffff:1.2.3.4/128", "until": "2030-01-01T00:00:00Z", "reason": "connections"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		bans, err := DecodeBans(data)
		if err != nil {
			return
		}
		file, err := EncodeBans(bans)
		if err != nil {
			t.Fatalf("decoded bans do not encode: %v", err)
		}
		again, err := DecodeBans(file)
		if err != nil {
			t.Fatalf("re-encoded bans do not decode: %v", err)
		}
		if len(again) != len(bans) {
			t.Fatalf("%d bans became %d", len(bans), len(again))
		}
		for i := range bans {
			if again[i].Source != bans[i].Source || again[i].Reason != bans[i].Reason || !again[i].Until.Equal(bans[i].Until) {
				t.Fatalf("ban %d: %+v became %+v", i, bans[i], again[i])
			}
		}
	})
}

// TestRestoredBanOnExempt: an exemption in the config spares a source
// whatever ban was kept for it, on every path: TCP, UDP, HTTP.
func TestRestoredBanOnExempt(t *testing.T) {
	g, addr := serve(t, nil, "firewall:\n  limits: {exempt: [127.0.0.23]}\n  bans: {after: 2}\n")
	until := time.Now().Add(time.Hour)
	if n := g.Restore([]Ban{{Source: netip.MustParsePrefix("127.0.0.23/32"), Until: until}, {Source: netip.MustParsePrefix("127.0.0.24/32"), Until: until}}); n != 2 {
		t.Fatalf("restored %d", n)
	}
	for src, want := range map[string]bool{"127.0.0.23": true, "127.0.0.24": false} {
		c := dialFrom(t, src, addr)
		if got := greeted(t, c); got != want {
			t.Errorf("TCP from %s allowed %v, want %v", src, got, want)
		}
		c.Close()
		if got := g.AllowPacket("udp", 53, netip.AddrPortFrom(netip.MustParseAddr(src), 5353)); got != want {
			t.Errorf("UDP from %s allowed %v, want %v", src, got, want)
		}
	}
	if !g.Policy().Exempts(netip.MustParsePrefix("127.0.0.0/24")) || g.Policy().Exempts(netip.MustParsePrefix("127.0.0.24/32")) {
		t.Error("Exempts does not follow the exempt list")
	}
}
