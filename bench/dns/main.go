// Command dns measures gatehouse's authoritative DNS server side by side
// with PowerDNS (bind backend) and Knot, on loopback, serving the same zone
// file, with dnsperf as the client.
//
//	go run ./bench/dns                 # 3 rounds of 10 s per server, about 2 minutes
//	go run ./bench/dns -quick          # 1 round of 3 s
//	go run ./bench/dns -out DIR        # also write DIR/README.md
//
// Each server runs pinned to CPU 0 (gatehouse with GOMAXPROCS=1, the others
// with one worker thread), dnsperf to CPU 1. The server gets CPU 0 because
// Knot pins its UDP worker i to CPU i modulo the online CPUs, whatever
// affinity it was started with: on any other CPU its worker would share
// dnsperf's core. Every thread of every server is checked to stay on the
// server's CPU. Servers take turns (A B C A B
// C …) so drifting load on a shared machine hits all alike. The stable
// figure is each server process's CPU time per answered query, from
// utime+stime in /proc/PID/stat around each run; QPS is reported as well.
// Missing peers are installed with apt-get when the package exists.
package main

import (
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"gatehouse/bench/internal/proc"
	"gatehouse/internal/config"
	"gatehouse/internal/dnsserver"
	"gatehouse/internal/zone"
)

func main() {
	serve := flag.String("serve", "", "internal: serve -zone on this address with gatehouse and wait")
	zoneFile := flag.String("zone", "", "internal: the zone file to serve")
	cpuProfile := flag.String("cpuprofile", "", "with -serve: write gatehouse's CPU profile here until it stops")
	out := flag.String("out", "", "folder to write README.md with the results")
	quick := flag.Bool("quick", false, "one round of 3 s")
	rounds := flag.Int("rounds", 3, "rounds per server")
	dur := flag.Duration("duration", 10*time.Second, "dnsperf run length")
	flag.Parse()
	if *serve != "" {
		serveGatehouse(*serve, *zoneFile, *cpuProfile)
		return
	}
	if *quick {
		*rounds, *dur = 1, 3*time.Second
	}
	if err := run(*out, *rounds, *dur); err != nil {
		log.Fatal(err)
	}
}

// serveGatehouse is the gatehouse side: the dnsserver package with the
// zone compiled as the config would, rate limiting off like the peers.
func serveGatehouse(addr, file, cpuProfile string) {
	cfg := config.DNS{
		Zones:     map[string]*config.Zone{"bench.test": {File: file}},
		RateLimit: config.DNSRateLimit{Responses: -1},
	}
	set, err := zone.Compile(cfg, nil)
	if err != nil {
		log.Fatal(err)
	}
	s := dnsserver.New([]string{addr})
	s.SetRateLimit(dnsserver.RateLimit{Responses: -1})
	s.Logger = slog.New(slog.DiscardHandler)
	if err := s.Update(set); err != nil {
		log.Fatal(err)
	}
	if err := s.Start(); err != nil {
		log.Fatal(err)
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	s.Close()
}

// The server under test and the client each get a core of their own.
const (
	serverCPU = 0
	clientCPU = 1
)

type server struct {
	name string
	port int
	argv []string
	env  []string
	p    *proc.Proc
}

type result struct {
	cpuPerQuery float64 // µs
	qps         float64
	completed   int
	lost        int
}

func run(out string, rounds int, dur time.Duration) error {
	install()
	if _, err := exec.LookPath("dnsperf"); err != nil {
		return fmt.Errorf("dnsperf is not installed and apt-get could not install it")
	}
	dir, err := os.MkdirTemp("", "gatehouse-bench-dns-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	zfile, qfile, err := writeZone(dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	servers := []*server{{name: "gatehouse", port: 25353, argv: []string{self, "-serve", "127.0.0.1:25353", "-zone", zfile}, env: []string{"GOMAXPROCS=1"}}}
	if p, err := exec.LookPath("pdns_server"); err == nil {
		conf := filepath.Join(dir, "named.conf")
		os.WriteFile(conf, []byte(fmt.Sprintf("zone \"bench.test\" { type master; file \"%s\"; };\n", zfile)), 0o644)
		servers = append(servers, &server{name: "PowerDNS (bind backend)", port: 25354, argv: []string{p,
			"--no-config", "--daemon=no", "--guardian=no", "--disable-syslog", "--write-pid=no",
			"--socket-dir=" + dir, "--local-address=127.0.0.1", "--local-port=25354",
			"--launch=bind", "--bind-config=" + conf, "--receiver-threads=1", "--distributor-threads=1",
			"--loglevel=3"}})
	}
	if p, err := exec.LookPath("knotd"); err == nil {
		conf := filepath.Join(dir, "knot.conf")
		kdir := filepath.Join(dir, "knot")
		os.MkdirAll(kdir, 0o755)
		os.WriteFile(conf, []byte(fmt.Sprintf(`server:
    listen: 127.0.0.1@25355
    rundir: %[1]s
    udp-workers: 1
    tcp-workers: 1
    background-workers: 1
database:
    storage: %[1]s
zone:
  - domain: bench.test
    storage: %[2]s
    file: %[3]s
`, kdir, dir, filepath.Base(zfile))), 0o644)
		servers = append(servers, &server{name: "Knot", port: 25355, argv: []string{p, "-c", conf}})
	}
	for _, s := range servers {
		if err := s.start(dir); err != nil {
			proc.StopAll()
			return err
		}
	}
	defer proc.StopAll()
	results := map[string][]result{}
	for round := 1; round <= rounds; round++ {
		for _, s := range servers {
			r, err := measure(s, qfile, dur)
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			log.Printf("round %d %-24s %6.2f µs CPU/query %9.0f QPS  lost %d", round, s.name, r.cpuPerQuery, r.qps, r.lost)
			results[s.name] = append(results[s.name], r)
		}
	}
	report := table(servers, results, rounds, dur)
	fmt.Print(report)
	if out != "" {
		if err := os.MkdirAll(out, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(out, "README.md"), []byte(report), 0o644)
	}
	return nil
}

// install gets the peers from Debian when their commands are missing and
// their packages exist.
func install() {
	want := map[string]string{"dnsperf": "dnsperf", "pdns_server": "pdns-server", "knotd": "knot"}
	var missing []string
	for bin, pkg := range want {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, pkg)
		}
	}
	if _, err := os.Stat("/usr/lib/x86_64-linux-gnu/pdns/libbindbackend.so"); err != nil {
		missing = append(missing, "pdns-backend-bind")
	}
	if len(missing) == 0 {
		return
	}
	if err := exec.Command("apt-get", "update", "-qq").Run(); err != nil {
		log.Printf("apt-get update: %v", err)
	}
	var pkgs []string
	for _, p := range missing {
		if exec.Command("apt-cache", "show", p).Run() == nil {
			pkgs = append(pkgs, p)
		}
	}
	sort.Strings(pkgs)
	log.Printf("installing %s", strings.Join(pkgs, " "))
	cmd := exec.Command("apt-get", append([]string{"install", "-y", "-qq"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if b, err := cmd.CombinedOutput(); err != nil {
		log.Printf("apt-get install: %v\n%s", err, b)
	}
}

// writeZone writes the zone all servers load and dnsperf's query list:
// mostly names that exist (A, AAAA, MX), some CNAMEs, and one query in ten
// for a name that does not exist.
func writeZone(dir string) (zfile, qfile string, err error) {
	var z, q strings.Builder
	z.WriteString("$ORIGIN bench.test.\n$TTL 300\n@ IN SOA ns1 hostmaster 2024010101 3600 600 604800 300\n@ IN NS ns1\nns1 IN A 127.0.0.1\n@ IN A 192.0.2.1\n@ IN MX 10 mail\nmail IN A 192.0.2.25\n")
	for i := range 200 {
		fmt.Fprintf(&z, "host%d IN A 192.0.2.%d\nhost%d IN AAAA 2001:db8::%x\nalias%d IN CNAME host%d\n", i, i%250+1, i, i+1, i, i)
	}
	for i := range 1000 {
		switch {
		case i%10 == 0:
			fmt.Fprintf(&q, "missing%d.bench.test A\n", i)
		case i%10 == 1:
			fmt.Fprintf(&q, "alias%d.bench.test A\n", i%200)
		case i%10 == 2:
			fmt.Fprintf(&q, "host%d.bench.test AAAA\n", i%200)
		case i%10 == 3:
			q.WriteString("bench.test MX\n")
		default:
			fmt.Fprintf(&q, "host%d.bench.test A\n", i%200)
		}
	}
	zfile, qfile = filepath.Join(dir, "bench.test.zone"), filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(zfile, []byte(z.String()), 0o644); err != nil {
		return "", "", err
	}
	return zfile, qfile, os.WriteFile(qfile, []byte(q.String()), 0o644)
}

func (s *server) start(dir string) error {
	logFile := filepath.Join(dir, strings.Fields(s.name)[0]+".log")
	p, err := proc.Start(s.name, serverCPU, s.env, logFile, s.argv...)
	if err != nil {
		return err
	}
	s.p = p
	// Ready when it answers, with the answer every server must give.
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	deadline := time.Now().Add(20 * time.Second)
	for {
		m := new(dns.Msg)
		m.SetQuestion("alias7.bench.test.", dns.TypeA)
		r, _, err := (&dns.Client{Timeout: 300 * time.Millisecond}).Exchange(m, addr)
		if err == nil && r.Rcode == 0 && len(r.Answer) == 2 && r.Authoritative {
			return nil
		}
		if p.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer on %s (%v %v):\n%s", s.name, addr, err, r, p.Tail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

var (
	reCompleted = regexp.MustCompile(`Queries completed:\s+(\d+)`)
	reLost      = regexp.MustCompile(`Queries lost:\s+(\d+)`)
	reQPS       = regexp.MustCompile(`Queries per second:\s+([\d.]+)`)
)

func measure(s *server, qfile string, dur time.Duration) (result, error) {
	pid := s.p.Pid()
	before := proc.CPUTicks(pid)
	secs := strconv.Itoa(int(dur.Seconds()))
	b, err := exec.Command("taskset", "-c", strconv.Itoa(clientCPU), "dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(s.port),
		"-d", qfile, "-l", secs, "-c", "1", "-T", "1", "-q", "100", "-t", "2").CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("dnsperf: %v\n%s", err, b)
	}
	after := proc.CPUTicks(pid)
	if s.p.Exited() {
		return result{}, fmt.Errorf("%s exited: %s", s.name, s.p.Tail())
	}
	if err := s.p.CheckPinned(); err != nil {
		return result{}, err
	}
	var r result
	if m := reCompleted.FindSubmatch(b); m != nil {
		r.completed, _ = strconv.Atoi(string(m[1]))
	}
	if m := reLost.FindSubmatch(b); m != nil {
		r.lost, _ = strconv.Atoi(string(m[1]))
	}
	if m := reQPS.FindSubmatch(b); m != nil {
		r.qps, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	if r.completed == 0 {
		return r, fmt.Errorf("no query completed:\n%s", b)
	}
	r.cpuPerQuery = float64(after-before) * 1e6 / proc.ClockTicks / float64(r.completed)
	return r, nil
}

func median(xs []float64) float64 {
	sort.Float64s(xs)
	return xs[len(xs)/2]
}

func table(servers []*server, res map[string][]result, rounds int, dur time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Authoritative DNS: gatehouse, PowerDNS, Knot\n\n")
	fmt.Fprintf(&b, "dnsperf on loopback, %d round(s) of %s per server taken in turns, servers on one core (CPU %d, dnsperf on CPU %d); the same zone file (bench.test, 605 records); queries: 60%% A, 10%% AAAA, 10%% MX, 10%% CNAME chains, 10%% NXDOMAIN. Medians over rounds.\n\n", rounds, dur, serverCPU, clientCPU)
	fmt.Fprintf(&b, "| server | CPU µs/query | QPS | lost | CPU ratio to gatehouse |\n|---|---:|---:|---:|---:|\n")
	gh := 0.0
	for _, s := range servers {
		var cpu, qps []float64
		lost := 0
		for _, r := range res[s.name] {
			cpu = append(cpu, r.cpuPerQuery)
			qps = append(qps, r.qps)
			lost += r.lost
		}
		c := median(cpu)
		if gh == 0 {
			gh = c
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.0f | %d | %.2f× |\n", s.name, c, median(qps), lost, c/gh)
	}
	b.WriteString("\nA ratio above 1 means the server spends more CPU per query than gatehouse.\n")
	return b.String()
}
