// Package metrics exposes Fossil's Prometheus metrics on /metrics.
//
// A [Metrics] owns its own [prometheus.Registry] (never the global one), so
// several servers in one test binary never share or collide on series. The
// hot paths feed it through small hook methods ([Metrics.ObserveAppend],
// [Metrics.ObserveGroup], [Metrics.ObserveDelivery]) that cmd plugs into the
// collector, the appender and the feed; values that already exist elsewhere
// (open SSE streams, consumer lag, pool statistics) are read through
// functions at scrape time, so they cost nothing between scrapes.
//
// The package knows nothing of pgx or the store: cmd adapts them to
// [PoolStats] and to a consumer-lag function.
//
// # Series
//
//	fossil_appends_total{result}                 POST /collect requests by result
//	fossil_append_duration_seconds{result}       request latency of POST /collect
//	fossil_events_appended_total                 events in append groups that committed
//	fossil_append_group_events                   events per group-commit transaction
//	fossil_append_group_requests                 requests per group-commit transaction
//	fossil_append_group_duration_seconds         duration of one group transaction
//	fossil_append_groups_total{result}           group transactions, ok or error
//	fossil_sse_subscribers                       open SSE streams
//	fossil_events_delivered_total                events written to SSE subscribers
//	fossil_delivery_lag_seconds                  commit → write to a live subscriber
//	fossil_consumer_lag_events{consumer}         events after a consumer's offset
//	fossil_consumer_lag_errors_total             scrapes that could not read consumer lag
//	fossil_db_pool_*                             database pool statistics
//	fossil_db_readers_waiting                    page reads queued for their turn
//	fossil_db_page_reads_total{database}         page reads of the log by the database that served them
//	fossil_db_page_read_events_total{database}   their events
//	fossil_read_replica_in_use{replica,reason}   1 when catch-up reads go to the replica
//	fossil_read_replica_replayed_event{replica}  the newest event the replica holds
//	fossil_read_replica_behind_events{replica}   events the primary has and the replica not
//	fossil_read_replica_lag_seconds{replica}     age of the oldest event the replica lacks
//	fossil_read_replica_failures_total{replica}  reads that failed on it and went to the primary
//
// plus the Go runtime and process collectors.
package metrics

import (
	"context"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
)

// Results of one append request, the values of the result label of
// fossil_appends_total.
const (
	ResultOK          = "ok"
	ResultDuplicate   = "duplicate"
	ResultConflict    = "conflict"
	ResultInvalid     = "invalid"
	ResultUnavailable = "unavailable"
	ResultError       = "error"
)

var results = []string{ResultOK, ResultDuplicate, ResultConflict, ResultInvalid, ResultUnavailable, ResultError}

// PoolStats is a snapshot of the database connection pool. It mirrors the
// parts of pgxpool.Stat that matter for capacity planning, so that this
// package does not import pgx.
type PoolStats struct {
	AcquiredConns   int32         // connections in use
	IdleConns       int32         // open and idle
	TotalConns      int32         // open, in use or idle or being built
	MaxConns        int32         // the pool's size
	AcquireCount    int64         // acquisitions since start (cumulative)
	AcquireDuration time.Duration // time spent waiting to acquire (cumulative)
	EmptyAcquire    int64         // acquisitions that had to wait for a connection (cumulative)
}

// Config wires a [Metrics] to the values it reads at scrape time. Every
// function is optional; a nil one leaves its series out.
type Config struct {
	// SubscribersFunc returns the number of open SSE streams.
	SubscribersFunc func() int64
	// ConsumerLagFunc returns each named consumer's lag in events. It runs
	// on every scrape with a context bounded by ConsumerLagTimeout; on error
	// the consumer-lag series are left out of that scrape (the rest is
	// still served, so metrics keep working while the database is down) and
	// fossil_consumer_lag_errors_total counts the failure.
	ConsumerLagFunc func(ctx context.Context) (map[string]int64, error)
	// ConsumerLagTimeout bounds ConsumerLagFunc; 0 means 2s.
	ConsumerLagTimeout time.Duration
	// PoolStatsFunc returns a snapshot of the database pool.
	PoolStatsFunc func() PoolStats
	// Version, when set, is exported as fossil_build_info{version,goversion}.
	Version string
	// ReadersWaitingFunc returns how many page reads of the log wait for
	// their turn at the database.
	ReadersWaitingFunc func() int64
}

// Metrics holds Fossil's series. Its methods are safe for concurrent use.
type Metrics struct {
	registry *prometheus.Registry

	appends        *prometheus.CounterVec
	appendDuration *prometheus.HistogramVec
	eventsAppended prometheus.Counter
	groupEvents    prometheus.Histogram
	groupRequests  prometheus.Histogram
	groupDuration  prometheus.Histogram
	groups         *prometheus.CounterVec
	delivered      prometheus.Counter
	deliveryLag    prometheus.Histogram

	// Children resolved once, so the hot paths do no label lookups.
	appendsBy  map[string]prometheus.Counter
	durationBy map[string]prometheus.Observer
	groupsOK   prometheus.Counter
	groupsErr  prometheus.Counter

	subs *subscriptionMetrics // nil until RegisterSubscriptions

	treeOnce sync.Once
	tree     *TreeMetrics
}

// latencyBuckets span 250µs to 15s: sub-millisecond appends on an idle
// server up to the append timeout.
var latencyBuckets = []float64{
	0.00025, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15,
}

// New returns a Metrics with its own registry.
func New(cfg Config) *Metrics {
	if cfg.ConsumerLagTimeout <= 0 {
		cfg.ConsumerLagTimeout = 2 * time.Second
	}
	m := &Metrics{
		registry: prometheus.NewRegistry(),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fossil_appends_total",
			Help: "POST /collect requests by result: ok, duplicate, conflict, invalid, unavailable or error.",
		}, []string{"result"}),
		appendDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "fossil_append_duration_seconds",
			Help:    "Latency of POST /collect from the start of the handler to its answer, by result.",
			Buckets: latencyBuckets,
		}, []string{"result"}),
		eventsAppended: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fossil_events_appended_total",
			Help: "Events in append groups whose transaction committed (a request of such a group rejected by a check, such as a 409, is counted too).",
		}),
		groupEvents: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fossil_append_group_events",
			Help:    "Events per group-commit transaction.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000},
		}),
		groupRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fossil_append_group_requests",
			Help:    "Requests per group-commit transaction.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024},
		}),
		groupDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "fossil_append_group_duration_seconds",
			Help:    "Duration of one group-commit transaction, from BEGIN to COMMIT.",
			Buckets: latencyBuckets,
		}),
		groups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fossil_append_groups_total",
			Help: "Group-commit transactions by result: ok or error.",
		}, []string{"result"}),
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "fossil_events_delivered_total",
			Help: "Events written to live SSE subscribers from the tail cache.",
		}),
		deliveryLag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fossil_delivery_lag_seconds",
			Help: "Time from an event's commit to its write to a live SSE subscriber; one observation per write, " +
				"for its newest event. The commit time is exact for events this process committed and " +
				"committed_at (the start of the transaction) for events read from the log.",
			Buckets: latencyBuckets,
		}),
		appendsBy:  make(map[string]prometheus.Counter, len(results)),
		durationBy: make(map[string]prometheus.Observer, len(results)),
	}
	for _, r := range results {
		m.appendsBy[r] = m.appends.WithLabelValues(r)
		m.durationBy[r] = m.appendDuration.WithLabelValues(r)
	}
	m.groupsOK = m.groups.WithLabelValues("ok")
	m.groupsErr = m.groups.WithLabelValues("error")

	m.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.appends, m.appendDuration, m.eventsAppended,
		m.groupEvents, m.groupRequests, m.groupDuration, m.groups,
		m.delivered, m.deliveryLag,
	)
	if cfg.SubscribersFunc != nil {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fossil_sse_subscribers",
			Help: "Open SSE streams (/sse and /consumer/{name}/sse).",
		}, func() float64 { return float64(cfg.SubscribersFunc()) }))
	}
	if cfg.ReadersWaitingFunc != nil {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "fossil_db_readers_waiting",
			Help: "Page reads of the log (SSE catch-up, queries) queued for their turn at the database.",
		}, func() float64 { return float64(cfg.ReadersWaitingFunc()) }))
	}
	if cfg.ConsumerLagFunc != nil {
		m.registry.MustRegister(&consumerLagCollector{fn: cfg.ConsumerLagFunc, timeout: cfg.ConsumerLagTimeout})
	}
	if cfg.PoolStatsFunc != nil {
		m.registry.MustRegister(&poolCollector{fn: cfg.PoolStatsFunc})
	}
	if cfg.Version != "" {
		m.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "fossil_build_info",
			Help:        "Always 1; the labels name the running build.",
			ConstLabels: prometheus.Labels{"version": cfg.Version, "goversion": runtime.Version()},
		}, func() float64 { return 1 }))
	}
	return m
}

// Registry returns the registry, for tests and for callers that add their
// own collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Handler serves the registry in the Prometheus exposition format (GET
// /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{
		Registry:            m.registry, // counts promhttp's own errors
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// FilteredHandler is [Metrics.Handler] for a caller who may see only some
// consumer names: keep returns, for a request, which names its
// fossil_consumer_lag_events series may show (nil: all).
func (m *Metrics) FilteredHandler(keep func(r *http.Request) func(consumer string) bool) http.Handler {
	all := m.Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		show := keep(r)
		if show == nil {
			all.ServeHTTP(w, r)
			return
		}
		filtered := prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
			mfs, err := m.registry.Gather()
			out := mfs[:0]
			for _, mf := range mfs {
				if mf.GetName() == "fossil_consumer_lag_events" {
					kept := mf.Metric[:0]
					for _, mt := range mf.Metric {
						for _, l := range mt.GetLabel() {
							if l.GetName() == "consumer" && show(l.GetValue()) {
								kept = append(kept, mt)
							}
						}
					}
					if mf.Metric = kept; len(kept) == 0 {
						continue
					}
				}
				out = append(out, mf)
			}
			return out, err
		})
		promhttp.HandlerFor(filtered, promhttp.HandlerOpts{Timeout: 10 * time.Second}).ServeHTTP(w, r)
	})
}

// ObserveAppend records one POST /collect: its result (one of the Result*
// constants; anything else counts as [ResultError]) and its latency. It
// fits collector.Config.ObserveFunc.
func (m *Metrics) ObserveAppend(result string, took time.Duration) {
	c, ok := m.appendsBy[result]
	if !ok {
		result = ResultError
		c = m.appendsBy[result]
	}
	c.Inc()
	m.durationBy[result].Observe(took.Seconds())
}

// ObserveGroup records one group-commit transaction: how many requests and
// events it held, how long it took and whether it committed. It fits
// store.AppenderConfig.ObserveFunc.
func (m *Metrics) ObserveGroup(requests, events int, took time.Duration, err error) {
	m.groupRequests.Observe(float64(requests))
	m.groupEvents.Observe(float64(events))
	m.groupDuration.Observe(took.Seconds())
	if err != nil {
		m.groupsErr.Inc()
		return
	}
	m.groupsOK.Inc()
	m.eventsAppended.Add(float64(events))
}

// ObserveDelivery records one write of n events to an SSE subscriber (live
// from the ring or catching up from SQL),
// whose newest event was committed lag ago. It fits feed.Config.ObserveFunc.
func (m *Metrics) ObserveDelivery(n int, lag time.Duration) {
	m.delivered.Add(float64(n))
	m.deliveryLag.Observe(max(lag, 0).Seconds())
}

// consumerLagCollector reads consumer lag at scrape time.
type consumerLagCollector struct {
	fn       func(ctx context.Context) (map[string]int64, error)
	timeout  time.Duration
	failures atomic.Int64
}

var (
	consumerLagDesc = prometheus.NewDesc("fossil_consumer_lag_events",
		"Events in the log after the named consumer's committed offset.", []string{"consumer"}, nil)
	consumerLagErrorsDesc = prometheus.NewDesc("fossil_consumer_lag_errors_total",
		"Scrapes that left out fossil_consumer_lag_events because the database did not answer in time.", nil, nil)
)

func (c *consumerLagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- consumerLagDesc
	ch <- consumerLagErrorsDesc
}

func (c *consumerLagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	lags, err := c.fn(ctx)
	if err != nil {
		c.failures.Add(1)
	}
	ch <- prometheus.MustNewConstMetric(consumerLagErrorsDesc, prometheus.CounterValue, float64(c.failures.Load()))
	for name, lag := range lags {
		ch <- prometheus.MustNewConstMetric(consumerLagDesc, prometheus.GaugeValue, float64(lag), name)
	}
}

// poolCollector reads pool statistics at scrape time.
type poolCollector struct {
	fn func() PoolStats
}

var (
	poolAcquiredDesc = prometheus.NewDesc("fossil_db_pool_acquired_conns", "Database connections in use.", nil, nil)
	poolIdleDesc     = prometheus.NewDesc("fossil_db_pool_idle_conns", "Idle database connections.", nil, nil)
	poolTotalDesc    = prometheus.NewDesc("fossil_db_pool_total_conns", "Open database connections.", nil, nil)
	poolMaxDesc      = prometheus.NewDesc("fossil_db_pool_max_conns", "Size of the database pool.", nil, nil)
	poolAcquireDesc  = prometheus.NewDesc("fossil_db_pool_acquires_total", "Connections acquired from the pool.", nil, nil)
	poolWaitDesc     = prometheus.NewDesc("fossil_db_pool_acquire_duration_seconds_total",
		"Time spent acquiring connections from the pool.", nil, nil)
	poolEmptyDesc = prometheus.NewDesc("fossil_db_pool_empty_acquires_total",
		"Acquisitions that waited because no connection was idle.", nil, nil)
)

func (c *poolCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{poolAcquiredDesc, poolIdleDesc, poolTotalDesc, poolMaxDesc, poolAcquireDesc, poolWaitDesc, poolEmptyDesc} {
		ch <- d
	}
}

func (c *poolCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.fn()
	ch <- prometheus.MustNewConstMetric(poolAcquiredDesc, prometheus.GaugeValue, float64(s.AcquiredConns))
	ch <- prometheus.MustNewConstMetric(poolIdleDesc, prometheus.GaugeValue, float64(s.IdleConns))
	ch <- prometheus.MustNewConstMetric(poolTotalDesc, prometheus.GaugeValue, float64(s.TotalConns))
	ch <- prometheus.MustNewConstMetric(poolMaxDesc, prometheus.GaugeValue, float64(s.MaxConns))
	ch <- prometheus.MustNewConstMetric(poolAcquireDesc, prometheus.CounterValue, float64(s.AcquireCount))
	ch <- prometheus.MustNewConstMetric(poolWaitDesc, prometheus.CounterValue, s.AcquireDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(poolEmptyDesc, prometheus.CounterValue, float64(s.EmptyAcquire))
}
