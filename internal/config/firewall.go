package config

// Firewall decides which sources may reach which ports. Rules are tried in
// order; the first match decides, else Default.
type Firewall struct {
	// Default is deny or allow (default allow when no rules are given).
	Default string         `yaml:"default"`
	Rules   []FirewallRule `yaml:"rules"`
}

// FirewallRule is one rule: exactly one of Allow, Deny or Reject names the
// protocol (tcp, udp or any) it applies to.
type FirewallRule struct {
	Allow       string   `yaml:"allow"`
	Deny        string   `yaml:"deny"`
	Reject      string   `yaml:"reject"`
	Ports       []string `yaml:"ports"` // 443 or 8000-8100; empty is every port
	From        []string `yaml:"from"`  // addresses or CIDRs; empty is anyone
	Description string   `yaml:"description"`
}

func (c *Config) validateFirewall(errs *ErrorList) {}
