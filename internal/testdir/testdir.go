// Package testdir makes temporary folders for tests whose code under test
// may still write to them for a moment after it stops, as certmagic's
// background certificate attempts do after the manager's Stop returns.
package testdir

import (
	"os"
	"testing"
	"time"
)

// New returns a new empty folder. When the test ends (after the cleanups
// registered later, which stop what writes there), it is removed, trying
// again for up to a second while it is still being written to.
func New(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gatehouse-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		err := os.RemoveAll(dir)
		for i := 0; err != nil && i < 50; i++ {
			time.Sleep(20 * time.Millisecond)
			err = os.RemoveAll(dir)
		}
		if err != nil {
			t.Logf("left %s behind: %v", dir, err)
		}
	})
	return dir
}
