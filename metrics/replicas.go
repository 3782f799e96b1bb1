package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReadStats are the page reads of the log (catch-up, queries, dispatch;
// not the live tail) by the database that served them, and the state of
// every read replica, read at scrape time.
type ReadStats struct {
	PrimaryPages, PrimaryEvents int64
	Replicas                    []ReplicaStats
}

// ReplicaStats is one read replica's state.
type ReplicaStats struct {
	Name                    string // host:port/database
	InUse                   bool
	Reason                  string // why it is not in use
	Replayed, Behind        int64
	Lag                     time.Duration
	Pages, Events, Failures int64
}

var (
	readPagesDesc = prometheus.NewDesc("fossil_db_page_reads_total",
		"Page reads of the log (catch-up, queries, subscription dispatch; not the live tail) served by a database, whole or in part: the primary or a read replica.",
		[]string{"database"}, nil)
	readEventsDesc = prometheus.NewDesc("fossil_db_page_read_events_total",
		"Events of those page reads, by the database that served them.",
		[]string{"database"}, nil)
	replicaUpDesc = prometheus.NewDesc("fossil_read_replica_in_use",
		"1 when catch-up reads go to the read replica, 0 when they go to the primary; reason says why (unreachable, not a standby, lagging, replacement not replayed, a read failed, not checked yet).",
		[]string{"replica", "reason"}, nil)
	replicaReplayedDesc = prometheus.NewDesc("fossil_read_replica_replayed_event",
		"The newest event the read replica holds (its fossil_head as replayed, at the last check).",
		[]string{"replica"}, nil)
	replicaBehindDesc = prometheus.NewDesc("fossil_read_replica_behind_events",
		"Events the primary holds that the read replica does not, at the last check.",
		[]string{"replica"}, nil)
	replicaLagDesc = prometheus.NewDesc("fossil_read_replica_lag_seconds",
		"How long the primary has had the oldest event the read replica lacks (0 when it lacks none).",
		[]string{"replica"}, nil)
	replicaFailuresDesc = prometheus.NewDesc("fossil_read_replica_failures_total",
		"Page reads that failed on the read replica and were read from the primary instead.",
		[]string{"replica"}, nil)
)

// RegisterReads adds the page-read and read-replica series, read from fn
// at scrape time.
func (m *Metrics) RegisterReads(fn func() ReadStats) {
	m.registry.MustRegister(readCollector(fn))
}

type readCollector func() ReadStats

func (c readCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{readPagesDesc, readEventsDesc, replicaUpDesc, replicaReplayedDesc, replicaBehindDesc, replicaLagDesc, replicaFailuresDesc} {
		ch <- d
	}
}

func (c readCollector) Collect(ch chan<- prometheus.Metric) {
	st := c()
	ch <- prometheus.MustNewConstMetric(readPagesDesc, prometheus.CounterValue, float64(st.PrimaryPages), "primary")
	ch <- prometheus.MustNewConstMetric(readEventsDesc, prometheus.CounterValue, float64(st.PrimaryEvents), "primary")
	for _, r := range st.Replicas {
		up := 0.0
		if r.InUse {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(readPagesDesc, prometheus.CounterValue, float64(r.Pages), r.Name)
		ch <- prometheus.MustNewConstMetric(readEventsDesc, prometheus.CounterValue, float64(r.Events), r.Name)
		ch <- prometheus.MustNewConstMetric(replicaUpDesc, prometheus.GaugeValue, up, r.Name, r.Reason)
		ch <- prometheus.MustNewConstMetric(replicaReplayedDesc, prometheus.GaugeValue, float64(r.Replayed), r.Name)
		ch <- prometheus.MustNewConstMetric(replicaBehindDesc, prometheus.GaugeValue, float64(r.Behind), r.Name)
		ch <- prometheus.MustNewConstMetric(replicaLagDesc, prometheus.GaugeValue, r.Lag.Seconds(), r.Name)
		ch <- prometheus.MustNewConstMetric(replicaFailuresDesc, prometheus.CounterValue, float64(r.Failures), r.Name)
	}
}
