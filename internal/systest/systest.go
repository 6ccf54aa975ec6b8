// Package systest owns one rule for tests that need something of the
// system (a program, root): without it they skip and say why, unless
// GATEHOUSE_REQUIRE_SYSTEM=1 (set by .ci/run, which installs everything),
// where a missing requirement is a failure.
package systest

import (
	"os"
	"os/exec"
	"testing"
)

// Missing skips or fails t because of why.
func Missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("GATEHOUSE_REQUIRE_SYSTEM") == "1" {
		t.Fatal(why + " (GATEHOUSE_REQUIRE_SYSTEM=1: .ci/run installs it)")
	}
	t.Skip(why)
}

// Program returns the path of a program, or skips or fails t; pkg names the
// Debian package that has it.
func Program(t testing.TB, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, name+" is not installed (Debian package "+pkg+")")
	}
	return p
}
