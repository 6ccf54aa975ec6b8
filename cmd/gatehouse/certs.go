package main

import (
	"encoding/json"
	"flag"
	"io"
	"time"

	"gatehouse/internal/certs"
	"gatehouse/internal/config"
)

// cmdCerts lists the certificates in the data directory: names, issuer,
// expiry, next renewal and the last error, as the running gatehouse left
// them in storage.
func cmdCerts(args []string, stdout io.Writer) error {
	flags := flag.NewFlagSet("certs", flag.ContinueOnError)
	var cf commonFlags
	cf.register(flags)
	asJSON := flags.Bool("json", false, "print JSON instead of a table")
	if err := flags.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	var cfg *config.Config
	if cf.config != "" {
		var err error
		if cfg, err = cf.load(); err != nil {
			return err
		}
	}
	dir, err := cf.dataDir(cfg)
	if err != nil {
		return err
	}
	infos, err := certs.Inventory(dir)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if infos == nil {
			infos = []certs.CertInfo{}
		}
		return enc.Encode(infos)
	}
	return certs.WriteInventory(stdout, infos, time.Now())
}
