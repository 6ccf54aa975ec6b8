package nft

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"gatehouse/internal/config"
	"gatehouse/internal/firewall"
	"gatehouse/internal/systest"
)

// requireSystem skips a test that needs root and iproute2, unless
// GATEHOUSE_REQUIRE_SYSTEM=1, which makes a missing requirement a failure.
func requireSystem(t *testing.T) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "needs root (CAP_NET_ADMIN) to create network namespaces and nftables tables"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip command (apt-get install iproute2)"
	}
	if why != "" {
		systest.Missing(t, why)
	}
}

func run(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", args, err, out)
	}
}

// netns makes a network namespace that the test removes, and returns an
// open descriptor of it.
func netns(t *testing.T, name string) int {
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	f, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// inNS runs f on a thread moved into the namespace fd; sockets made in f
// stay in that namespace.
func inNS(t *testing.T, fd int, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	defer orig.Close()
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// Leave the thread locked: Go ends it with the goroutine.
		t.Fatal(err)
	}
	runtime.UnlockOSThread()
}

// The namespaces talk over a veth pair on a private range used only there:
// the server is 10.250.7.1, the client holds .2 and .3.
const (
	serverIP = "10.250.7.1"
	allowed  = "10.250.7.2"
	other    = "10.250.7.3"
)

func TestKernelEnforcesPolicy(t *testing.T) {
	requireSystem(t)
	id := os.Getpid() % 100000
	srvName, cliName := fmt.Sprintf("ghfw-s%d", id), fmt.Sprintf("ghfw-c%d", id)
	srvNS, cliNS := netns(t, srvName), netns(t, cliName)
	veth := fmt.Sprintf("ghv%d", id)
	run(t, "ip", "link", "add", veth+"a", "netns", srvName, "type", "veth", "peer", "name", veth+"b", "netns", cliName)
	run(t, "ip", "-n", srvName, "addr", "add", serverIP+"/24", "dev", veth+"a")
	run(t, "ip", "-n", cliName, "addr", "add", allowed+"/24", "dev", veth+"b")
	run(t, "ip", "-n", cliName, "addr", "add", other+"/24", "dev", veth+"b")
	for _, ns := range []string{srvName, cliName} {
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	run(t, "ip", "-n", srvName, "link", "set", veth+"a", "up")
	run(t, "ip", "-n", cliName, "link", "set", veth+"b", "up")

	// Servers in the server namespace greet every connection: only the
	// kernel decides who reaches them.
	ports := map[string]int{}
	inNS(t, srvNS, func() {
		for _, name := range []string{"web", "ssh", "rejected"} {
			ln, err := net.Listen("tcp", serverIP+":0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			ports[name] = ln.Addr().(*net.TCPAddr).Port
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					c.Write([]byte("ok"))
					c.Close()
				}
			}()
		}
	})

	// outcome connects from src in the client namespace to a port.
	outcome := func(src string, port int) string {
		var c net.Conn
		var err error
		inNS(t, cliNS, func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 400 * time.Millisecond}
			c, err = d.Dial("tcp", net.JoinHostPort(serverIP, fmt.Sprint(port)))
		})
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			return "reset"
		case err != nil && os.IsTimeout(err):
			return "dropped"
		case err != nil:
			t.Fatalf("dial from %s: %v", src, err)
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, 2)); err != nil {
			t.Fatalf("reading from %s:%d: %v", serverIP, port, err)
		}
		return "open"
	}
	check := func(when string, want map[string]map[string]string) {
		t.Helper()
		for src, byPort := range want {
			for name, w := range byPort {
				if got := outcome(src, ports[name]); got != w {
					t.Errorf("%s: %s to %s: %s, want %s", when, src, name, got, w)
				}
			}
		}
	}

	check("before", map[string]map[string]string{other: {"web": "open", "ssh": "open"}})

	tbl, err := Open(Options{NetNS: srvNS})
	if err != nil {
		t.Fatal(err)
	}
	// A table of someone else's, which gatehouse must leave alone.
	theirs := &nftables.Table{Family: nftables.TableFamilyINet, Name: "theirs"}
	tbl.conn.AddTable(theirs)
	if err := tbl.conn.Flush(); err != nil {
		t.Fatal(err)
	}

	yaml := fmt.Sprintf(`firewall:
  default: deny
  rules:
    - {allow: tcp, ports: [%d], from: [10.250.7.0/31, 10.250.7.2, "2001:db8::/32"], description: ssh from the office}
    - {allow: tcp, ports: [7, %d-%d]}
    - {reject: tcp, ports: [%d]}
`, ports["ssh"], ports["web"], ports["web"], ports["rejected"])
	if err := tbl.Apply(policy(t, yaml), nil); err != nil {
		t.Fatal(err)
	}
	if ok, err := tbl.Installed(); !ok || err != nil {
		t.Fatalf("table installed: %v %v", ok, err)
	}
	check("applied", map[string]map[string]string{
		allowed: {"web": "open", "ssh": "open", "rejected": "reset"},
		other:   {"web": "open", "ssh": "dropped"},
	})
	if t.Failed() || os.Getenv("GATEHOUSE_NFT_DUMP") != "" {
		// The table as nft reads it back, to see what the kernel holds.
		out, err := exec.Command("ip", "netns", "exec", srvName, "nft", "list", "table", "inet", TableName).CombinedOutput()
		t.Logf("nft list table inet %s (%v):\n%s", TableName, err, out)
	}

	// A ban is a set element with a timeout: the kernel lifts it itself.
	if err := tbl.Ban(firewall.Ban{Source: netip.MustParsePrefix(allowed + "/32"), Until: time.Now().Add(1500 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	check("banned", map[string]map[string]string{allowed: {"web": "dropped"}, other: {"web": "open"}})
	deadline := time.Now().Add(5 * time.Second)
	for outcome(allowed, ports["web"]) != "open" {
		if time.Now().After(deadline) {
			t.Fatal("the ban did not expire")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// A reload replaces the table whole and carries bans over.
	ban := firewall.Ban{Source: netip.MustParsePrefix(other + "/32"), Until: time.Now().Add(time.Minute)}
	reloaded := "firewall:\n  default: deny\n  nftables: {enabled: true, forward: true}\n  rules: [{allow: tcp, ports: [80, 8000-8100], from: [192.0.2.0/24]}, {allow: tcp}]\n"
	if err := tbl.Apply(policy(t, reloaded), []firewall.Ban{ban}); err != nil {
		t.Fatal(err)
	}
	if ch, err := tbl.conn.ListChain(tbl.table, "forward"); err != nil || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward {
		t.Errorf("forward chain: %+v %v", ch, err)
	}
	check("reloaded", map[string]map[string]string{allowed: {"ssh": "open", "rejected": "open"}, other: {"web": "dropped"}})

	// An unban takes the element out at once; one the kernel no longer
	// holds is not an error.
	if err := tbl.Unban(ban.Source); err != nil {
		t.Fatal(err)
	}
	check("unbanned", map[string]map[string]string{other: {"web": "open"}})
	if err := tbl.Unban(ban.Source); err != nil {
		t.Errorf("unbanning twice: %v", err)
	}

	// A source the policy exempts is never dropped for a ban, carried
	// over or new.
	exempt := "firewall:\n  nftables: {enabled: true}\n  limits: {exempt: [" + allowed + "]}\n  rules: [{allow: tcp}]\n"
	if err := tbl.Apply(policy(t, exempt), []firewall.Ban{{Source: netip.MustParsePrefix(allowed + "/32"), Until: time.Now().Add(time.Minute)}}); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{allowed, other} {
		if err := tbl.Ban(firewall.Ban{Source: netip.MustParsePrefix(src + "/32"), Until: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
	}
	check("exempt", map[string]map[string]string{allowed: {"web": "open"}, other: {"web": "dropped"}})

	if err := tbl.Remove(); err != nil {
		t.Fatal(err)
	}
	if ok, _ := tbl.Installed(); ok {
		t.Error("table still installed after Remove")
	}
	if got, err := tbl.conn.ListTableOfFamily("theirs", nftables.TableFamilyINet); err != nil || got == nil {
		t.Errorf("another table was touched: %v", err)
	}
	check("removed", map[string]map[string]string{other: {"web": "open", "ssh": "open"}})
	if err := tbl.Remove(); err != nil {
		t.Errorf("removing twice: %v", err)
	}
}

func policy(t *testing.T, yaml string) *firewall.Policy {
	t.Helper()
	t.Setenv("SSH_CONNECTION", "")
	c, err := config.Parse("t.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	p, err := firewall.Compile(c.Firewall)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestKernelFiltersForwarded: a published port reached through DNAT (as
// Docker's -p does) goes through the forward hook and never the input one,
// so only the forward option filters it, on the port the client asked for.
func TestKernelFiltersForwarded(t *testing.T) {
	requireSystem(t)
	systest.Program(t, "nft", "nftables") // to set up DNAT
	id := os.Getpid() % 100000
	cli, rtr, back := fmt.Sprintf("ghfw-fc%d", id), fmt.Sprintf("ghfw-fr%d", id), fmt.Sprintf("ghfw-fb%d", id)
	cliNS, rtrNS, backNS := netns(t, cli), netns(t, rtr), netns(t, back)
	v1, v2 := fmt.Sprintf("ghf%da", id), fmt.Sprintf("ghf%db", id)
	run(t, "ip", "link", "add", v1, "netns", cli, "type", "veth", "peer", "name", v1+"r", "netns", rtr)
	run(t, "ip", "link", "add", v2, "netns", back, "type", "veth", "peer", "name", v2+"r", "netns", rtr)
	for _, a := range [][]string{
		{cli, "10.250.8.2/24", v1}, {cli, "10.250.8.3/24", v1}, {rtr, "10.250.8.1/24", v1 + "r"},
		{rtr, "10.250.9.1/24", v2 + "r"}, {back, "10.250.9.2/24", v2},
	} {
		run(t, "ip", "-n", a[0], "addr", "add", a[1], "dev", a[2])
		run(t, "ip", "-n", a[0], "link", "set", a[2], "up")
	}
	run(t, "ip", "-n", back, "route", "add", "default", "via", "10.250.9.1")
	run(t, "ip", "netns", "exec", rtr, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// The publishing program's DNAT: router:8080 → backend:8081.
	run(t, "ip", "netns", "exec", rtr, "nft", "add table ip pub; add chain ip pub pre { type nat hook prerouting priority -100; }; add rule ip pub pre tcp dport 8080 dnat to 10.250.9.2:8081")

	inNS(t, backNS, func() {
		ln, err := net.Listen("tcp", "10.250.9.2:8081")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte("ok"))
				c.Close()
			}
		}()
	})
	reaches := func(src string) bool {
		var c net.Conn
		var err error
		inNS(t, cliNS, func() {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 400 * time.Millisecond}
			c, err = d.Dial("tcp", "10.250.8.1:8080")
		})
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err = io.ReadFull(c, make([]byte, 2))
		return err == nil
	}

	tbl, err := Open(Options{NetNS: rtrNS})
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.Remove()
	const rules = "  default: deny\n  rules: [{allow: tcp, ports: [8080], from: [10.250.8.2]}]\n"
	for _, tc := range []struct {
		desc               string
		nftables           string
		fromTwo, fromThree bool // 10.250.8.2 and .3 reach the backend
	}{
		{"no table", "", true, true},
		{"input chain only", "{enabled: true}", true, true},
		{"forward chain", "{enabled: true, forward: true}", true, false},
	} {
		if tc.nftables != "" {
			if err := tbl.Apply(policy(t, "firewall:\n  nftables: "+tc.nftables+"\n"+rules), nil); err != nil {
				t.Fatal(err)
			}
		}
		if got := reaches("10.250.8.2"); got != tc.fromTwo {
			t.Errorf("%s: 10.250.8.2 reached the backend %v, want %v", tc.desc, got, tc.fromTwo)
		}
		if got := reaches("10.250.8.3"); got != tc.fromThree {
			t.Errorf("%s: 10.250.8.3 reached the backend %v, want %v", tc.desc, got, tc.fromThree)
		}
	}
}
