package cmd

import (
	"errors"
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// memoryLimitRatio is the share of a container's memory limit given to the
// Go runtime as its soft limit; the rest is for what the runtime does not
// count (thread stacks, the kernel's socket buffers) and headroom.
const memoryLimitRatio = 0.9

// applyMemoryLimit sets the Go runtime's soft memory limit, so that the
// heap is collected harder as it nears the limit and memory taken in a
// burst is returned to the system afterwards. In order: GOMEMLIMIT when
// set (the runtime has already applied it), else --memory-limit, else 90 %
// of the cgroup (container) memory limit, else none. It returns the limit
// in bytes (0: none).
func applyMemoryLimit(cfg Config, env envLookup, logger *slog.Logger) int64 {
	if v, set := env("GOMEMLIMIT"); set {
		logger.Info("memory limit from GOMEMLIMIT", "GOMEMLIMIT", v)
		return 0
	}
	provider, ratio, source := memlimit.FromCgroup, memoryLimitRatio, "cgroup"
	if cfg.MemoryLimit > 0 {
		provider, ratio, source = memlimit.Limit(uint64(cfg.MemoryLimit)), 1, "memory-limit"
	}
	limit, err := memlimit.Set(memlimit.WithProvider(provider), memlimit.WithRatio(ratio))
	switch {
	case err == nil && limit > 0:
		logger.Info("memory limit set", "bytes", limit, "from", source)
	case err == nil, errors.Is(err, memlimit.ErrNoLimit), errors.Is(err, memlimit.ErrNoCgroup):
		logger.Info("no memory limit: set --memory-limit (FOSSIL_MEMORY_LIMIT) or run in a container with a memory limit")
	default:
		logger.Warn("could not read the cgroup memory limit; running without one", "error", err)
	}
	return limit
}
