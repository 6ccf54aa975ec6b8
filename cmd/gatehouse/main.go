// Command gatehouse is an edge server: DNS, firewall, TLS with managed
// certificates, routing and a reverse proxy, from one config file.
//
// Exit codes: 0 success, 1 a runtime failure, 2 a usage or config error.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
)

const usage = `gatehouse — an edge server: DNS, firewall, HTTPS and reverse proxy in one config

Usage:
  gatehouse [run] [-c FILE] [--data DIR]   run (./gatehouse.yaml, else the embedded default)
  gatehouse validate -c FILE               check a config and print every problem
  gatehouse reload [-c FILE]               make the running gatehouse read its config again
  gatehouse trace URL [--dns ADDR]         walk a request's journey: DNS, firewall, TCP, TLS, proxy, app
  gatehouse explain [-c FILE] URL [--from ADDR]  what the config does with a request, without running
  gatehouse firewall explain --from ADDR --to tcp/22   which rule decides, from the config alone
  gatehouse firewall unban ADDR [-c FILE]              lift a ban on the running gatehouse
  gatehouse import nginx FILE [-o OUT]     convert an nginx config (run -c also runs nginx files as they are)
  gatehouse ca [--data DIR]                print the local CA's root certificate (PEM)
  gatehouse certs [--data DIR] [--json]    list certificates: names, issuer, expiry, next renewal, last error
  gatehouse version                        print version and build information

Run 'gatehouse COMMAND -h' for a command's flags.
`

// exitError carries an exit code with its message.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func usageErr(format string, args ...any) error {
	return &exitError{code: 2, err: fmt.Errorf(format, args...)}
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && args[0] != "" && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "run":
		err = cmdRun(args, stderr)
	case "firewall":
		err = cmdFirewall(args, stdout, stderr)
	case "explain":
		err = cmdExplain(args, stdout, stderr)
	case "import":
		err = cmdImport(args, stdout, stderr)
	case "trace":
		err = cmdTrace(args, stdout, stderr)
	case "reload":
		err = cmdReload(args, stdout, stderr)
	case "validate":
		err = cmdValidate(args, stdout, stderr)
	case "ca":
		err = cmdCA(args, stdout)
	case "certs":
		err = cmdCerts(args, stdout)
	case "version":
		cmdVersion(stdout)
	case "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "gatehouse: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	if err == nil {
		return 0
	}
	fmt.Fprintf(stderr, "gatehouse: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

func cmdVersion(w io.Writer) {
	version, goVersion, rev := "(devel)", "", ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		goVersion = bi.GoVersion
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	fmt.Fprintf(w, "gatehouse %s\n", version)
	if rev != "" {
		fmt.Fprintf(w, "commit %s\n", rev)
	}
	fmt.Fprintf(w, "built with %s\n", goVersion)
}
