package certs

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"gatehouse/internal/config"
)

// onDemandPolicy decides whether a name seen in a TLS handshake may get a
// certificate. Without it anyone could point a name at gatehouse and make
// it request certificates from the CA, spending the CA's rate limits.
type onDemandPolicy struct {
	allow    nameSet
	pattern  *regexp.Regexp
	ask      *url.URL
	client   *http.Client
	explicit bool // allow, pattern or ask was written; else the defaults apply

	// The defaults: names inside served zones, or matching a site host.
	zones []string
	hosts nameSet

	limit *nameLimiter
}

// nameSet matches exact names and one-label wildcards.
type nameSet struct {
	exact    map[string]bool
	wildcard map[string]bool // by parent
}

func newNameSet(names []string) nameSet {
	s := nameSet{exact: map[string]bool{}, wildcard: map[string]bool{}}
	for _, n := range names {
		n = strings.ToLower(strings.TrimSuffix(n, "."))
		if parent, ok := strings.CutPrefix(n, "*."); ok {
			s.wildcard[parent] = true
		} else {
			s.exact[n] = true
		}
	}
	return s
}

func (s nameSet) has(name string) bool {
	if s.exact[name] {
		return true
	}
	i := strings.IndexByte(name, '.')
	return i > 0 && s.wildcard[name[i+1:]]
}

// Default on-demand settings.
const (
	defaultOnDemandInterval = 10 * time.Minute
	onDemandBurst           = 2
	askTimeout              = 5 * time.Second
)

func newOnDemandPolicy(cfg *config.Config, limit *nameLimiter) (*onDemandPolicy, error) {
	od := cfg.TLS.ACME.OnDemand
	p := &onDemandPolicy{
		allow:    newNameSet(od.Allow),
		explicit: len(od.Allow) > 0 || od.Pattern != "" || od.Ask != "",
	}
	if od.Pattern != "" {
		re, err := regexp.Compile("^(?:" + od.Pattern + ")$")
		if err != nil {
			return nil, fmt.Errorf("on_demand pattern: %v", err)
		}
		p.pattern = re
	}
	if od.Ask != "" {
		u, err := url.Parse(od.Ask)
		if err != nil {
			return nil, fmt.Errorf("on_demand ask: %v", err)
		}
		p.ask, p.client = u, &http.Client{Timeout: askTimeout}
	}
	if len(cfg.DNS.Listen) > 0 {
		for z := range cfg.DNS.Zones {
			p.zones = append(p.zones, strings.ToLower(strings.TrimSuffix(z, ".")))
		}
	}
	var hosts []string
	for i := range cfg.Sites {
		if cfg.ACMESite(&cfg.Sites[i]) {
			hosts = append(hosts, cfg.Sites[i].Hosts...)
		}
	}
	p.hosts = newNameSet(hosts)
	p.limit = limit
	return p, nil
}

// errRefused marks names the policy does not allow.
var errRefused = errors.New("on-demand certificate refused")

// decide returns nil when name may get a certificate now, else why not.
// It is certmagic's OnDemandConfig.DecisionFunc.
func (p *onDemandPolicy) decide(ctx context.Context, name string) error {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if !config.IsPublicName(name) {
		return fmt.Errorf("%w for %q: no public CA issues for it", errRefused, name)
	}
	if ok, err := p.allows(ctx, name); !ok {
		if err != nil {
			return fmt.Errorf("%w for %q: %w", errRefused, name, err)
		}
		return fmt.Errorf("%w for %q: not allowed by tls.acme.on_demand", errRefused, name)
	}
	if !p.limit.allow(name) {
		return fmt.Errorf("%w for %q: too many attempts, next one allowed after %s", errRefused, name, p.limit.every)
	}
	return nil
}

func (p *onDemandPolicy) allows(ctx context.Context, name string) (bool, error) {
	if !p.explicit {
		if p.hosts.has(name) {
			return true, nil
		}
		for _, z := range p.zones {
			if name == z || strings.HasSuffix(name, "."+z) {
				return true, nil
			}
		}
		return false, nil
	}
	if p.allow.has(name) || (p.pattern != nil && p.pattern.MatchString(name)) {
		return true, nil
	}
	if p.ask == nil {
		return false, nil
	}
	return p.askEndpoint(ctx, name)
}

// askEndpoint asks the configured URL, as Caddy's on_demand ask does: any
// 2xx answer allows the name.
func (p *onDemandPolicy) askEndpoint(ctx context.Context, name string) (bool, error) {
	u := *p.ask
	q := u.Query()
	q.Set("domain", name)
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return false, fmt.Errorf("asking %s: %w", p.ask.Redacted(), err)
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return false, fmt.Errorf("%s answered %s", p.ask.Redacted(), resp.Status)
	}
	return true, nil
}

// nameLimiter rate-limits issuance attempts per name.
type nameLimiter struct {
	every time.Duration
	burst int

	mu sync.Mutex
	m  map[string]*rate.Limiter
}

// maxLimited bounds the limiter map; handshakes with made-up names would
// otherwise grow it.
const maxLimited = 10000

func newNameLimiter(every time.Duration, burst int) *nameLimiter {
	return &nameLimiter{every: every, burst: burst, m: map[string]*rate.Limiter{}}
}

func (l *nameLimiter) allow(name string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[name]
	if !ok {
		if len(l.m) >= maxLimited {
			clear(l.m)
		}
		lim = rate.NewLimiter(rate.Every(l.every), l.burst)
		l.m[name] = lim
	}
	return lim.Allow()
}
