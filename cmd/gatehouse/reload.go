package main

import (
	"encoding/json"
	"errors"
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
	if err := adminCall(cfg, cf, "/reload", "the reload to: add one, or send SIGHUP to the gatehouse process", nil); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "gatehouse reloaded its config")
	return nil
}

// adminCall POSTs to path on the admin API cfg names and decodes its JSON
// answer into out (unless nil). An answer other than 200 is the error it
// names, with the config's problems; noAdmin ends the message when cfg has
// no admin API ("the X to: what to do").
func adminCall(cfg *config.Config, cf commonFlags, path, noAdmin string, out any) error {
	if cfg.Admin.Listen == "" {
		return fmt.Errorf("%s has no admin API (admin.listen) to send %s", cfg.File, noAdmin)
	}
	resp, err := adminRequest(cfg, cf, "POST", path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the admin API's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var fail struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}
		if json.Unmarshal(body, &fail) != nil || fail.Error == "" {
			return fmt.Errorf("admin API answered %s", resp.Status)
		}
		msg := fail.Error
		if len(fail.Problems) > 0 {
			msg += ":\n" + strings.Join(fail.Problems, "\n")
		}
		return &exitError{code: 1, err: errors.New(msg)}
	}
	if out != nil && json.Unmarshal(body, out) != nil {
		return fmt.Errorf("admin API answered %s with what is not JSON", resp.Status)
	}
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
