package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Subscription series:
//
//	fossil_subscription_delivered_total{subscription}          events delivered
//	fossil_subscription_attempts_total{subscription}           delivery attempts, failed or not
//	fossil_subscription_failures_total{subscription,reason}    failed attempts: retry, throttled, rejected, gone
//	fossil_subscription_parked_total{subscription}             events parked
//	fossil_subscription_delivery_latency_seconds               commit → delivered
//	fossil_subscription_lag_events{subscription}               newest event − position (at scrape)
//	fossil_subscription_parked_events{subscription}            parked now (at scrape)
type subscriptionMetrics struct {
	delivered *prometheus.CounterVec
	attempts  *prometheus.CounterVec
	failures  *prometheus.CounterVec
	parked    *prometheus.CounterVec
	latency   prometheus.Histogram
}

// SubscriptionStats is what the subscription gauges read at scrape time.
type SubscriptionStats struct {
	Lag    int64
	Parked int64
}

// RegisterSubscriptions adds the subscription series; statsFunc, when not
// nil, is read at scrape time for lag and parked counts (with a 1 s
// timeout; on error those series are left out of that scrape).
func (m *Metrics) RegisterSubscriptions(statsFunc func(ctx context.Context) (map[string]SubscriptionStats, error)) {
	sm := &subscriptionMetrics{
		delivered: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fossil_subscription_delivered_total", Help: "Events delivered by a subscription (each counted once).",
		}, []string{"subscription"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fossil_subscription_attempts_total", Help: "Delivery attempts of a subscription, successful or not.",
		}, []string{"subscription"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fossil_subscription_failures_total", Help: "Failed delivery attempts by reason: retry (timeout, network, 408, 5xx), throttled (429), rejected (other statuses, nacks to park), gone (410).",
		}, []string{"subscription", "reason"}),
		parked: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "fossil_subscription_parked_total", Help: "Events parked by a subscription.",
		}, []string{"subscription"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "fossil_subscription_delivery_latency_seconds", Help: "Time from an event's commit to its delivery by a subscription.",
			Buckets: latencyBuckets,
		}),
	}
	m.registry.MustRegister(sm.delivered, sm.attempts, sm.failures, sm.parked, sm.latency)
	if statsFunc != nil {
		m.registry.MustRegister(&subscriptionCollector{fn: statsFunc})
	}
	m.subs = sm
}

// ObserveSubscriptionDelivered records one delivered event.
func (m *Metrics) ObserveSubscriptionDelivered(id string, latency, _ time.Duration) {
	if m.subs == nil {
		return
	}
	m.subs.delivered.WithLabelValues(id).Inc()
	m.subs.attempts.WithLabelValues(id).Inc()
	m.subs.latency.Observe(max(latency, 0).Seconds())
}

// ObserveSubscriptionFailure records one failed attempt.
func (m *Metrics) ObserveSubscriptionFailure(id, reason string) {
	if m.subs == nil {
		return
	}
	m.subs.attempts.WithLabelValues(id).Inc()
	m.subs.failures.WithLabelValues(id, reason).Inc()
}

// ObserveSubscriptionParked records one parked event.
func (m *Metrics) ObserveSubscriptionParked(id string) {
	if m.subs == nil {
		return
	}
	m.subs.parked.WithLabelValues(id).Inc()
}

type subscriptionCollector struct {
	fn func(ctx context.Context) (map[string]SubscriptionStats, error)
}

var (
	subscriptionLagDesc = prometheus.NewDesc("fossil_subscription_lag_events",
		"Events in the log after a subscription's position.", []string{"subscription"}, nil)
	subscriptionParkedDesc = prometheus.NewDesc("fossil_subscription_parked_events",
		"Events parked by a subscription now.", []string{"subscription"}, nil)
)

func (c *subscriptionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- subscriptionLagDesc
	ch <- subscriptionParkedDesc
}

func (c *subscriptionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	stats, err := c.fn(ctx)
	if err != nil {
		return
	}
	for id, s := range stats {
		ch <- prometheus.MustNewConstMetric(subscriptionLagDesc, prometheus.GaugeValue, float64(s.Lag), id)
		ch <- prometheus.MustNewConstMetric(subscriptionParkedDesc, prometheus.GaugeValue, float64(s.Parked), id)
	}
}
