package cmd

import (
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
)

// TestApplyMemoryLimit: --memory-limit becomes the runtime's soft limit;
// GOMEMLIMIT, when set, is left to the runtime.
func TestApplyMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	logger := slog.New(slog.DiscardHandler)
	noEnv := func(string) (string, bool) { return "", false }

	cfg := DefaultConfig()
	cfg.MemoryLimit = 700 << 20
	if got := applyMemoryLimit(cfg, noEnv, logger); got != 700<<20 {
		t.Fatalf("applyMemoryLimit = %d, want %d", got, 700<<20)
	}
	if got := debug.SetMemoryLimit(-1); got != 700<<20 {
		t.Fatalf("runtime memory limit %d, want %d", got, 700<<20)
	}

	debug.SetMemoryLimit(math.MaxInt64)
	withEnv := func(k string) (string, bool) { return "1GiB", k == "GOMEMLIMIT" }
	if got := applyMemoryLimit(cfg, withEnv, logger); got != 0 {
		t.Fatalf("with GOMEMLIMIT set, applyMemoryLimit = %d, want 0 (left to the runtime)", got)
	}
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("with GOMEMLIMIT set the limit changed to %d", got)
	}
}
