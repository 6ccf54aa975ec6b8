package test

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gatehouse/internal/gatetest"
	"gatehouse/internal/systest"
)

// TestDemoInBrowser is the first run as a person makes it: the embedded
// default, its local CA root trusted in the browser's store the way the
// welcome text says, and https://localhost:PORT/ opened in Chromium. The
// page must describe its own journey, including what its script fetched.
func TestDemoInBrowser(t *testing.T) {
	systest.Program(t, "chromium", "chromium")
	systest.Program(t, "certutil", "libnss3-tools")
	g := gatetest.StartDefault(t)

	home := t.TempDir()
	nssdb := filepath.Join(home, ".pki", "nssdb")
	os.MkdirAll(nssdb, 0o700)
	root := filepath.Join(g.DataDir, "ca", "root.crt")
	for _, args := range [][]string{
		{"-N", "-d", "sql:" + nssdb, "--empty-password"},
		{"-A", "-d", "sql:" + nssdb, "-t", "C,,", "-n", "gatehouse", "-i", root},
	} {
		if out, err := exec.Command("certutil", args...).CombinedOutput(); err != nil {
			t.Fatalf("certutil %v: %v\n%s", args, err, out)
		}
	}
	_, port, _ := net.SplitHostPort(g.HTTPS)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+filepath.Join(home, "profile"), "--virtual-time-budget=5000", "--dump-dom",
		"https://localhost:"+port+"/")
	cmd.Env = append(os.Environ(), "HOME="+home)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	dom := string(out)
	for _, want := range []string{
		"It works: this page came through gatehouse",
		`<code id="x-forwarded-proto">https</code>`,
		`<code id="x-real-ip">127.0.0.1</code>`,
		"TLS 1.3, TLS_", // the journey's TLS step: version and cipher
		`route <code id="route">/</code>`,
		`"x_forwarded_proto": "https"`, // the script's fetch of the JSON API
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("page lacks %q; DOM:\n%s", want, dom)
		}
	}
}
