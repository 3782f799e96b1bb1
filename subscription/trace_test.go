package subscription_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fossil-events/fossil/internal/testserver"
)

// The producers' trace contexts: the first with a tracestate, the second
// without; a third event is posted without any.
const (
	traceID1     = "4bf92f3577b34da6a3ce929d0e0e4736"
	traceparent1 = "00-" + traceID1 + "-00f067aa0ba902b7-01"
	tracestate1  = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	traceparent2 = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-00"
)

// postTraced posts three events to orders/1: with traceparent1 and
// tracestate1, with traceparent2, and with no trace context.
func postTraced(t *testing.T, srv *testserver.Server) {
	t.Helper()
	srv.MustPost(t, "orders/1", testserver.Event{ID: "t1", Type: "order.placed", Data: `{"i":1}`}, "traceparent", traceparent1, "tracestate", tracestate1)
	srv.MustPost(t, "orders/1", testserver.Event{ID: "t2", Type: "order.placed", Data: `{"i":2}`}, "traceparent", traceparent2)
	srv.MustPost(t, "orders/1", testserver.Event{ID: "t3", Type: "order.placed", Data: `{"i":3}`})
}

// checkTraceHeaders checks the trace headers of the three deliveries of
// postTraced, get reading one header of delivery i ("" when absent): the
// extension's binary-mode form (prefix+"traceparent") and the W3C
// traceparent and tracestate beside it.
func checkTraceHeaders(t *testing.T, prefix string, get func(i int, name string) string) {
	t.Helper()
	want := []map[string]string{
		{prefix + "traceparent": traceparent1, prefix + "tracestate": tracestate1, "traceparent": traceparent1, "tracestate": tracestate1},
		{prefix + "traceparent": traceparent2, prefix + "tracestate": "", "traceparent": traceparent2, "tracestate": ""},
		{prefix + "traceparent": "", prefix + "tracestate": "", "traceparent": "", "tracestate": ""},
	}
	for i, w := range want {
		for name, v := range w {
			if got := get(i, name); got != v {
				t.Errorf("delivery %d: header %s = %q, want %q", i+1, name, got, v)
			}
		}
	}
}

// A webhook delivery carries the producer's trace context as the W3C
// traceparent and tracestate headers beside ce-traceparent, so the
// receiver's otelhttp middleware continues the producer's trace.
func TestWebhookDeliveryCarriesTraceContext(t *testing.T) {
	t.Parallel()
	exporter := tracetest.NewInMemoryExporter() // every span, also under the unsampled traceparent2
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	var mu sync.Mutex
	var got []http.Header
	receiver := otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
			return
		}
		mu.Lock()
		got = append(got, r.Header.Clone())
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}), "receive", otelhttp.WithTracerProvider(tp), otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithFilter(func(r *http.Request) bool { return r.Method == http.MethodPost }))
	hook := httptest.NewServer(receiver)
	t.Cleanup(hook.Close)

	srv := testserver.Start(t, fast)
	postTraced(t, srv)
	create(t, srv, httpSub(hook.URL, nil))
	testserver.Eventually(t, 10*time.Second, "3 deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 3
	})
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 3 {
		t.Fatalf("%d deliveries, want 3", len(got))
	}
	checkTraceHeaders(t, "ce-", func(i int, name string) string {
		if vs := got[i].Values(name); len(vs) > 0 {
			if len(vs) > 1 {
				t.Errorf("delivery %d: header %s sent %d times: %q", i+1, name, len(vs), vs)
			}
			return vs[0]
		}
		return ""
	})

	// The receiver's spans (each ends after its answer): children of the
	// producers' spans for the first two, a new trace for the third.
	testserver.Eventually(t, 10*time.Second, "3 receiver spans", func() bool { return len(exporter.GetSpans()) >= 3 })
	spans := exporter.GetSpans()
	if len(spans) != 3 {
		t.Fatalf("%d receiver spans, want 3", len(spans))
	}
	wantParent := []string{traceparent1, traceparent2, ""}
	for i, s := range spans {
		parent := ""
		if s.Parent.IsValid() {
			parent = "00-" + s.Parent.TraceID().String() + "-" + s.Parent.SpanID().String() + "-" + s.Parent.TraceFlags().String()
		}
		if !s.Parent.IsRemote() && parent != "" || parent != wantParent[i] {
			t.Errorf("receiver span %d: parent %q (remote %v), want %q", i+1, parent, s.Parent.IsRemote(), wantParent[i])
		}
		if i == 0 && s.SpanContext.TraceState().String() != tracestate1 {
			t.Errorf("receiver span 1: tracestate %q, want %q", s.SpanContext.TraceState().String(), tracestate1)
		}
	}
}

// A JetStream message carries the trace context as the ce- headers of the
// NATS binding and the W3C traceparent and tracestate headers.
func TestNATSDeliveryCarriesTraceContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, stream, name := jetStream(ctx, t, 0)

	srv := testserver.Start(t, fast)
	postTraced(t, srv)
	create(t, srv, map[string]any{
		"protocol": "NATS", "sink": natsURL,
		"protocolsettings": map[string]any{"subject": name + ".events"},
		"config":           map[string]string{"startafter": "0"},
	})
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []nats.Header
	for len(got) < 3 {
		msgs, err := cons.Fetch(3-len(got), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range msgs.Messages() {
			n++
			got = append(got, m.Headers())
		}
		if n == 0 {
			t.Fatalf("only %d of 3 messages arrived", len(got))
		}
	}
	checkTraceHeaders(t, "ce-", func(i int, name string) string {
		vs := got[i].Values(name)
		if len(vs) > 1 {
			t.Errorf("message %d: header %s sent %d times: %q", i+1, name, len(vs), vs)
		}
		return got[i].Get(name)
	})
}

// A Kafka record carries the trace context as the ce_ headers of the Kafka
// binding and the W3C traceparent and tracestate headers.
func TestKafkaDeliveryCarriesTraceContext(t *testing.T) {
	t.Parallel()
	topic, addr := kafkaCluster(t, 1)

	srv := testserver.Start(t, fast)
	postTraced(t, srv)
	create(t, srv, map[string]any{
		"protocol": "KAFKA", "sink": "kafka://" + addr,
		"protocolsettings": map[string]any{"topicname": topic},
		"config":           map[string]string{"startafter": "0"},
	})
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var got [][]kgo.RecordHeader
	for len(got) < 3 {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("only %d of 3 records arrived", len(got))
		}
		fs.EachRecord(func(rec *kgo.Record) { got = append(got, rec.Headers) })
	}
	checkTraceHeaders(t, "ce_", func(i int, name string) string {
		v, n := "", 0
		for _, h := range got[i] {
			if h.Key == name {
				v, n = string(h.Value), n+1
			}
		}
		if n > 1 {
			t.Errorf("record %d: header %s sent %d times", i+1, name, n)
		}
		return v
	})
}

// A competing consumer's frame carries the trace context as the event's
// traceparent and tracestate attributes.
func TestPullFrameCarriesTraceContext(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	postTraced(t, srv)
	id := create(t, srv, map[string]any{"protocol": "SSE", "config": map[string]string{"startafter": "0"}})["id"].(string)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/subscriptions/"+id+"/sse", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("join: status %d", resp.StatusCode)
	}
	var got []map[string]any
	sc := bufio.NewScanner(resp.Body)
	for len(got) < 3 && sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var ev map[string]any
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				t.Fatalf("frame %q: %v", line, err)
			}
			got = append(got, ev)
			// The next event of the stream comes once this one is acked.
			n, _ := ev["fossileventnumber"].(float64)
			if code := ack(t, srv, id, "ack", map[string]any{"numbers": []int64{int64(n)}}); code != http.StatusNoContent {
				t.Fatalf("ack %v: status %d", n, code)
			}
		}
	}
	if len(got) != 3 {
		t.Fatalf("%d frames, want 3 (%v)", len(got), sc.Err())
	}
	checkTraceHeaders(t, "", func(i int, name string) string {
		v, _ := got[i][name].(string)
		return v
	})
}
