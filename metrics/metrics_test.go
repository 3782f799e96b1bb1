package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
	"github.com/fossil-events/fossil/metrics"
)

// TestMain gives every test its own database (see internal/dbtest) and
// checks for leaked goroutines.
func TestMain(m *testing.M) { dbtest.Main(m) }

// scrape is one parsed exposition.
type scrape map[string]*dto.MetricFamily

// value returns the value of the series of family name whose labels
// include want (name=value pairs), and whether it exists. For a histogram
// it is the sample count.
func (s scrape) value(name string, want ...string) (float64, bool) {
	mf, ok := s[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == want[i] && lp.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func (s scrape) histogramSum(name string, want ...string) float64 {
	for _, m := range s[name].GetMetric() {
		ok := true
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				found = found || (lp.GetName() == want[i] && lp.GetValue() == want[i+1])
			}
			ok = ok && found
		}
		if ok && m.Histogram != nil {
			return m.GetHistogram().GetSampleSum()
		}
	}
	return -1
}

func mustScrape(t *testing.T, url string) scrape {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Fatalf("scrape: Content-Type %q, want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("parse scrape: %v\n%s", err, body)
	}
	return mfs
}

// waitFor scrapes until cond holds or fails after 10s.
func waitFor(t *testing.T, url, what string, cond func(scrape) bool) scrape {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s := mustScrape(t, url)
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestServerMetrics(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t)
	url := srv.URL + "/metrics"

	sse := srv.OpenSSE(t, "/sse?stream=m/{id}")
	waitFor(t, url, "one SSE subscriber", func(s scrape) bool {
		v, _ := s.value("fossil_sse_subscribers")
		return v == 1
	})

	srv.MustPost(t, "m/1", testserver.Event{ID: "e1", Data: `{"n":1}`})
	srv.MustPost(t, "m/2", testserver.Event{ID: "e2", Data: `{"n":2}`})
	srv.MustPost(t, "m/1", testserver.Event{ID: "e3", Data: `{"n":3}`})
	// An identical retry, a failed expected sequence and an invalid request.
	if resp, body := srv.Post(t, "m/1", testserver.Event{ID: "e1", Data: `{"n":1}`}); resp.Header.Get("Fossil-Duplicate") != "true" {
		t.Fatalf("retry: status %d, no Fossil-Duplicate: %s", resp.StatusCode, body)
	}
	if resp, body := srv.Post(t, "m/1", testserver.Event{ID: "e4"}, "Fossil-Expected-Sequence-Number", "1"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("stale expected sequence: status %d: %s", resp.StatusCode, body)
	}
	if resp, body := srv.Post(t, "", testserver.Event{ID: "e5"}); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no stream: status %d: %s", resp.StatusCode, body)
	}
	sse.Next(t, 3, 10*time.Second)

	// A named consumer at offset 1 lags the head (3) by 2.
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/consumer/billing/commit", nil)
	req.Header.Set("Last-Event-Id", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("commit: status %d", resp.StatusCode)
	}

	// Delivery is observed after the write, so the client may see the
	// frames a moment before the counter moves.
	s := waitFor(t, url, "3 delivered events", func(s scrape) bool {
		v, _ := s.value("fossil_events_delivered_total")
		return v >= 3
	})

	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"fossil_appends_total", []string{"result", "ok"}, 3},
		{"fossil_appends_total", []string{"result", "duplicate"}, 1},
		{"fossil_appends_total", []string{"result", "conflict"}, 1},
		{"fossil_appends_total", []string{"result", "invalid"}, 1},
		{"fossil_appends_total", []string{"result", "unavailable"}, 0},
		{"fossil_appends_total", []string{"result", "error"}, 0},
		{"fossil_append_duration_seconds", []string{"result", "ok"}, 3},
		{"fossil_sse_subscribers", nil, 1},
		{"fossil_consumer_lag_events", []string{"consumer", "billing"}, 2},
		{"fossil_db_pool_max_conns", nil, 20},
		{"fossil_consumer_lag_errors_total", nil, 0},
	} {
		got, ok := s.value(tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	// The retry and the conflict went through the appender too, so the
	// groups held at least the three new events.
	for _, tt := range []struct {
		name string
		min  float64
	}{
		{"fossil_events_appended_total", 3},
		{"fossil_append_group_events", 1},
		{"fossil_append_group_requests", 1},
		{"fossil_append_group_duration_seconds", 1},
		{"fossil_delivery_lag_seconds", 1},
		{"fossil_db_pool_total_conns", 1},
		{"fossil_db_pool_acquires_total", 1},
		{"go_goroutines", 1},
	} {
		if got, ok := s.value(tt.name); !ok || got < tt.min {
			t.Errorf("%s = %v (present %v), want at least %v", tt.name, got, ok, tt.min)
		}
	}
	if v, _ := s.value("fossil_append_groups_total", "result", "ok"); v < 1 {
		t.Errorf("fossil_append_groups_total{result=ok} = %v, want at least 1", v)
	}
	if sum := s.histogramSum("fossil_append_group_events"); sum < 3 {
		t.Errorf("events in groups = %v, want at least 3", sum)
	}
	if sum := s.histogramSum("fossil_delivery_lag_seconds"); sum <= 0 || sum > 30 {
		t.Errorf("delivery lag sum = %vs, want a plausible positive value", sum)
	}
	if sum := s.histogramSum("fossil_append_duration_seconds", "result", "ok"); sum <= 0 || sum > 30 {
		t.Errorf("append latency sum = %vs, want a plausible positive value", sum)
	}

	sse.Close()
	waitFor(t, url, "no SSE subscriber", func(s scrape) bool {
		v, _ := s.value("fossil_sse_subscribers")
		return v == 0
	})
}

func TestHooks(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Config{
		SubscribersFunc: func() int64 { return 7 },
		ConsumerLagFunc: func(context.Context) (map[string]int64, error) {
			return map[string]int64{"a": 1, "b": 0}, nil
		},
		PoolStatsFunc: func() metrics.PoolStats {
			return metrics.PoolStats{AcquiredConns: 2, IdleConns: 3, TotalConns: 5, MaxConns: 20, AcquireCount: 9, AcquireDuration: 1500 * time.Millisecond, EmptyAcquire: 4}
		},
	})
	m.ObserveAppend(metrics.ResultOK, 2*time.Millisecond)
	m.ObserveAppend("bogus", time.Millisecond) // unknown results count as errors
	m.ObserveGroup(3, 250, 4*time.Millisecond, nil)
	m.ObserveGroup(1, 5, time.Millisecond, errors.New("boom"))
	m.ObserveDelivery(10, 3*time.Millisecond)
	m.ObserveDelivery(1, -time.Millisecond) // clock skew never goes negative

	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	s := mustScrape(t, srv.URL)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"fossil_appends_total", []string{"result", "ok"}, 1},
		{"fossil_appends_total", []string{"result", "error"}, 1},
		{"fossil_events_appended_total", nil, 250},
		{"fossil_append_groups_total", []string{"result", "ok"}, 1},
		{"fossil_append_groups_total", []string{"result", "error"}, 1},
		{"fossil_append_group_events", nil, 2},
		{"fossil_events_delivered_total", nil, 11},
		{"fossil_delivery_lag_seconds", nil, 2},
		{"fossil_sse_subscribers", nil, 7},
		{"fossil_consumer_lag_events", []string{"consumer", "a"}, 1},
		{"fossil_consumer_lag_events", []string{"consumer", "b"}, 0},
		{"fossil_db_pool_acquired_conns", nil, 2},
		{"fossil_db_pool_idle_conns", nil, 3},
		{"fossil_db_pool_total_conns", nil, 5},
		{"fossil_db_pool_max_conns", nil, 20},
		{"fossil_db_pool_acquires_total", nil, 9},
		{"fossil_db_pool_acquire_duration_seconds_total", nil, 1.5},
		{"fossil_db_pool_empty_acquires_total", nil, 4},
	} {
		got, ok := s.value(tt.name, tt.labels...)
		if !ok || got != tt.want {
			t.Errorf("%s%v = %v (present %v), want %v", tt.name, tt.labels, got, ok, tt.want)
		}
	}
	if sum := s.histogramSum("fossil_append_group_events"); sum != 255 {
		t.Errorf("group events sum = %v, want 255", sum)
	}
	if sum := s.histogramSum("fossil_delivery_lag_seconds"); sum != 0.003 {
		t.Errorf("delivery lag sum = %v, want 0.003", sum)
	}
}

func TestConsumerLagFailureKeepsServing(t *testing.T) {
	t.Parallel()
	m := metrics.New(metrics.Config{
		ConsumerLagFunc: func(ctx context.Context) (map[string]int64, error) {
			<-ctx.Done() // a database that does not answer
			return nil, ctx.Err()
		},
		ConsumerLagTimeout: 10 * time.Millisecond,
	})
	m.ObserveAppend(metrics.ResultOK, time.Millisecond)
	srv := httptest.NewServer(m.Handler())
	t.Cleanup(srv.Close)
	s := mustScrape(t, srv.URL)
	if _, ok := s.value("fossil_consumer_lag_events"); ok {
		t.Error("consumer lag served although the function failed")
	}
	if v, _ := s.value("fossil_consumer_lag_errors_total"); v != 1 {
		t.Errorf("fossil_consumer_lag_errors_total = %v, want 1", v)
	}
	if v, _ := s.value("fossil_appends_total", "result", "ok"); v != 1 {
		t.Errorf("fossil_appends_total{result=ok} = %v, want 1", v)
	}
}
