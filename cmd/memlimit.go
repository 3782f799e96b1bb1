package cmd

import (
	"context"
	"errors"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"time"

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

// idleHeapThreshold is how much free heap, not yet returned to the system,
// returnFreeMemory tolerates before it returns it at once.
const idleHeapThreshold = 64 << 20

// returnFreeMemory gives free heap back to the system every interval
// while more than idleHeapThreshold of it is held, until ctx ends. The
// runtime's own scavenger returns memory slowly (and keeps what is under
// the soft limit), so after a burst (thousands of SSE clients that went
// away, large pages read) the process would keep its peak RSS for
// minutes; this brings it back within an interval. When little is free it
// costs one metrics read per interval and no collection.
func returnFreeMemory(ctx context.Context, interval time.Duration) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}}
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > idleHeapThreshold {
			debug.FreeOSMemory()
		}
	}
}
