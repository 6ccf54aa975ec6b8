package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"gatehouse/bench/internal/proc"
)

// scenario is one kind of load, run against several peers.
type scenario struct {
	ID, Title string
	Unit      string // what CPU time is divided by: request or connection
	Peers     []string
	load      func(p *peer, d time.Duration) (loadResult, error)
}

var proxies = []string{"direct", "nginx", "haproxy", "caddy", "go-stdlib", "gatehouse"}
var fileServers = []string{"nginx", "caddy", "go-stdlib", "gatehouse"}

func scenarios() []*scenario {
	httpURL := func(p *peer, path string) string { return "http://" + p.http + path }
	// wrk sends the URL's host as SNI, so HTTPS goes to localhost:port.
	httpsURL := func(p *peer, path string) string { return "https://localhost:" + port(p.https) + path }
	plain := func(path string) func(*peer, time.Duration) (loadResult, error) {
		return func(p *peer, d time.Duration) (loadResult, error) {
			return wrk(d, defaultWrkConns, httpURL(p, path), hostHTTP)
		}
	}
	return []*scenario{
		{ID: "h1-1k", Title: "proxied HTTP/1.1, 1 KB, keep-alive", Unit: "request", Peers: proxies, load: plain("/1k")},
		{ID: "h1-100k", Title: "proxied HTTP/1.1, 100 KB, keep-alive", Unit: "request", Peers: proxies, load: plain("/100k")},
		{ID: "https-1k", Title: "proxied HTTPS (TLS 1.3, ECDSA P-256), 1 KB, keep-alive", Unit: "request", Peers: proxies,
			load: func(p *peer, d time.Duration) (loadResult, error) {
				return wrk(d, defaultWrkConns, httpsURL(p, "/1k"), hostHTTPS)
			}},
		{ID: "tls-handshake", Title: "new TLS 1.3 connection + 1 request (per connection)", Unit: "connection", Peers: proxies,
			load: func(p *peer, d time.Duration) (loadResult, error) {
				return wrk(d, defaultWrkConns, httpsURL(p, "/1k"), hostHTTPS, "-H", "Connection: close")
			}},
		{ID: "h2-1k", Title: "proxied HTTP/2 over TLS (h2load, 50 connections × 10 streams), 1 KB", Unit: "request", Peers: proxies,
			load: func(p *peer, d time.Duration) (loadResult, error) {
				return h2load(d, defaultWrkConns, defaultH2Streams, httpsURL(p, "/1k"))
			}},
		{ID: "static-1k", Title: "static file, 1 KB", Unit: "request", Peers: fileServers, load: plain("/static/" + staticSmall)},
		{ID: "static-1m", Title: "static file, 1 MB", Unit: "request", Peers: fileServers, load: plain("/static/" + staticLarge)},
	}
}

type runner struct {
	o   options
	e   *env
	res *results
}

func (r *runner) want(id string) bool {
	return r.o.only == "" || slices.Contains(strings.Split(r.o.only, ","), id)
}

// measure runs load once against the server process and turns the
// process's CPU time into µs per unit.
func measure(p *proc.Proc, load func() (loadResult, error)) (sample, error) {
	pid := p.Pid()
	proc.ResetPeak(pid)
	t0 := proc.CPUTicks(pid)
	lr, err := load()
	t1 := proc.CPUTicks(pid)
	if err != nil {
		return sample{}, err
	}
	if p.Exited() {
		return sample{}, fmt.Errorf("%s exited: %s", p.Name, p.Tail())
	}
	if err := p.CheckPinned(); err != nil {
		return sample{}, err
	}
	s := sample{
		Requests: lr.requests, Errors: lr.errors, ErrorKind: lr.kinds, RPS: lr.rps,
		P50us: float64(lr.p50) / 1e3, P99us: float64(lr.p99) / 1e3,
		PeakRSSKB: proc.HWMKB(pid),
	}
	if lr.requests > 0 {
		s.CPUus = float64(t1-t0) * 1e6 / proc.ClockTicks / float64(lr.requests)
	}
	return s, nil
}

// mainScenarios starts every peer once, checks each does the job, then
// runs the rounds: in each round every scenario visits its peers in turn
// (A B C C B A: see roundOrder).
func (r *runner) mainScenarios() error {
	var scs []*scenario
	for _, s := range scenarios() {
		if r.want(s.ID) {
			scs = append(scs, s)
			r.res.scenario(s.ID, s.Title, s.Unit)
		}
	}
	if len(scs) == 0 {
		return nil
	}
	procs := map[string]*proc.Proc{}
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
	}()
	for _, p := range peers() {
		pr, err := p.startFunc(r.e, serverCPU, "")
		if err == nil {
			err = waitListen(p.http, startTimeout, pr)
			if err == nil {
				err = waitListen(p.https, startTimeout, pr)
			}
		}
		if err != nil {
			log.Printf("%s does not start: %v", p.name, err)
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s did not start: %v", p.name, firstLines(err.Error(), 6)))
			pr.Stop()
			continue
		}
		procs[p.name] = pr
		r.res.Checks[p.name] = check(p)
		log.Printf("%s started (pid %d): %s", p.name, pr.Pid(), r.res.Checks[p.name])
	}

	if r.o.warmup > 0 {
		log.Printf("warming up")
		for _, s := range scs {
			for _, name := range s.Peers {
				if procs[name] != nil {
					s.load(findPeer(name), r.o.warmup)
				}
			}
		}
	}
	for round := 1; round <= r.o.rounds; round++ {
		for _, s := range scs {
			for _, name := range roundOrder(s.Peers, round) {
				pr := procs[name]
				if pr == nil {
					continue
				}
				smp, err := measure(pr, func() (loadResult, error) { return s.load(findPeer(name), r.o.duration) })
				if err != nil {
					log.Printf("round %d %s %s: %v", round, s.ID, name, err)
					r.res.Notes = append(r.res.Notes, fmt.Sprintf("round %d, %s, %s: %s", round, s.ID, name, firstLines(err.Error(), 4)))
					continue
				}
				r.record(round, s.ID, name, s.Unit, smp)
			}
		}
	}
	return nil
}

// record keeps a measured sample and logs it, with a note when the load
// saw errors.
func (r *runner) record(round int, id, peer, unit string, smp sample) {
	r.res.add(id, peer, smp)
	log.Printf("round %d %-13s %-9s %7.1f µs/%s %9.0f req/s  errors %d %s", round, id, peer, smp.CPUus, unit, smp.RPS, smp.Errors, smp.ErrorKind)
	if smp.Errors > 0 {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("round %d, %s, %s: %d errors (%s) of %d requests", round, id, peer, smp.Errors, cmp.Or(smp.ErrorKind, "as the tool counts them"), smp.Requests))
	}
}

// roundOrder is visitOrder, reversed every other round, so that no peer
// always runs first or last.
func roundOrder(peers []string, round int) []string {
	order := visitOrder(peers)
	if round%2 == 0 {
		slices.Reverse(order)
	}
	return order
}

// visitOrder is the order a round visits peers in: gatehouse right after
// nginx, so it sits between nginx and HAProxy, the peers its targets are
// set against. On a shared machine the load from other work drifts over
// tens of seconds; the runs compared are then the closest in time.
func visitOrder(peers []string) []string {
	order := slices.DeleteFunc(slices.Clone(peers), func(p string) bool { return p == "gatehouse" })
	at := slices.Index(order, "nginx") + 1 // 0 without nginx: gatehouse first
	if len(order) < len(peers) {
		order = slices.Insert(order, at, "gatehouse")
	}
	return order
}

// routes measures host lookup with routesSites sites, each proxying to
// the backend through its own upstream, requests spread over all hosts.
func (r *runner) routes() error {
	const id = "routes-10k"
	r.res.scenario(id, fmt.Sprintf("proxied HTTP/1.1, 1 KB, %d sites, requests spread over every host", routesSites), "request")
	script := r.e.path("spread.lua")
	lua := fmt.Sprintf(`local i = 0
request = function()
  i = (i + 7919) %% %d
  wrk.headers["Host"] = "s" .. i .. ".bench.test"
  return wrk.format(nil, "/1k")
end
`, routesSites)
	if err := os.WriteFile(script, []byte(lua), 0o644); err != nil {
		return err
	}
	type routed struct {
		name, addr string
		start      func(*env, int, string) (*proc.Proc, error)
	}
	peersR := []routed{{"nginx", routesNginx, startNginxRoutes}, {"gatehouse", routesGatehouse, startGatehouseRoutes}}
	load := func(p routed, d time.Duration) (loadResult, error) {
		return wrk(d, defaultWrkConns, "http://"+p.addr+"/1k", "s0.bench.test", "-s", script)
	}
	// Each peer runs alone, started afresh every round: with every site
	// holding its own upstream connection, two of them at once would hold
	// more sockets than the backend may open.
	once := func(round int, p routed) error {
		t0 := time.Now()
		pr, err := p.start(r.e, serverCPU, "")
		if err == nil {
			err = waitListen(p.addr, routesStartTimout, pr)
		}
		defer pr.Stop()
		if err != nil {
			return fmt.Errorf("%s with %d sites did not start: %s", p.name, routesSites, firstLines(err.Error(), 6))
		}
		if round == 1 {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s with %d sites: listening %v after start, RSS %d MB before traffic",
				p.name, routesSites, time.Since(t0).Round(100*time.Millisecond), proc.RSSKB(pr.Pid())>>10))
		}
		// Two passes over every host first, so each site's upstream
		// connection is open before the measured run.
		var warm int64
		for deadline := time.Now().Add(30 * time.Second); warm < 2*routesSites && time.Now().Before(deadline); {
			lr, err := load(p, 2*time.Second)
			if err != nil {
				return err
			}
			warm += lr.requests
		}
		smp, err := measure(pr, func() (loadResult, error) { return load(p, r.o.duration) })
		if err != nil {
			return err
		}
		r.record(round, id, p.name, "request", smp)
		return nil
	}
	for round := 1; round <= r.o.rounds; round++ {
		for _, p := range peersR {
			if err := once(round, p); err != nil {
				log.Printf("round %d %s %s: %v", round, id, p.name, err)
				r.res.Notes = append(r.res.Notes, fmt.Sprintf("round %d, %s, %s: %s", round, id, p.name, firstLines(err.Error(), 4)))
			}
		}
	}
	return nil
}

// accessLogs runs the 1 KB proxy scenario again with every request
// logged to a file, as most servers run: nginx's default (combined)
// format, Caddy's and gatehouse's JSON lines. The peers run once each, in
// the main scenarios' interleaved order.
func (r *runner) accessLogs() error {
	const id = "h1-1k-log"
	r.res.scenario(id, "proxied HTTP/1.1, 1 KB, keep-alive, access log to a file", "request")
	starts := map[string]func(*env, int, string, string) (*proc.Proc, error){
		"nginx": startNginxLogging, "caddy": startCaddyLogging, "gatehouse": startGatehouseLogging,
	}
	names := []string{"nginx", "caddy", "gatehouse"}
	procs := map[string]*proc.Proc{}
	defer func() {
		for _, p := range procs {
			p.Stop()
		}
	}()
	files := map[string]string{}
	for _, name := range names {
		files[name] = r.e.path(name + "-access.log")
		pr, err := starts[name](r.e, serverCPU, "-log", files[name])
		if err == nil {
			err = waitListen(findPeer(name).http, startTimeout, pr)
		}
		if err != nil {
			pr.Stop()
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s, %s did not start: %s", id, name, firstLines(err.Error(), 6)))
			continue
		}
		procs[name] = pr
	}
	load := func(name string, d time.Duration) (loadResult, error) {
		return wrk(d, defaultWrkConns, "http://"+findPeer(name).http+"/1k", hostHTTP)
	}
	if r.o.warmup > 0 {
		for name := range procs {
			load(name, r.o.warmup)
		}
	}
	for round := 1; round <= r.o.rounds; round++ {
		for _, name := range roundOrder(names, round) {
			pr := procs[name]
			if pr == nil {
				continue
			}
			smp, err := measure(pr, func() (loadResult, error) { return load(name, r.o.duration) })
			if err != nil {
				r.res.Notes = append(r.res.Notes, fmt.Sprintf("round %d, %s, %s: %s", round, id, name, firstLines(err.Error(), 4)))
				continue
			}
			r.record(round, id, name, "request", smp)
		}
	}
	// A server that wrote no lines did not do the job being measured.
	for name := range procs {
		if fi, err := os.Stat(files[name]); err != nil || fi.Size() == 0 {
			r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s: %s wrote no access log lines to %s", id, name, files[name]))
		}
	}
	return nil
}

// memory starts each peer afresh, reads its RSS, opens r.o.idle keep-alive
// connections that each carry one request and then idle, and reads the
// RSS again: the growth per connection is what an idle client costs.
func (r *runner) memory() {
	for _, tlsOn := range []bool{false, true} {
		id, title := "idle-http", "RSS growth per idle keep-alive connection, HTTP"
		if tlsOn {
			id, title = "idle-https", "RSS growth per idle keep-alive connection, HTTPS"
		}
		r.res.scenario(id, fmt.Sprintf("%s (%d connections, one 1 KB request each)", title, r.o.idle), "connection")
		for _, p := range peers() {
			m, err := r.idleOnce(p, tlsOn)
			if err != nil {
				log.Printf("%s %s: %v", id, p.name, err)
				r.res.Notes = append(r.res.Notes, fmt.Sprintf("%s, %s: %s", id, p.name, firstLines(err.Error(), 4)))
				continue
			}
			r.res.Memory = append(r.res.Memory, m)
			m.Scenario = id
			log.Printf("%s %-9s %6.1f KB per connection (%d open, RSS %d → %d MB)", id, p.name, m.KBPerConn, m.Opened, m.BeforeKB>>10, m.AfterKB>>10)
		}
	}
}

func (r *runner) idleOnce(p *peer, tlsOn bool) (*memSample, error) {
	pr, err := p.startFunc(r.e, serverCPU, "-mem")
	if err != nil {
		return nil, err
	}
	defer pr.Stop()
	addr, host, path := p.http, hostHTTP, "/1k"
	if tlsOn {
		addr, host = p.https, hostHTTPS
	}
	if err := waitListen(addr, startTimeout, pr); err != nil {
		return nil, err
	}
	// A few hundred requests first, so the server's steady state (pools,
	// buffers, TLS session state) is in the baseline, not in the growth.
	if tlsOn {
		wrk(time.Second, 10, "https://localhost:"+port(addr)+path, host)
	} else {
		wrk(time.Second, 10, "http://"+addr+path, host)
	}
	time.Sleep(500 * time.Millisecond)
	before := proc.RSSKB(pr.Pid())

	n := r.o.idle
	if p.maxIdle > 0 {
		n = min(n, p.maxIdle)
	}
	args := []string{"-c", fmt.Sprint(loadCPU), r.e.bin, "idle", "-addr", addr, "-n", fmt.Sprint(n), "-host", host, "-path", path}
	if tlsOn {
		args = append(args, "-tls")
	}
	cmd := exec.Command("taskset", args...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	ready := make(chan int, 1)
	go func() {
		var n int
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		fmt.Sscanf(line, "ready %d", &n)
		ready <- n
	}()
	var opened int
	select {
	case opened = <-ready:
	case <-time.After(150 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("idle client not ready after 150s")
	}
	time.Sleep(time.Second)
	after := proc.RSSKB(pr.Pid())
	if opened == 0 {
		return nil, fmt.Errorf("no connection opened")
	}
	return &memSample{Peer: p.name, Opened: opened, BeforeKB: before, AfterKB: after,
		KBPerConn: float64(after-before) / float64(opened)}, nil
}

// profile runs gatehouse built with a pprof listener under the 1 KB
// HTTP/1.1 load and keeps its CPU and allocation profiles.
func (r *runner) profile(root string) error {
	bin := r.e.path("gatehouse-pprof")
	if err := goBuild(root, bin, "./bench/gatehouse-pprof"); err != nil {
		return err
	}
	cfg := gatehouseConfig(r.e, profileHTTPAddr, profileHTTPSAddr, "off")
	pr, err := runGatehouse(r.e, serverCPU, "gatehouse-pprof", cfg, func(cfg, data string) []string {
		return []string{bin, "-c", cfg, "-data", data, "-pprof", profileAddr}
	})
	if err != nil {
		return err
	}
	defer pr.Stop()
	if err := waitListen(profileHTTPAddr, startTimeout, pr); err != nil {
		return err
	}
	if err := os.MkdirAll(r.o.out, 0o755); err != nil {
		return err
	}
	secs := int(max(r.o.duration, 5*time.Second) / time.Second * 2)
	url := "http://" + profileHTTPAddr + "/1k"
	warm, _ := wrk(time.Second, defaultWrkConns, url, hostHTTP)
	var main loadResult
	done := make(chan error, 1)
	go func() {
		var err error
		main, err = wrk(time.Duration(secs+2)*time.Second, defaultWrkConns, url, hostHTTP)
		done <- err
	}()
	time.Sleep(time.Second)
	cpuFile := filepath.Join(r.o.out, "gatehouse-h1-1k.cpu.pprof")
	if err := fetchTo(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", profileAddr, secs), cpuFile); err != nil {
		return err
	}
	if err := <-done; err != nil {
		return err
	}
	allocFile := filepath.Join(r.o.out, "gatehouse-h1-1k.allocs.pprof")
	if err := fetchTo("http://"+profileAddr+"/debug/pprof/allocs", allocFile); err != nil {
		return err
	}
	var text strings.Builder
	for _, v := range []struct {
		title, file string
		args        []string
	}{
		{"CPU, flat (where the time is spent)", cpuFile, []string{"-top", "-nodecount=30"}},
		{"CPU, cumulative (which calls lead there)", cpuFile, []string{"-top", "-cum", "-nodecount=40"}},
		{"allocations, objects (since start)", allocFile, []string{"-top", "-sample_index=alloc_objects", "-nodecount=25"}},
	} {
		out, err := exec.Command("go", append(append([]string{"tool", "pprof"}, v.args...), bin, v.file)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("go tool pprof: %v\n%s", err, out)
		}
		fmt.Fprintf(&text, "## %s\n\n", v.title)
		// The allocation profile counts from the start, which is the
		// warm-up and the measured run: its total over their requests
		// is the allocations per request.
		if m := pprofTotal.FindSubmatch(out); m != nil && strings.Contains(v.title, "allocations") {
			var objs float64
			fmt.Sscan(string(m[1]), &objs)
			if n := warm.requests + main.requests; n > 0 {
				fmt.Fprintf(&text, "About %.0f heap allocations per request (%.0f objects over %d requests since start).\n\n", objs/float64(n), objs, n)
			}
		}
		fmt.Fprintf(&text, "```\n%s```\n\n", out)
	}
	r.res.Profile = text.String()
	return nil
}

var pprofTotal = regexp.MustCompile(`of (\d+) total`)

func fetchTo(url, file string) error {
	resp, err := http.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitListen waits until addr accepts connections or the process exits.
func waitListen(addr string, timeout time.Duration, p *proc.Proc) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited: %s", p.Name, p.Tail())
		}
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on %s after %v", p.Name, addr, timeout)
}

// check makes sure a peer does the same job as the others before it is
// measured: the right bodies, and upstream headers as the seed's config
// sets them. It returns "ok" or what is wrong.
func check(p *peer) string {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true, ServerName: hostHTTPS,
			MinVersion: tls.VersionTLS13}},
	}
	var problems []string
	get := func(url, host string) (*http.Response, []byte, error) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Host = host
		resp, err := client.Do(req)
		if err != nil {
			return nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp, b, err
	}
	type want struct {
		url, host, path string
		size            int
	}
	wants := []want{
		{"http://" + p.http, hostHTTP, "/1k", proxiedSmallSize},
		{"http://" + p.http, hostHTTP, "/100k", proxiedLargeSize},
		{"https://localhost:" + port(p.https), hostHTTPS, "/1k", proxiedSmallSize},
	}
	if p.static {
		wants = append(wants, want{"http://" + p.http, hostHTTP, "/static/" + staticSmall, staticSmallSize},
			want{"http://" + p.http, hostHTTP, "/static/" + staticLarge, staticLargeSize})
	}
	for _, w := range wants {
		resp, b, err := get(w.url+w.path, w.host)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("%s: %v", w.path, err))
		case resp.StatusCode != 200 || len(b) != w.size:
			problems = append(problems, fmt.Sprintf("%s%s: status %d, %d bytes (want 200, %d)", w.url, w.path, resp.StatusCode, len(b), w.size))
		}
	}
	if !p.direct {
		for _, scheme := range []string{"http", "https"} {
			url, host := "http://"+p.http, hostHTTP
			if scheme == "https" {
				url, host = "https://localhost:"+port(p.https), hostHTTPS
			}
			_, b, err := get(url+"/headers", host)
			var h http.Header
			if err == nil {
				err = json.Unmarshal(b, &h)
			}
			if err != nil {
				problems = append(problems, fmt.Sprintf("%s /headers: %v", scheme, err))
				continue
			}
			for name, ok := range map[string]bool{
				"Host":              h.Get("Host") == host,
				"X-Real-IP":         h.Get("X-Real-Ip") == "127.0.0.1",
				"X-Forwarded-For":   strings.Contains(strings.Join(h.Values("X-Forwarded-For"), ","), "127.0.0.1"),
				"X-Forwarded-Proto": h.Get("X-Forwarded-Proto") == scheme,
			} {
				if !ok {
					problems = append(problems, fmt.Sprintf("%s: upstream header %s is %q", scheme, name, h.Values(name)))
				}
			}
		}
	}
	if len(problems) == 0 {
		return "ok"
	}
	slices.Sort(problems)
	return strings.Join(problems, "; ")
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = append(lines[:n], "…")
	}
	return strings.Join(lines, " / ")
}

// dns runs the DNS scenario when bench/dns exists (it is built on its own):
// `go run ./bench/dns -out DIR [-quick]`, its results going to DIR
// (bench/results/dns), bounded in time.
func (r *runner) dns(root string) {
	if _, err := os.Stat(filepath.Join(root, "bench", "dns")); err != nil {
		return
	}
	out := filepath.Join(r.o.out, "dns")
	args := []string{"run", "./bench/dns", "-out", out}
	if r.o.quick {
		args = append(args, "-quick")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	log.Printf("DNS scenario: go %s", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		r.res.Notes = append(r.res.Notes, "the DNS scenario (bench/dns) failed: "+err.Error())
		return
	}
	r.res.DNS = "dns/"
}
