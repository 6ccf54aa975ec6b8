package main

import (
	"context"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/journey"
	"gatehouse/internal/route"
)

// multiFlag collects a repeated flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// parseInterleaved parses flags that may come before or after positional
// arguments, as people type them: `gatehouse trace URL --dns ADDR`.
func parseInterleaved(flags *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := flags.Parse(args); err != nil {
			return nil, err
		}
		if flags.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, flags.Arg(0))
		args = flags.Args()[1:]
	}
}

func cmdTrace(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("trace", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var cf commonFlags
	cf.register(flags)
	dnsAddr := flags.String("dns", "", "DNS server `host:port` to ask (default: the system resolver)")
	caFile := flags.String("ca", "", "PEM `file` of extra roots to verify the server with")
	insecure := flags.Bool("insecure", false, "go on when the certificate does not verify (and say so)")
	asJSON := flags.Bool("json", false, "print the trace as JSON")
	token := flags.String("token", "", "trace `token` to send (default: this machine's, for hosts its config serves)")
	method := flags.String("X", "GET", "request `method`")
	var resolve multiFlag
	flags.Var(&resolve, "resolve", "pin `HOST:PORT:ADDR`, as curl does (repeatable)")
	pos, err := parseInterleaved(flags, args)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if len(pos) != 1 {
		return usageErr("trace takes one URL, e.g. gatehouse trace https://localhost:8443/")
	}
	o := journey.TraceOptions{DNS: *dnsAddr, Insecure: *insecure, Method: *method, Resolve: map[string]string{}}
	for _, r := range resolve {
		i := strings.LastIndexByte(r, ':')
		if i < 0 || strings.Count(r[:i], ":") < 1 {
			return usageErr("--resolve %q: write HOST:PORT:ADDR", r)
		}
		o.Resolve[r[:i]] = strings.Trim(r[i+1:], "[]")
	}

	// The local config and data directory, when there are any, let the
	// trace trust gatehouse's local CA and see the server's side.
	cfg, _ := cf.load()
	dir, _ := cf.dataDir(cfg)
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if pem, err := os.ReadFile(filepath.Join(dir, "ca", "root.crt")); err == nil {
		roots.AppendCertsFromPEM(pem)
	}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			return &exitError{code: 2, err: fmt.Errorf("reading --ca: %w", err)}
		}
		if !roots.AppendCertsFromPEM(pem) {
			return &exitError{code: 2, err: fmt.Errorf("--ca %s holds no PEM certificate", *caFile)}
		}
	}
	o.Roots = roots
	o.Token = *token
	if o.Token == "" && cfg != nil {
		// This machine's token goes only to hosts its own config serves,
		// never to other servers.
		if tok, err := os.ReadFile(filepath.Join(dir, "trace.token")); err == nil {
			o.Token = strings.TrimSpace(string(tok))
			o.TokenFor = servedBy(cfg)
		} else if cfg.Journey.Token != "" {
			o.Token, o.TokenFor = cfg.Journey.Token, servedBy(cfg)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res := journey.Trace(ctx, pos[0], o)
	if *asJSON {
		res.WriteJSON(stdout)
	} else {
		res.WriteText(stdout)
	}
	if !res.OK {
		return &exitError{code: 1, err: fmt.Errorf("the request did not complete its journey")}
	}
	return nil
}

// servedBy reports whether a host is one of cfg's sites, matched as the
// router matches it.
func servedBy(cfg *config.Config) func(string) bool {
	var specs []route.SiteSpec
	for _, s := range cfg.Sites {
		specs = append(specs, route.SiteSpec{Hosts: s.Hosts})
	}
	table, err := route.New(specs, route.Options{})
	if err != nil {
		return func(string) bool { return false }
	}
	return func(host string) bool { return table.Site(route.HostOnly(host)) != nil }
}
