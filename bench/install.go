package main

import (
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
)

const caddyModule = "github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9"

// debianTools maps each command the bench runs to the package that has it.
var debianTools = []struct{ cmd, pkg string }{
	{"nginx", "nginx"},
	{"haproxy", "haproxy"},
	{"wrk", "wrk"},
	{"h2load", "nghttp2-client"},
	{"taskset", "util-linux"},
}

// install puts the peers in place when they are missing: Debian packages
// with apt-get (their services are not started; the bench runs each with
// its own config) and Caddy with go install into bench/.bin.
func install(root string) error {
	var missing []string
	for _, t := range debianTools {
		if _, err := exec.LookPath(t.cmd); err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) > 0 {
		log.Printf("installing %s with apt-get", strings.Join(missing, " "))
		if err := sh(nil, "apt-get", "update", "-qq"); err != nil {
			return err
		}
		args := append([]string{"install", "-y", "-qq", "--no-install-recommends"}, missing...)
		if err := sh([]string{"DEBIAN_FRONTEND=noninteractive"}, "apt-get", args...); err != nil {
			return err
		}
	}
	caddy := caddyPath(root)
	if caddyVersion(caddy) == "v2.11.9" {
		return nil
	}
	log.Printf("installing Caddy: go install %s", caddyModule)
	return sh([]string{"GOBIN=" + filepath.Dir(caddy)}, "go", "install", caddyModule)
}

// caddyVersion reads the module version from the binary's build info
// (`caddy version` says "unknown" for a go-installed binary).
func caddyVersion(bin string) string {
	out, err := exec.Command(bin, "build-info").Output()
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 && f[0] == "mod" && f[1] == "github.com/caddyserver/caddy/v2" {
			return f[2]
		}
	}
	return ""
}

func caddyPath(root string) string { return filepath.Join(root, "bench", ".bin", "caddy") }

func sh(env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// firstLine runs a version command and keeps its first line.
func firstLine(name string, args ...string) string {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil && len(out) == 0 {
		return "unknown (" + err.Error() + ")"
	}
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

func versions(e *env, root string) map[string]string {
	rev, _ := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	dirty := ""
	if out, _ := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); len(out) > 0 {
		dirty = " (with uncommitted changes)"
	}
	return map[string]string{
		"gatehouse": "commit " + strings.TrimSpace(string(rev)) + dirty,
		"nginx":     firstLine("nginx", "-v"),
		"haproxy":   firstLine("haproxy", "-v"),
		"caddy":     caddyVersion(e.caddy) + " (" + caddyModule + ")",
		"go":        runtime.Version(),
		"wrk":       firstLine("wrk", "-v"),
		"h2load":    firstLine("h2load", "--version"),
		"openssl":   firstLine("openssl", "version"),
	}
}

func machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	kernel := firstLine("uname", "-r")
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("%d CPUs (%s), Linux %s, load average at start %s", runtime.NumCPU(), cpu, kernel,
		strings.Join(strings.Fields(string(load))[:3], " "))
}
