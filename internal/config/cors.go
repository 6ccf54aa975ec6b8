package config

// CORS is a cross-origin resource sharing policy.
type CORS struct {
	// Origins are allowed origins: exact (https://app.example.org), a
	// one-label wildcard (https://*.example.org), or "*".
	Origins []string `yaml:"origins"`
}

// validateCORS refuses cors policies until they are enforced at the edge:
// accepting a policy that nothing applies would look like protection.
func (c *Config) validateCORS(errs *ErrorList) {
	for i := range c.Sites {
		s := &c.Sites[i]
		if s.CORS != nil {
			errs.Add(c.PosOf(s.CORS), "cors is not enforced by gatehouse yet: answer CORS in the backend, and remove this key")
		}
		for j := range s.Routes {
			if r := &s.Routes[j]; r.CORS != nil {
				errs.Add(c.PosOf(r.CORS), "cors is not enforced by gatehouse yet: answer CORS in the backend, and remove this key")
			}
		}
	}
}
