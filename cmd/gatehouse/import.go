package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"gatehouse/internal/config"
	"gatehouse/internal/nginx"
)

// cmdImport converts an nginx config to gatehouse YAML.
func cmdImport(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "nginx" {
		return usageErr("import knows one format: gatehouse import nginx /etc/nginx/nginx.conf [-o FILE] [--acme] [--email ADDRESS]")
	}
	flags := flag.NewFlagSet("import nginx", flag.ContinueOnError)
	flags.SetOutput(stderr)
	out := flags.String("o", "", "write the YAML to `file` instead of standard output")
	acme := flags.Bool("acme", false, "use ACME certificates instead of certbot's files")
	email := flags.String("email", "", "ACME account `address` (with --acme)")
	pos, err := parseInterleaved(flags, args[1:])
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	if len(pos) != 1 {
		return usageErr("import nginx takes one file: the nginx.conf or a sites-enabled file")
	}
	yaml, warnings, err := nginx.Convert(pos[0], nginx.Options{ACME: *acme, Email: *email})
	if err != nil {
		return &exitError{code: 2, err: err}
	}
	for _, w := range warnings {
		fmt.Fprintln(stderr, w.String())
	}
	// The result must be a config gatehouse accepts; say so when it is
	// not (a certificate file that is not on this machine, say).
	if _, err := config.Parse(pos[0]+" (converted)", yaml); err != nil {
		fmt.Fprintf(stderr, "note: the converted config does not validate on this machine yet:\n%v\n", err)
	}
	if *out == "" {
		_, err = stdout.Write(yaml)
		return err
	}
	if err := os.WriteFile(*out, yaml, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %s (%d warnings, also written as comments in it)\n", *out, len(warnings))
	return nil
}

// loadConfigFile reads a config file, converting it first when it is an
// nginx config, so `gatehouse run -c site.conf` works on nginx files.
func loadConfigFile(path string, warn io.Writer) (*config.Config, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if !nginx.Detect(src) {
		return config.Parse(path, src)
	}
	yaml, warnings, err := nginx.Convert(path, nginx.Options{})
	if err != nil {
		return nil, config.ErrorList{{Pos: config.Pos{File: path}, Msg: err.Error()}}
	}
	for _, w := range warnings {
		if !w.Covered {
			fmt.Fprintln(warn, "nginx:", w.String())
		}
	}
	cfg, err := config.Parse(path+" (converted from nginx)", yaml)
	if cfg != nil {
		cfg.File = path
	}
	return cfg, err
}
