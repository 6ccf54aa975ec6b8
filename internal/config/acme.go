package config

// ACME is the account and CA used for automatic certificates.
type ACME struct {
	Email string `yaml:"email"`
	// CA is the ACME directory URL; default Let's Encrypt production.
	CA string `yaml:"ca"`
}
