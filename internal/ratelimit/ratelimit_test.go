package ratelimit

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"
)

func TestReserve(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	b := netip.MustParseAddr("192.0.2.2")
	for _, tc := range []struct {
		name     string
		requests int
		per      time.Duration
		burst    int
		steps    []struct {
			at     time.Duration
			client netip.Addr
			want   time.Duration
		}
	}{
		{"burst then refill", 10, time.Second, 2, []struct {
			at     time.Duration
			client netip.Addr
			want   time.Duration
		}{
			{0, a, 0}, {0, a, 0}, {0, a, 100 * time.Millisecond},
			{0, b, 0}, // another client has its own bucket
			{50 * time.Millisecond, a, 50 * time.Millisecond},
			{100 * time.Millisecond, a, 0},
			{100 * time.Millisecond, a, 100 * time.Millisecond},
		}},
		{"slow rate, default burst", 2, time.Minute, 0, []struct {
			at     time.Duration
			client netip.Addr
			want   time.Duration
		}{
			{0, a, 0}, {0, a, 0}, {0, a, 30 * time.Second},
			{29 * time.Second, a, time.Second},
			{30 * time.Second, a, 0},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := New(tc.requests, tc.per, tc.burst, 0)
			for i, s := range tc.steps {
				// Token arithmetic is in floats: a microsecond either way is fine.
				got := l.Reserve(s.client, t0.Add(s.at))
				if (got == 0) != (s.want == 0) || (got-s.want).Abs() > time.Microsecond {
					t.Errorf("step %d (%v, %v): wait %v, want %v", i, s.at, s.client, got, s.want)
				}
			}
		})
	}
}

func TestKey(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.7":            "192.0.2.7/32",
		"::ffff:192.0.2.7":     "192.0.2.7/32",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
	} {
		if got := Key(netip.MustParseAddr(in)).String(); got != want {
			t.Errorf("Key(%s) = %s, want %s", in, got, want)
		}
	}
}

// TestBounded: a flood of distinct addresses never grows the table past
// its cap, and idle clients are the ones forgotten first.
func TestBounded(t *testing.T) {
	l := New(1, time.Second, 1, 100)
	t0 := time.Unix(1_000_000, 0)
	busy := netip.MustParseAddr("198.51.100.1")
	l.Reserve(busy, t0)
	for i := 0; i < 5000; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l.Reserve(a, t0.Add(time.Duration(i)*time.Millisecond))
		if n := l.Len(); n > 100 {
			t.Fatalf("%d clients remembered, cap 100", n)
		}
	}
	// Those idle past a refill (1s) were swept; the table holds the recent.
	if n := l.Len(); n < 50 {
		t.Errorf("only %d clients remembered", n)
	}
}

// TestHTTP: over a real socket, the client past its burst gets 429 with a
// Retry-After in whole seconds, and the handler is not called.
func TestHTTP(t *testing.T) {
	calls := 0
	l := New(1, time.Minute, 3, 0)
	srv := httptest.NewServer(l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		io.WriteString(w, "ok")
	})))
	defer srv.Close()
	var got []string
	for i := 0; i < 5; i++ {
		resp, err := srv.Client().Get(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		got = append(got, fmt.Sprintf("%d/%s", resp.StatusCode, resp.Header.Get("Retry-After")))
	}
	want := "[200/ 200/ 200/ 429/60 429/60]"
	if fmt.Sprint(got) != want {
		t.Errorf("answers %v, want %s", got, want)
	}
	if calls != 3 {
		t.Errorf("handler called %d times, want 3", calls)
	}
}

func BenchmarkReserve(b *testing.B) {
	l := New(1_000_000, time.Second, 1_000_000, 0)
	now := time.Now()
	addrs := make([]netip.Addr, 1024)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.Reserve(addrs[i%len(addrs)], now)
	}
}
