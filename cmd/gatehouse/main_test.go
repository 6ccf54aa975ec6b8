package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"gatehouse/internal/firewall"
	"gatehouse/internal/gatetest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMain lets the test binary stand in for the gatehouse binary: with
// GATEHOUSE_BE_MAIN=1 it runs main, so tests can start real processes and
// send them signals.
func TestMain(m *testing.M) {
	if os.Getenv("GATEHOUSE_BE_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

func gatehouse(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "GATEHOUSE_BE_MAIN=1")
	return cmd
}

func TestValidateGolden(t *testing.T) {
	for _, tc := range []struct {
		name, config string
		code         int
	}{
		{"valid", "sites:\n  - hosts: [example.org]\n    routes: [{path: /, proxy: http://127.0.0.1:5000}]\n", 0},
		{"invalid", "listen:\n  https: [\":70000\"]\nsites:\n  - hosts: [example.org]\n    routes:\n      - path: /\n        proxi: http://127.0.0.1:5000\n", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "gatehouse.yaml")
			os.WriteFile(path, []byte(tc.config), 0o644)
			var out bytes.Buffer
			code := run([]string{"validate", "-c", path}, &out, &out)
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
			got := strings.ReplaceAll(out.String(), dir, "DIR")
			golden := filepath.Join("testdata", "validate_"+tc.name+".golden")
			if *update {
				os.MkdirAll("testdata", 0o755)
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(golden)
			if got != string(want) {
				t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"frobnicate"}, &out, &out); code != 2 || !strings.Contains(out.String(), "unknown command") {
		t.Errorf("unknown command: %d %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"version"}, &out, &out); code != 0 || !strings.HasPrefix(out.String(), "gatehouse ") {
		t.Errorf("version: %d %q", code, out.String())
	}
}

// TestSIGTERMFinishesInFlight runs gatehouse as a process, sends SIGTERM
// while a request is in flight, and expects the request to complete and
// the process to exit 0.
func TestSIGTERMFinishesInFlight(t *testing.T) {
	started := make(chan struct{}, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(700 * time.Millisecond)
		io.WriteString(w, "finished")
	}))
	defer backend.Close()
	port := freePort(t)
	dir := t.TempDir()
	cfg := fmt.Sprintf(`
listen: {http: ["127.0.0.1:%d"], https: ["127.0.0.1:0"]}
log: {format: text}
sites:
  - hosts: [example.org]
    tls: off
    routes: [{path: /, proxy: %s}]
`, port, backend.URL)
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(cfg), 0o644)
	cmd := startRun(t, "-c", path, "--data", filepath.Join(dir, "data"))

	type result struct {
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "example.org"
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{string(b), err}
	}()
	select {
	case <-started:
	case r := <-done:
		t.Fatalf("the request did not reach the backend: %q %v", r.body, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("the request did not reach the backend")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	r := <-done
	if r.err != nil || r.body != "finished" {
		t.Errorf("in-flight request: %q %v", r.body, r.err)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v, want 0", err)
	}
}

// startRun starts `gatehouse run` with args and waits until it says it
// started; the rest of its stderr is drained. It is killed when the test
// ends, if it still runs.
func startRun(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := gatehouse(append([]string{"run"}, args...)...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := bufio.NewScanner(stderr)
	var seen strings.Builder
	for {
		if !lines.Scan() {
			t.Fatalf("gatehouse run ended before it started:\n%s", seen.String())
		}
		if strings.Contains(lines.Text(), "gatehouse started") {
			break
		}
		seen.WriteString(lines.Text() + "\n")
	}
	go io.Copy(io.Discard, stderr)
	return cmd
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestWelcome checks what a new user sees on the first run of the embedded
// default: the URL to open and how to trust the local CA.
func TestWelcome(t *testing.T) {
	dir := t.TempDir()
	cmd := gatehouse("--data", dir)
	cmd.Dir = dir // no ./gatehouse.yaml there: the embedded default
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	var seen strings.Builder
	lines := bufio.NewScanner(stderr)
	for lines.Scan() {
		seen.WriteString(lines.Text() + "\n")
		if strings.Contains(lines.Text(), "gatehouse started") || strings.Contains(lines.Text(), "gatehouse:") {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	out := seen.String()
	if strings.Contains(out, "address already in use") {
		t.Skip("the embedded default's ports are taken on this machine: " + out)
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`https://localhost:8443/ +\(http://localhost:8080/ redirects here; certificate: internal\)`),
		regexp.MustCompile(`curl --cacert .*/ca/root\.crt https://localhost:8443/`),
		regexp.MustCompile(`'gatehouse ca' prints it`),
	} {
		if !want.MatchString(out) {
			t.Errorf("welcome lacks %s:\n%s", want, out)
		}
	}
}

func TestExplainGolden(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(`
sites:
  - hosts: [example.org, "*.example.org"]
    routes:
      - path: /api
        proxy:
          to: [http://127.0.0.1:5000, http://127.0.0.1:5001]
          headers: {set: {Authorization: "Bearer ${GH_EXPLAIN_SECRET:-s3cret}"}}
      - {path: /, static: `+dir+`}
  - hosts: [plain.example.org]
    tls: off
    routes: [{path: /, respond: hi}, {path: /healthz, access_log: false, respond: ok}]
`), 0o644)
	fwPath := filepath.Join(dir, "firewall.yaml")
	os.WriteFile(fwPath, []byte(`
firewall:
  default: deny
  rules:
    - {allow: tcp, ports: [443], from: [198.51.100.0/24], description: office}
sites:
  - hosts: [example.org]
    routes: [{path: /, respond: hi}]
`), 0o644)
	for _, tc := range []struct {
		name string
		args []string
		code int
	}{
		{"proxy", []string{"https://example.org/api/users"}, 0},
		{"redirect", []string{"http://www.example.org/index.html"}, 0},
		{"plain", []string{"http://plain.example.org/", "--from", "192.0.2.1"}, 0},
		{"quiet", []string{"http://plain.example.org/healthz", "--from", "192.0.2.1"}, 0},
		{"unknown", []string{"https://nobody.example/"}, 1},
		{"tls_off", []string{"https://plain.example.org/"}, 1},
		{"firewall_deny", []string{"-c", fwPath, "https://example.org/", "--from", "203.0.113.9"}, 1},
		{"firewall_allow", []string{"-c", fwPath, "https://example.org/", "--from", "198.51.100.7"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			code := run(append([]string{"explain", "-c", path}, tc.args...), &out, &out)
			if code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, out.String())
			}
			got := strings.ReplaceAll(out.String(), dir, "DIR")
			if strings.Contains(got, "s3cret") {
				t.Fatalf("explain shows a secret:\n%s", got)
			}
			golden := filepath.Join("testdata", "explain_"+tc.name+".golden")
			if *update {
				os.WriteFile(golden, []byte(got), 0o644)
			}
			want, _ := os.ReadFile(golden)
			if got != string(want) {
				t.Errorf("output differs from %s:\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}

func TestFirewallExplainCLI(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte("firewall:\n  default: deny\n  rules:\n    - {allow: tcp, ports: [80, 443], description: web}\n    - {allow: tcp, ports: [22], from: [198.51.100.0/24], description: office ssh}\n"), 0o644)
	for _, tc := range []struct{ from, to, want string }{
		{"203.0.113.5", "tcp/22", `tcp/22 from 203.0.113.5: denied by the default`},
		{"198.51.100.7", "tcp/22", `tcp/22 from 198.51.100.7: allowed by rule 2 "office ssh"`},
		{"203.0.113.5", "tcp/443", `tcp/443 from 203.0.113.5: allowed by rule 1 "web"`},
	} {
		var out bytes.Buffer
		if code := run([]string{"firewall", "explain", "-c", path, "--from", tc.from, "--to", tc.to}, &out, &out); code != 0 {
			t.Errorf("exit %d: %s", code, out.String())
		}
		if !strings.HasPrefix(out.String(), tc.want) {
			t.Errorf("--from %s --to %s:\n%s\nwant a first line %q", tc.from, tc.to, out.String(), tc.want)
		}
	}
}

// TestFirewallUnbanCLI lifts, through the admin API, a ban the instance
// took back from its data folder.
func TestFirewallUnbanCLI(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	os.MkdirAll(filepath.Join(data, "firewall"), 0o700)
	ban := firewall.Ban{Source: netip.MustParsePrefix("127.0.0.41/32"), Until: time.Now().Add(time.Hour), Reason: firewall.ViolationHTTPError}
	file, err := firewall.EncodeBans([]firewall.Ban{ban})
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(data, "firewall", "bans.json"), file, 0o600)
	cfg := "data: " + data + "\nadmin: {listen: 127.0.0.1:0, token: tok}\nfirewall: {bans: {after: 5}}\nsites:\n  - hosts: [example.org]\n    routes: [{path: /, respond: hi}]\n"
	g := gatetest.Start(t, cfg)
	if len(g.Status()["firewall"].(firewall.Status).Bans) != 1 {
		t.Fatalf("the kept ban is not in force: %+v", g.Status()["firewall"])
	}
	// The command reads the admin address and token from the config.
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(strings.Replace(cfg, "127.0.0.1:0", g.AdminAddr(), 1)), 0o600)
	for _, tc := range []struct {
		code int
		want string
	}{{0, "the ban on 127.0.0.41 is lifted"}, {1, "127.0.0.41 is not banned"}} {
		var out bytes.Buffer
		if code := run([]string{"firewall", "unban", "127.0.0.41", "-c", path}, &out, &out); code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("exit %d, want %d: %s (want %q)", code, tc.code, out.String(), tc.want)
		}
	}
	if bans := g.Status()["firewall"].(firewall.Status).Bans; len(bans) != 0 {
		t.Errorf("bans after the unban: %+v", bans)
	}
	var out bytes.Buffer
	if code := run([]string{"firewall", "unban", "nope", "-c", path}, &out, &out); code != 2 {
		t.Errorf("a bad address: exit %d: %s", code, out.String())
	}
}

// TestReloadCLI asks a running instance to read its config again, which
// works, then fails with the config's problems listed.
func TestReloadCLI(t *testing.T) {
	g := gatetest.Start(t, "admin: {listen: 127.0.0.1:0, token: tok}\nsites:\n  - hosts: [example.org]\n    routes: [{path: /, respond: hi}]\n")
	path := filepath.Join(t.TempDir(), "gatehouse.yaml")
	os.WriteFile(path, []byte("admin: {listen: "+g.AdminAddr()+", token: tok}\n"), 0o600)
	var out bytes.Buffer
	if code := run([]string{"reload", "-c", path}, &out, &out); code != 0 || !strings.Contains(out.String(), "gatehouse reloaded its config") {
		t.Errorf("exit %d: %s", code, out.String())
	}
	os.WriteFile(g.Config.File, []byte("sites:\n  - hosts: [example.org]\n    routes: [{path: /, proxi: x}]\n"), 0o600)
	out.Reset()
	if code := run([]string{"reload", "-c", path}, &out, &out); code != 1 || !strings.Contains(out.String(), "the running config is unchanged") || !strings.Contains(out.String(), `unknown key "proxi"`) {
		t.Errorf("a bad config: exit %d: %s", code, out.String())
	}
}

// TestWatchReloads runs gatehouse with --watch and edits its config: the
// new route answers without a signal or a command.
func TestWatchReloads(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "gatehouse.yaml")
	write := func(body string) {
		os.WriteFile(path+".tmp", []byte(fmt.Sprintf("listen: {http: [\"127.0.0.1:%d\"], https: [\"127.0.0.1:0\"]}\nsites:\n  - hosts: [example.org]\n    tls: off\n    routes: [{path: /, respond: %s}]\n", port, body)), 0o644)
		os.Rename(path+".tmp", path) // as editors and config managers save
	}
	write("before")
	startRun(t, "--watch", "-c", path, "--data", filepath.Join(dir, "data"))
	get := func() string {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", port), nil)
		req.Host = "example.org"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if got := get(); got != "before" {
		t.Fatalf("before the edit: %q", got)
	}
	write("after")
	deadline := time.Now().Add(5 * time.Second)
	for get() != "after" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if got := get(); got != "after" {
		t.Errorf("after the edit: %q", got)
	}
}

// TestAccessLogFile runs gatehouse with the access log in a file and
// rotates it as logrotate does: the lines written before SIGUSR1 are in
// the moved file, those after it in the new one, and those still gathered
// at SIGTERM are written before the process ends.
func TestAccessLogFile(t *testing.T) {
	port := freePort(t)
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	path := filepath.Join(dir, "gatehouse.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf("listen: {http: [\"127.0.0.1:%d\"], https: [\"127.0.0.1:0\"]}\nlog: {access: %q}\nsites:\n  - hosts: [example.org]\n    tls: off\n    routes: [{path: /, respond: hi}]\n", port, logPath)), 0o644)
	cmd := startRun(t, "-c", path, "--data", filepath.Join(dir, "data"))
	get := func(p string) {
		t.Helper()
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, p), nil)
		req.Host = "example.org"
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for _, p := range []string{"/a", "/b", "/c"} {
		get(p)
	}
	// A line is recorded just after its response is written; the wait is
	// well under the 0.1 s after which gathered lines go out anyway.
	time.Sleep(20 * time.Millisecond)
	if err := os.Rename(logPath, logPath+".1"); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGUSR1)
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := os.Stat(logPath); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("SIGUSR1 did not reopen the access log")
		}
		time.Sleep(10 * time.Millisecond)
	}
	get("/d")
	get("/e")
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("gatehouse: %v", err)
	}
	paths := func(file string) []string {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
			var v struct{ Msg, Path string }
			if err := json.Unmarshal([]byte(l), &v); err != nil || v.Msg != "request" {
				t.Errorf("%s: line %q (%v)", filepath.Base(file), l, err)
			}
			out = append(out, v.Path)
		}
		return out
	}
	if got := paths(logPath + ".1"); !slices.Equal(got, []string{"/a", "/b", "/c"}) {
		t.Errorf("rotated file: %q", got)
	}
	if got := paths(logPath); !slices.Equal(got, []string{"/d", "/e"}) {
		t.Errorf("new file: %q", got)
	}
}
