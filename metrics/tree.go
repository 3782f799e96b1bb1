package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TreeMetrics are the series of the log's Merkle tree.
type TreeMetrics struct {
	size       prometheus.Gauge
	events     prometheus.Gauge
	hashing    prometheus.Histogram
	mu         sync.Mutex
	signedAt   time.Time
	checkpoint prometheus.GaugeFunc
}

// Tree registers the Merkle tree's series on first use and returns them.
func (m *Metrics) Tree() *TreeMetrics {
	m.treeOnce.Do(func() {
		t := &TreeMetrics{
			size: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "fossil_tree_size",
				Help: "Events hashed into the log's Merkle tree (equal to fossil_tree_log_events once the tree is complete).",
			}),
			events: prometheus.NewGauge(prometheus.GaugeOpts{
				Name: "fossil_tree_log_events",
				Help: "Events in the log when the tree size was last observed; below it, the tree of an existing log is being built.",
			}),
			hashing: prometheus.NewHistogram(prometheus.HistogramOpts{
				Name:    "fossil_tree_hashing_seconds",
				Help:    "Time spent hashing one append group's events into the tree (inside the group's transaction).",
				Buckets: []float64{0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01},
			}),
		}
		t.checkpoint = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fossil_checkpoint_age_seconds",
			Help: "Seconds since this process signed its newest checkpoint (checkpoints are signed on demand, when the tree has grown since the last one); -1 before the first.",
		}, func() float64 {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.signedAt.IsZero() {
				return -1
			}
			return time.Since(t.signedAt).Seconds()
		})
		m.registry.MustRegister(t.size, t.events, t.hashing, t.checkpoint)
		m.tree = t
	})
	return m.tree
}

// ObserveSize records the tree size and the number of events in the log.
func (t *TreeMetrics) ObserveSize(size, events int64) {
	t.size.Set(float64(size))
	t.events.Set(float64(events))
}

// ObserveHashing records one group's hashing time and the new tree size.
func (t *TreeMetrics) ObserveHashing(size int64, took time.Duration) {
	t.hashing.Observe(took.Seconds())
	t.size.Set(float64(size))
	t.events.Set(float64(size))
}

// ObserveCheckpoint records that a checkpoint was signed.
func (t *TreeMetrics) ObserveCheckpoint() {
	t.mu.Lock()
	t.signedAt = time.Now()
	t.mu.Unlock()
}
