package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/netip"

	"gatehouse/internal/instance"
)

// cmdExplain says what the config would do with a request, without running.
func cmdExplain(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("explain", flag.ContinueOnError)
	flags.SetOutput(stderr)
	cf := commonFlags{warn: stderr}
	cf.register(flags)
	from := flags.String("from", "203.0.113.5", "client `address` to decide the firewall for")
	asJSON := flags.Bool("json", false, "print JSON")
	pos, err := parseInterleaved(flags, args)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if len(pos) != 1 {
		return usageErr("explain takes one URL: gatehouse explain -c gatehouse.yaml https://example.org/api")
	}
	src, err := netip.ParseAddr(*from)
	if err != nil {
		return usageErr("--from %q is not an address", *from)
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	steps, err := instance.Explain(cfg, pos[0], src)
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(steps)
	} else {
		for i, s := range steps {
			mark := " "
			if !s.OK {
				mark = "✗"
			}
			fmt.Fprintf(stdout, "%s%2d %-9s %s\n", mark, i+1, s.Name, s.Text)
		}
	}
	if len(steps) > 0 && !steps[len(steps)-1].OK {
		return &exitError{code: 1, err: fmt.Errorf("this request would not reach a handler")}
	}
	return nil
}
