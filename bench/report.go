package main

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

type sample struct {
	CPUus     float64 // server CPU µs per unit
	RPS       float64
	P50us     float64
	P99us     float64
	Requests  int64
	Errors    int64
	ErrorKind string `json:",omitempty"` // the errors by kind, when the tool says
	PeakRSSKB int64
}

type memSample struct {
	Scenario  string
	Peer      string
	Opened    int
	BeforeKB  int64
	AfterKB   int64
	KBPerConn float64
}

type scenarioResult struct {
	ID, Title, Unit string
	Samples         map[string][]sample
}

type results struct {
	Started, Finished time.Time
	Quick             bool
	Rounds            int
	Duration          string
	Machine           string
	Versions          map[string]string
	Scenarios         []*scenarioResult
	Memory            []*memSample
	Checks            map[string]string
	Notes             []string
	Profile           string `json:"-"`
	DNS               string // folder of the DNS scenario's results, when it ran
}

func (r *results) scenario(id, title, unit string) {
	if r.Checks == nil {
		r.Checks = map[string]string{}
	}
	r.Scenarios = append(r.Scenarios, &scenarioResult{ID: id, Title: title, Unit: unit, Samples: map[string][]sample{}})
}

func (r *results) find(id string) *scenarioResult {
	for _, s := range r.Scenarios {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func (r *results) add(id, peer string, s sample) {
	sc := r.find(id)
	sc.Samples[peer] = append(sc.Samples[peer], s)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func field(ss []sample, f func(sample) float64) float64 {
	var xs []float64
	for _, s := range ss {
		xs = append(xs, f(s))
	}
	return median(xs)
}

func (sc *scenarioResult) cpu(peer string) float64 {
	return field(sc.Samples[peer], func(s sample) float64 { return s.CPUus })
}

// peerOrder lists the peers with samples in the order of peers().
func (sc *scenarioResult) peerOrder() []string {
	var out []string
	for _, p := range append(slices.Clone(proxies), "nginx", "gatehouse") {
		if _, ok := sc.Samples[p]; ok && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	return out
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

func num(v float64) string {
	switch {
	case v == 0:
		return "–"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func latency(us float64) string {
	switch {
	case us == 0:
		return "–"
	case us >= 1000:
		return fmt.Sprintf("%.2f ms", us/1000)
	default:
		return fmt.Sprintf("%.0f µs", us)
	}
}

func (r *results) write(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var b strings.Builder
	mode := fmt.Sprintf("%d interleaved rounds of %s per run", r.Rounds, r.Duration)
	if r.Quick {
		mode = "quick mode: " + mode + " (not for comparison)"
	}
	fmt.Fprintf(&b, "# gatehouse side-by-side benchmark\n\n")
	fmt.Fprintf(&b, "Run %s, %s, took %s.\n\n", r.Started.UTC().Format("2006-01-02 15:04 MST"), mode, r.Finished.Sub(r.Started).Round(time.Second))
	fmt.Fprintf(&b, "Machine: %s. The machine is shared (other work may run beside the bench): absolute figures move between runs; the ratios within one run are what count.\n\n", r.Machine)
	fmt.Fprintf(&b, "Each server under test runs on one core: pinned to CPU %d with taskset, nginx `worker_processes 1`, HAProxy `nbthread 1`, Go programs `GOMAXPROCS=1`. wrk/h2load, the backend and the idle client are pinned to CPU %d. The figure is the server process's CPU time (utime+stime from /proc/PID/stat, the whole process tree for nginx) divided by the requests (or connections) completed; medians of the rounds. \"direct\" is the Go backend itself, hit without a proxy. \"go-stdlib\" is net/http's httputil.ReverseProxy (and http.FileServer) doing the same job.\n\n", serverCPU, loadCPU)

	b.WriteString("## CPU µs per request (lower is better)\n\n")
	cols := []string{"direct", "nginx", "haproxy", "caddy", "go-stdlib", "gatehouse"}
	b.WriteString("| scenario | " + strings.Join(cols, " | ") + " | gatehouse ÷ nginx | gatehouse ÷ direct |\n|---|" + strings.Repeat("---:|", len(cols)+2) + "\n")
	for _, sc := range r.Scenarios {
		if len(sc.Samples) == 0 {
			continue
		}
		row := []string{sc.ID}
		for _, c := range cols {
			row = append(row, num(sc.cpu(c)))
		}
		row = append(row, ratio(sc.cpu("gatehouse"), sc.cpu("nginx")), ratio(sc.cpu("gatehouse"), sc.cpu("direct")))
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}
	b.WriteString("\n## Ratio to nginx (CPU per request, same run)\n\n")
	b.WriteString("| scenario | " + strings.Join(cols, " | ") + " |\n|---|" + strings.Repeat("---:|", len(cols)) + "\n")
	for _, sc := range r.Scenarios {
		if len(sc.Samples) == 0 {
			continue
		}
		row := []string{sc.ID}
		for _, c := range cols {
			row = append(row, ratio(sc.cpu(c), sc.cpu("nginx")))
		}
		b.WriteString("| " + strings.Join(row, " | ") + " |\n")
	}

	if len(r.Memory) > 0 {
		b.WriteString("\n## Memory per idle keep-alive connection (RSS growth, KB)\n\n| peer | HTTP | HTTPS | connections open (HTTP / HTTPS) | RSS before → after, HTTP (MB) | HTTPS (MB) |\n|---|---:|---:|---:|---:|---:|\n")
		for _, p := range peers() {
			var h, s *memSample
			for _, m := range r.Memory {
				if m.Peer == p.name && m.Scenario == "idle-http" {
					h = m
				}
				if m.Peer == p.name && m.Scenario == "idle-https" {
					s = m
				}
			}
			if h == nil && s == nil {
				continue
			}
			kb := func(m *memSample) string {
				if m == nil {
					return "–"
				}
				return fmt.Sprintf("%.1f", m.KBPerConn)
			}
			opened := func(m *memSample) string {
				if m == nil {
					return "–"
				}
				return fmt.Sprint(m.Opened)
			}
			span := func(m *memSample) string {
				if m == nil {
					return "–"
				}
				return fmt.Sprintf("%.1f → %.1f", float64(m.BeforeKB)/1024, float64(m.AfterKB)/1024)
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s / %s | %s | %s |\n", p.name, kb(h), kb(s), opened(h), opened(s), span(h), span(s))
		}
	}

	b.WriteString("\n## Each scenario\n")
	for _, sc := range r.Scenarios {
		if len(sc.Samples) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### %s: %s\n\n", sc.ID, sc.Title)
		fmt.Fprintf(&b, "| peer | CPU µs/%s | rounds | × nginx | × direct | req/s | p50 | p99 | peak RSS MB | errors |\n|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n", sc.Unit)
		for _, p := range sc.peerOrder() {
			ss := sc.Samples[p]
			var rounds []string
			var errs int64
			for _, s := range ss {
				rounds = append(rounds, num(s.CPUus))
				errs += s.Errors
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.0f | %s | %s | %.1f | %d |\n", p, num(sc.cpu(p)), strings.Join(rounds, ", "),
				ratio(sc.cpu(p), sc.cpu("nginx")), ratio(sc.cpu(p), sc.cpu("direct")),
				field(ss, func(s sample) float64 { return s.RPS }),
				latency(field(ss, func(s sample) float64 { return s.P50us })),
				latency(field(ss, func(s sample) float64 { return s.P99us })),
				field(ss, func(s sample) float64 { return float64(s.PeakRSSKB) })/1024, errs)
		}
		if sc.ID == "routes-10k" {
			if h1 := r.find("h1-1k"); h1 != nil {
				fmt.Fprintf(&b, "\nFor reference, in this run with one site (h1-1k): nginx %s µs, gatehouse %s µs per request.\n", num(h1.cpu("nginx")), num(h1.cpu("gatehouse")))
			}
		}
		if strings.HasPrefix(sc.ID, "h2") {
			b.WriteString("\nh2load reports no percentiles; req/s and CPU only.\n")
		}
	}

	b.WriteString("\n## Checks before measuring\n\nEach peer was asked for /1k, /100k (HTTP and HTTPS), the static files, and /headers, which the backend answers with the headers it received (Host, X-Real-IP, X-Forwarded-For, X-Forwarded-Proto must be as the seed's nginx config sets them).\n\n")
	for _, p := range peers() {
		if c, ok := r.Checks[p.name]; ok {
			fmt.Fprintf(&b, "- %s: %s\n", p.name, c)
		}
	}
	if len(r.Notes) > 0 {
		b.WriteString("\n## Notes\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
	}
	b.WriteString("\n## Versions\n\n")
	for _, k := range []string{"gatehouse", "nginx", "haproxy", "caddy", "go", "wrk", "h2load", "openssl"} {
		fmt.Fprintf(&b, "- %s: %s\n", k, r.Versions[k])
	}
	if r.Profile != "" {
		b.WriteString("\nWhere gatehouse's time goes under the h1-1k load: [profile.md](profile.md).\n")
		prof := "# gatehouse CPU and allocation profile, proxied HTTP/1.1 1 KB keep-alive\n\n" +
			"Taken from a gatehouse built with a pprof listener (bench/gatehouse-pprof), one core, under wrk -t1 -c50; the raw profiles are beside this file (`go tool pprof -http=: gatehouse-h1-1k.cpu.pprof`).\n\n" + r.Profile
		if err := os.WriteFile(filepath.Join(dir, "profile.md"), []byte(prof), 0o644); err != nil {
			return err
		}
	}
	if r.DNS != "" {
		fmt.Fprintf(&b, "\nDNS (authoritative, dnsperf): see [%s](%s).\n", r.DNS, r.DNS)
	}
	b.WriteString("\nChart: [chart.svg](chart.svg). Raw samples: [results.json](results.json).\n")
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	j, _ := json.MarshalIndent(r, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "results.json"), j, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "chart.svg"), []byte(r.svg()), 0o644)
}

var peerColors = map[string]string{
	"direct": "#9e9e9e", "nginx": "#2e7d32", "haproxy": "#1565c0", "caddy": "#6a1b9a",
	"go-stdlib": "#ef6c00", "gatehouse": "#c62828",
}

// svg draws one group of horizontal bars per scenario: CPU µs per unit,
// each bar labelled with its value and its ratio to nginx.
func (r *results) svg() string {
	const width, left, barH, gap, maxBar = 900, 110, 16, 3, 560
	var rows strings.Builder
	y := 50
	for _, sc := range r.Scenarios {
		order := sc.peerOrder()
		if len(order) == 0 {
			continue
		}
		var top float64
		for _, p := range order {
			top = max(top, sc.cpu(p))
		}
		fmt.Fprintf(&rows, `<text x="10" y="%d" font-weight="bold">%s</text>`+"\n", y, html.EscapeString(sc.ID+": "+sc.Title+" (CPU µs per "+sc.Unit+")"))
		y += 8
		for _, p := range order {
			v := sc.cpu(p)
			w := 0.0
			if top > 0 {
				w = v / top * maxBar
			}
			label := fmt.Sprintf("%s µs", num(v))
			if n := sc.cpu("nginx"); n > 0 && p != "nginx" {
				label += fmt.Sprintf("  (%.2f× nginx)", v/n)
			}
			fmt.Fprintf(&rows, `<text x="%d" y="%d" text-anchor="end">%s</text><rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d">%s</text>`+"\n",
				left-6, y+barH-4, p, left, y, w, barH, peerColors[p], float64(left)+w+6, y+barH-4, html.EscapeString(label))
			y += barH + gap
		}
		y += 26
	}
	head := fmt.Sprintf(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">
<rect width="100%%" height="100%%" fill="white"/>
<text x="10" y="22" font-size="15" font-weight="bold">gatehouse vs nginx, HAProxy, Caddy: server CPU per request, one core each (lower is better)</text>
<text x="10" y="38" fill="#555">%s — %s</text>
`, width, y, html.EscapeString(r.Started.UTC().Format("2006-01-02")), html.EscapeString(r.Machine))
	return head + rows.String() + "</svg>\n"
}
