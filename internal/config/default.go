package config

import _ "embed"

//go:embed default.yaml
var defaultYAML []byte

// DefaultName is how the embedded default is named in messages.
const DefaultName = "(embedded default)"

// Default returns the embedded default config.
func Default() *Config {
	c, err := Parse(DefaultName, defaultYAML)
	if err != nil {
		panic("config: embedded default does not parse: " + err.Error())
	}
	return c
}

// DefaultYAML returns the embedded default's text.
func DefaultYAML() []byte { return defaultYAML }
