package instance

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"gatehouse/internal/admin"
	"gatehouse/internal/config"
)

// TokenFile is where the admin token is kept when the config sets none.
func TokenFile(dataDir string) string { return filepath.Join(dataDir, "admin.token") }

// AdminToken returns the admin API's token: the config's, or the one kept
// in the data directory, made on first use.
func AdminToken(cfg *config.Config, dataDir string) (string, error) {
	return token(cfg.Admin.Token, cfg.Admin.TokenFile, TokenFile(dataDir))
}

// TraceToken returns the token that shows a request its journey: the
// config's, or the one kept in the data directory (trace.token).
func TraceToken(cfg *config.Config, dataDir string) (string, error) {
	return token(cfg.Journey.Token, "", filepath.Join(dataDir, "trace.token"))
}

// token returns value, else the contents of file, else the token kept at
// kept, making a random one there (0600) on first use.
func token(value, file, kept string) (string, error) {
	switch {
	case value != "":
		return value, nil
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading token: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	b, err := os.ReadFile(kept)
	if err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("reading token: %w", err)
	}
	raw := make([]byte, 24)
	rand.Read(raw)
	tok := hex.EncodeToString(raw)
	if err := os.MkdirAll(filepath.Dir(kept), 0o700); err != nil {
		return "", err
	}
	if err := os.WriteFile(kept, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("keeping token: %w", err)
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
		Unban:      in.Unban,
		Pending:    in.certs.Pending,
		Metrics:    in.metrics.Handler(),
		Journeys: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			json.NewEncoder(w).Encode(in.ring.Load().Views())
		}),
	}
	return api.Handler(), nil
}

// ReloadFile reads the config file in force again and reloads with it.
func (in *Instance) ReloadFile() error {
	load := in.opts.Load
	if load == nil {
		load = config.Load
	}
	cfg, err := load(in.Config().File)
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
	certInfo, err := in.certs.Status()
	var certStatus any = certInfo
	if err != nil {
		certStatus = map[string]string{"error": err.Error()}
	}
	return map[string]any{
		"config":       g.cfg.File,
		"certificates": certStatus,
		"listeners":    ls,
		"sites":        sites,
		"upstreams":    g.upstreams(),
		"dns":          in.dnsStatus(),
		"firewall":     in.guard.Status(),
	}
}

func (in *Instance) dnsStatus() any {
	in.dnsMu.RLock()
	defer in.dnsMu.RUnlock()
	if in.dns == nil {
		return nil
	}
	return in.dns.Status()
}

// registerCollectors adds the rooms' own metrics, read when Prometheus
// scrapes: certificate expiry, DNS answers by rcode, firewall verdicts.
func (in *Instance) registerCollectors() {
	in.metrics.Register(newCertCollector(in.certs))
	in.metrics.Register(&dnsCollector{in: in, desc: prometheus.NewDesc("gatehouse_dns_responses_total",
		"DNS answers sent, by rcode.", []string{"rcode"}, nil)})
	in.metrics.Register(in.guard.Collector())
}
