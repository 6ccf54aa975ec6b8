package test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/firewall"
	"gatehouse/internal/gatetest"
)

// getFrom sends a GET from the loopback address src and returns the status
// line, or "" when the connection was closed unanswered (the firewall).
func getFrom(t *testing.T, src, addr string) string {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 2 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return ""
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: example.org\r\nConnection: close\r\n\r\n")
	line, _ := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line)
}

// TestBansOutliveRestart: a source banned by one gatehouse is still shut
// out by the next one on the same data folder, until the admin API lifts
// the ban, and the bans file follows.
func TestBansOutliveRestart(t *testing.T) {
	data := t.TempDir()
	cfg := fmt.Sprintf(`
data: %s
admin: {listen: 127.0.0.1:0, token: tok}
firewall:
  limits: {connections: 1}
  bans: {after: 2, within: 10s, for: 1h}
sites:
  - hosts: [example.org]
    tls: off
    routes: [{path: /, respond: hi}]
`, data)
	const banned, other = "127.0.0.31", "127.0.0.32"
	g1 := gatetest.Start(t, cfg)
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(banned)}}
	held, err := d.Dial("tcp", g1.HTTP)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // held is counted before the next ones come
	for range 2 {
		if got := getFrom(t, banned, g1.HTTP); got != "" {
			t.Fatalf("a connection over the cap was answered: %q", got)
		}
	}
	held.Close()
	if got := getFrom(t, banned, g1.HTTP); got != "" {
		t.Fatalf("banned source answered: %q", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := g1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}

	path := filepath.Join(data, "firewall", "bans.json")
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no bans file after the shutdown: %v", err)
	}
	bans, err := firewall.DecodeBans(file)
	if err != nil || len(bans) != 1 || bans[0].Source.String() != banned+"/32" || bans[0].Reason != firewall.ViolationConnections {
		t.Fatalf("bans file: %v %+v\n%s", err, bans, file)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bans file mode: %v %v", fi.Mode(), err)
	}

	g2 := gatetest.Start(t, cfg)
	if got := getFrom(t, banned, g2.HTTP); got != "" {
		t.Errorf("after the restart the banned source was answered: %q", got)
	}
	if got := getFrom(t, other, g2.HTTP); got != "HTTP/1.1 200 OK" {
		t.Errorf("after the restart another source got %q", got)
	}
	if !strings.Contains(g2.Logs.String(), "bans restored") {
		t.Errorf("the restore is not logged:\n%s", g2.Logs.String())
	}
	for _, tc := range []struct {
		source string
		want   int
	}{{banned, 200}, {banned, 404}, {"nope", 400}} {
		resp, body := adminDo(t, g2, "POST", "/firewall/unban?source="+tc.source, "tok", nil, "")
		if resp.StatusCode != tc.want {
			t.Errorf("unban %s: %d %s, want %d", tc.source, resp.StatusCode, body, tc.want)
		}
	}
	if got := getFrom(t, banned, g2.HTTP); got != "HTTP/1.1 200 OK" {
		t.Errorf("after the unban the source got %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		file, _ := os.ReadFile(path)
		if bans, err := firewall.DecodeBans(file); err == nil && len(bans) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bans file still holds the lifted ban:\n%s", file)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestBansFileUnreadable: a damaged bans file is moved aside and gatehouse
// starts without it.
func TestBansFileUnreadable(t *testing.T) {
	data := t.TempDir()
	os.MkdirAll(filepath.Join(data, "firewall"), 0o700)
	path := filepath.Join(data, "firewall", "bans.json")
	os.WriteFile(path, []byte(`{"bans": [{"source": "127.0.0.33/32", "until": "2999-01-01T00:00:00Z", "reason": "??"}]}`), 0o600)
	g := gatetest.Start(t, fmt.Sprintf("data: %s\nfirewall: {bans: {after: 2}}\nsites:\n  - hosts: [example.org]\n    tls: off\n    routes: [{path: /, respond: hi}]\n", data))
	if got := getFrom(t, "127.0.0.33", g.HTTP); got != "HTTP/1.1 200 OK" {
		t.Errorf("got %q", got)
	}
	if _, err := os.Stat(path + ".unreadable"); err != nil {
		t.Errorf("the damaged file is not kept aside: %v", err)
	}
	if !strings.Contains(g.Logs.String(), `unknown reason \"??\"`) {
		t.Errorf("the log does not say why:\n%s", g.Logs.String())
	}
}
