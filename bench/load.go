package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// loadResult is what one load-generator run reports.
type loadResult struct {
	requests int64
	errors   int64  // non-2xx answers and socket errors
	kinds    string // the errors by kind, as the tool names them
	rps      float64
	p50, p99 time.Duration // zero when the tool does not report them
}

// runTool runs a load generator pinned to the load CPU, bounded by the
// run's own duration plus a margin.
func runTool(d time.Duration, argv ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	argv = append([]string{"taskset", "-c", strconv.Itoa(loadCPU)}, argv...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out.String())
	}
	return out.String(), nil
}

// wrk runs wrk with one thread and conns connections against url.
func wrk(d time.Duration, conns int, url, host string, extra ...string) (loadResult, error) {
	args := []string{"wrk", "-t1", "-c" + strconv.Itoa(conns), "-d" + wrkDuration(d), "--latency", "-H", "Host: " + host}
	args = append(append(args, extra...), url)
	out, err := runTool(d, args...)
	if err != nil {
		return loadResult{}, err
	}
	return parseWrk(out)
}

func wrkDuration(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.Itoa(int(d/time.Second)) + "s"
	}
	return strconv.Itoa(int(d/time.Millisecond)) + "ms"
}

var (
	wrkRequests = regexp.MustCompile(`(\d+) requests in`)
	wrkRPS      = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	wrkNon2xx   = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	wrkSocket   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	wrkPct      = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
)

func parseWrk(out string) (loadResult, error) {
	var r loadResult
	m := wrkRequests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in wrk output:\n%s", out)
	}
	r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	if m := wrkRPS.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	var kinds []string
	if m := wrkNon2xx.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		r.errors += n
		kinds = append(kinds, fmt.Sprintf("non-2xx/3xx %d", n))
	}
	if m := wrkSocket.FindStringSubmatch(out); m != nil {
		for i, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
			if n > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", [...]string{"connect", "read", "write", "timeout"}[i], n))
			}
		}
	}
	r.kinds = strings.Join(kinds, ", ")
	for _, m := range wrkPct.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[3]]
		d := time.Duration(v * float64(unit))
		if m[1] == "50" {
			r.p50 = d
		} else {
			r.p99 = d
		}
	}
	return r, nil
}

var (
	h2Finished = regexp.MustCompile(`finished in [\d.]+\w+, ([\d.]+) req/s`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
	h2Status   = regexp.MustCompile(`status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// h2load runs h2load over TLS with ALPN h2: conns connections, streams
// concurrent streams each.
func h2load(d time.Duration, conns, streams int, url string) (loadResult, error) {
	out, err := runTool(d, "h2load", "-t1", "-c"+strconv.Itoa(conns), "-m"+strconv.Itoa(streams),
		"-D", strconv.Itoa(int(d/time.Second)), url)
	if err != nil {
		return loadResult{}, err
	}
	return parseH2load(out)
}

func parseH2load(out string) (loadResult, error) {
	var r loadResult
	m := h2Requests.FindStringSubmatch(out)
	if m == nil {
		return r, fmt.Errorf("no request count in h2load output:\n%s", out)
	}
	r.requests, _ = strconv.ParseInt(m[2], 10, 64)
	failed, _ := strconv.ParseInt(m[4], 10, 64)
	errored, _ := strconv.ParseInt(m[5], 10, 64)
	r.errors = failed + errored
	if m := h2Status.FindStringSubmatch(out); m != nil {
		for _, s := range m[2:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.errors += n
		}
	}
	if m := h2Finished.FindStringSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	if r.requests == 0 {
		return r, fmt.Errorf("h2load completed no request:\n%s", out)
	}
	return r, nil
}
