// Package testenv decides whether a test that needs root, BPF or network
// namespaces can run here. Elsewhere it skips with the reason; under CI
// (CI=true), where all of these exist, a missing one fails the test
// instead, so a skip can never hide a failure there.
package testenv

import (
	"os"
	"testing"
)

// CI reports whether the tests run in CI, where nothing may be skipped.
func CI() bool { return os.Getenv("CI") == "true" }

// Skip skips t with reason, or fails it under CI.
func Skip(t testing.TB, reason string) {
	t.Helper()
	if CI() {
		t.Fatalf("cannot run under CI: %s", reason)
	}
	t.Skip(reason)
}

// RequireRoot skips (or fails under CI) unless running as root, which BPF
// loading, XDP and network namespaces all need.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root (BPF, XDP and network namespaces)")
	}
}
