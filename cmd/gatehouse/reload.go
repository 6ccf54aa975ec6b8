package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"gatehouse/internal/config"
	"gatehouse/internal/instance"
)

// cmdReload asks the running gatehouse, through its admin API, to read its
// config file again.
func cmdReload(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("reload", flag.ContinueOnError)
	flags.SetOutput(stderr)
	var cf commonFlags
	cf.register(flags)
	if err := flags.Parse(args); err != nil {
		return &exitError{code: 2, err: err}
	}
	cfg, err := cf.load()
	if err != nil {
		return err
	}
	if cfg.Admin.Listen == "" {
		return fmt.Errorf("%s has no admin API (admin.listen) to send the reload to: add one, or send SIGHUP to the gatehouse process", cfg.File)
	}
	resp, err := adminRequest(cfg, cf, "POST", "/reload")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Status   string   `json:"status"`
		Error    string   `json:"error"`
		Problems []string `json:"problems"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return fmt.Errorf("admin API answered %s", resp.Status)
	}
	if resp.StatusCode != http.StatusOK {
		msg := out.Error
		if len(out.Problems) > 0 {
			msg += ":\n" + strings.Join(out.Problems, "\n")
		}
		return &exitError{code: 1, err: fmt.Errorf("%s", msg)}
	}
	fmt.Fprintln(stdout, "gatehouse reloaded its config")
	return nil
}

// adminRequest sends an authenticated request to the admin API cfg names.
func adminRequest(cfg *config.Config, cf commonFlags, method, path string) (*http.Response, error) {
	dir, err := cf.dataDir(cfg)
	if err != nil {
		return nil, err
	}
	tok, err := adminTokenFor(cfg, dir)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(method, "http://"+cfg.Admin.Listen+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	c := &http.Client{Timeout: 30 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("reaching the admin API at %s: %w (is gatehouse running?)", cfg.Admin.Listen, err)
	}
	if resp.StatusCode == http.StatusUnauthorized {
		resp.Body.Close()
		return nil, fmt.Errorf("the admin API refused the token: run as the user gatehouse runs as, or pass the same --data")
	}
	return resp, nil
}

func adminTokenFor(cfg *config.Config, dataDir string) (string, error) {
	return instance.AdminToken(cfg, dataDir)
}
