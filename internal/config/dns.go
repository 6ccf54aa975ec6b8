package config

// DNS is the authoritative DNS server. It is off unless Listen is set.
type DNS struct {
	// Listen lists addresses served on both UDP and TCP (":53" in production).
	Listen []string `yaml:"listen"`
	// Zones maps each zone's apex name to its records.
	Zones map[string]*Zone `yaml:"zones"`
	// Publish gives the addresses every site host inside a served zone
	// resolves to, unless a record for the name is written explicitly.
	Publish Publish `yaml:"publish"`
}

// Zone is one zone served authoritatively: records written inline, or an
// RFC 1035 master file.
type Zone struct {
	File    string   `yaml:"file"`
	TTL     uint32   `yaml:"ttl"` // default record TTL in seconds (300)
	Records []Record `yaml:"records"`
}

// Record is one resource record; Name is relative to the zone, @ for the
// apex, *.x for a wildcard, or absolute when it ends in a dot.
type Record struct {
	Name  string `yaml:"name"`
	Type  string `yaml:"type"`
	Value string `yaml:"value"`
	TTL   uint32 `yaml:"ttl"`
}

// Publish holds the addresses of this edge for automatic site records.
type Publish struct {
	IPv4 string `yaml:"ipv4"`
	IPv6 string `yaml:"ipv6"`
}

func (c *Config) validateDNS(errs *ErrorList) {}
