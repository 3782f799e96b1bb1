package subscription_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fossil-events/fossil/internal/testserver"
)

// The subscription benchmarks measure delivery end to end: a real server
// and PostgreSQL, a local sink. Run them with `make bench` (bench/run.sh)
// or: go test -run=NONE -bench=BenchmarkSubscription -benchtime=1x ./subscription/

// benchEvents is the size of the log the throughput benchmarks deliver.
const (
	benchStreams      = 1000
	benchPerStream    = 20
	benchLatencyRate  = 1000 // events/s
	benchLatencyTotal = 5000
)

// preload writes benchStreams × benchPerStream events in batches of one
// stream each.
func preload(b *testing.B, srv *testserver.Server) int {
	b.Helper()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for s := range benchStreams {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var body bytes.Buffer
			body.WriteString("[")
			for i := range benchPerStream {
				if i > 0 {
					body.WriteString(",")
				}
				fmt.Fprintf(&body, `{"specversion":"1.0","id":"b%d-%d","source":"/bench","type":"bench.event","data":{"i":%d}}`, s, i, i)
			}
			body.WriteString("]")
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/collect", &body)
			req.Header.Set("Content-Type", "application/cloudevents-batch+json")
			req.Header.Set("Fossil-Stream", fmt.Sprintf("bench/%d", s))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("preload: status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
	return benchStreams * benchPerStream
}

// BenchmarkSubscriptionWebhook: events/s delivered to a local webhook
// answering 204, over 1,000 streams.
func BenchmarkSubscriptionWebhook(b *testing.B) {
	srv := testserver.Start(b)
	total := preload(b, srv)
	var got atomic.Int64
	done := make(chan struct{})
	wh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if got.Add(1) == int64(total) {
			close(done)
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer wh.Close()
	b.ResetTimer()
	start := time.Now()
	create(b, srv, map[string]any{"protocol": "HTTP", "sink": wh.URL, "config": map[string]string{"startafter": "0", "handshake": "off", "maxinflight": "256"}})
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("only %d of %d delivered", got.Load(), total)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSubscriptionLatency: commit→delivery at 1,000 events/s to a
// local webhook. Each event carries its post time in ce-time, so the figure
// is post→delivery, an upper bound of commit→delivery.
func BenchmarkSubscriptionLatency(b *testing.B) {
	srv := testserver.Start(b)
	var mu sync.Mutex
	var lat []time.Duration
	wh := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if t, err := time.Parse(time.RFC3339Nano, r.Header.Get("Ce-Time")); err == nil {
			mu.Lock()
			lat = append(lat, time.Since(t))
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer wh.Close()
	create(b, srv, map[string]any{"protocol": "HTTP", "sink": wh.URL, "config": map[string]string{"handshake": "off"}})
	b.ResetTimer()
	const workers = 8
	interval := time.Second * workers / benchLatencyRate
	var wg sync.WaitGroup
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now()
			for i := range benchLatencyTotal / workers {
				time.Sleep(time.Until(next))
				next = next.Add(interval)
				req, _ := http.NewRequest(http.MethodPost, srv.URL+"/collect", strings.NewReader(`{}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Fossil-Stream", fmt.Sprintf("lat/%d", (w*1000+i)%100))
				req.Header.Set("ce-specversion", "1.0")
				req.Header.Set("ce-id", fmt.Sprintf("l%d-%d", w, i))
				req.Header.Set("ce-source", "/bench")
				req.Header.Set("ce-type", "bench.latency")
				req.Header.Set("ce-time", time.Now().UTC().Format(time.RFC3339Nano))
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(lat)
		mu.Unlock()
		if n >= benchLatencyTotal/workers*workers {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("only %d delivered", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.StopTimer()
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkSubscriptionNATS: events/s published to JetStream on
// 127.0.0.1:4222, over 1,000 streams.
func BenchmarkSubscriptionNATS(b *testing.B) {
	nc, err := nats.Connect(natsURL)
	if err != nil {
		b.Fatalf("NATS JetStream must run on %s: %v", natsURL, err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	name := "fossilbench_" + randomName()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(ctx, name) }()
	srv := testserver.Start(b)
	total := preload(b, srv)
	b.ResetTimer()
	start := time.Now()
	create(b, srv, map[string]any{"protocol": "NATS", "sink": natsURL, "protocolsettings": map[string]any{"subject": name + ".events"},
		"config": map[string]string{"startafter": "0", "maxinflight": "512"}})
	deadline := time.Now().Add(5 * time.Minute)
	for {
		info, err := stream.Info(ctx)
		if err == nil && info.State.Msgs >= uint64(total) {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("not all %d published", total)
		}
		time.Sleep(5 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(total)/elapsed.Seconds(), "events/s")
	b.ReportMetric(0, "ns/op")
}
