package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"

	"gatehouse/internal/firewall"
)

// cmdFirewall is `gatehouse firewall explain --from ADDR --to PROTO/PORT`.
func cmdFirewall(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "explain" {
		return usageErr("firewall knows one command: gatehouse firewall explain --from 203.0.113.5 --to tcp/22 [-c FILE]")
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
