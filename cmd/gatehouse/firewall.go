package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"

	"gatehouse/internal/firewall"
)

// cmdFirewall is `gatehouse firewall explain --from ADDR --to PROTO/PORT`
// and `gatehouse firewall unban ADDR`.
func cmdFirewall(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "unban" {
		return cmdUnban(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "explain" {
		return usageErr("firewall knows two commands: gatehouse firewall explain --from 203.0.113.5 --to tcp/22 [-c FILE], gatehouse firewall unban 203.0.113.5 [-c FILE]")
	}
	flags := flag.NewFlagSet("firewall explain", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cf := commonFlags{warn: stderr}
	cf.register(flags)
	from := flags.String("from", "", "source `address` of the traffic")
	to := flags.String("to", "", "`proto/port` it is sent to, e.g. tcp/22 or udp/53")
	if _, err := parseInterleaved(flags, args[1:]); err != nil {
		return &exitError{code: 2, err: err}
	}
	src, err := netip.ParseAddr(*from)
	if err != nil {
		return usageErr("--from %q is not an address", *from)
	}
	proto, port, err := firewall.ParseTarget(*to)
	if err != nil {
		return usageErr("--to: %v", err)
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	p, err := firewall.Compile(cfg.Firewall)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	fmt.Fprint(stdout, firewall.Explain(p, src, proto.String(), port))
	return nil
}

// cmdUnban asks the running gatehouse, through its admin API, to lift the
// ban on a source.
func cmdUnban(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("firewall unban", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cf := commonFlags{warn: stderr}
	cf.register(flags)
	rest, err := parseInterleaved(flags, args)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if len(rest) != 1 {
		return usageErr("gatehouse firewall unban ADDRESS [-c FILE]: one address, the banned source")
	}
	src, err := netip.ParseAddr(rest[0])
	if err != nil {
		return usageErr("%q is not an address", rest[0])
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	var out struct {
		Source string `json:"source"`
	}
	if err := adminCall(cfg, cf, "/firewall/unban?source="+url.QueryEscape(src.String()), "the unban to: add one", &out); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "the ban on %s is lifted\n", out.Source)
	return nil
}
