package instance

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"gatehouse/internal/admin"
	"gatehouse/internal/config"
)

// TokenFile is where the admin token is kept when the config sets none.
func TokenFile(dataDir string) string { return filepath.Join(dataDir, "admin.token") }

// AdminToken returns the token the config asks for, or the one kept in the
// data directory, making it on first use.
func AdminToken(cfg *config.Config, dataDir string) (string, error) {
	switch {
	case cfg.Admin.Token != "":
		return cfg.Admin.Token, nil
	case cfg.Admin.TokenFile != "":
		b, err := os.ReadFile(cfg.Admin.TokenFile)
		if err != nil {
			return "", fmt.Errorf("reading admin token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	path := TokenFile(dataDir)
	b, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading admin token: %w", err)
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keeping admin token: %w", err)
	}
	return tok, nil
}

// adminHandler builds the admin API for one generation.
func (in *Instance) adminHandler(cfg *config.Config) (http.Handler, error) {
	if cfg.Admin.Listen == "" {
		return nil, nil
	}
	tok, err := AdminToken(cfg, in.opts.DataDir)
	if err != nil {
		return nil, err
	}
	api := &admin.API{
		Token: tok,
		Load: func(name string, src []byte) error {
			c, err := config.Parse(name, src)
			if err != nil {
				in.metrics.Reload(false)
				return err
			}
			return in.Reload(c)
		},
		ReloadFile: in.ReloadFile,
		Config:     in.Config,
		Status:     in.Status,
		Ready:      in.Ready,
		Metrics:    in.metrics.Handler(),
	}
	return api.Handler(), nil
}

// ReloadFile reads the config file in force again and reloads with it.
func (in *Instance) ReloadFile() error {
	cfg, err := config.Load(in.Config().File)
	if err != nil {
		in.metrics.Reload(false)
		in.log.Warn("config refused; the running config is unchanged", "config", in.Config().File, "error", err.Error())
		return err
	}
	return in.Reload(cfg)
}

// Ready reports whether the instance serves: started, not stopping.
func (in *Instance) Ready() error {
	in.mu.Lock()
	defer in.mu.Unlock()
	switch {
	case !in.started:
		return errors.New("starting")
	case in.stopped:
		return errors.New("shutting down")
	}
	return nil
}

// Status reports every room's state for the admin API.
func (in *Instance) Status() map[string]any {
	g := in.gen.Load()
	in.mu.Lock()
	var ls []map[string]string
	for _, l := range in.listeners {
		ls = append(ls, map[string]string{"kind": string(l.key.kind), "config": l.key.addr, "addr": l.sock.Addr().String()})
	}
	in.mu.Unlock()
	var sites []map[string]any
	for i := range g.cfg.Sites {
		s := &g.cfg.Sites[i]
		var routes []string
		for _, r := range s.Routes {
			routes = append(routes, r.Path)
		}
		sites = append(sites, map[string]any{"hosts": s.Hosts, "tls": in.certsSource(s), "routes": routes})
	}
	return map[string]any{
		"config":    g.cfg.File,
		"listeners": ls,
		"sites":     sites,
		"upstreams": g.upstreams(),
	}
}
