package config

// CORS is a cross-origin resource sharing policy.
type CORS struct {
	// Origins are allowed origins: exact (https://app.example.org), a
	// one-label wildcard (https://*.example.org), or "*".
	Origins []string `yaml:"origins"`
}

func (c *Config) validateCORS(errs *ErrorList) {}
