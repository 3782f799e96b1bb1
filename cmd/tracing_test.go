package cmd

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/tracing"
)

// TestTracing: with tracing on, a request continues the caller's trace
// (W3C traceparent), the group commit is a child of the request's span and
// the statements are children of the group commit; the traceparent is kept
// on the stored event (CloudEvents distributed tracing) and comes back on
// every read and SSE frame.
func TestTracing(t *testing.T) {
	exporter := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exporter))
	cfg := DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.DatabaseURL = dbtest.NewDB(t)
	srv := NewServer(cfg, nil)
	srv.Tracing = tracing.New(tp)
	if err := srv.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	const (
		traceID     = "0af7651916cd43dd8448eb211c80319c"
		callerSpan  = "b7ad6b7169203331"
		traceparent = "00-" + traceID + "-" + callerSpan + "-01"
	)
	collect := func(doc string, header ...string) {
		t.Helper()
		h := map[string]string{"Fossil-Stream": "orders/1", "Content-Type": "application/cloudevents+json"}
		for i := 0; i+1 < len(header); i += 2 {
			h[header[i]] = header[i+1]
		}
		if resp, body := post(t, srv.URL()+"/collect", h, doc); resp.StatusCode != http.StatusOK {
			t.Fatalf("collect: %d %s", resp.StatusCode, body)
		}
	}
	collect(`{"specversion":"1.0","id":"a","source":"/t","type":"t","data":1}`, "traceparent", traceparent, "tracestate", "vendor=x")

	// The spans: the request's, its group commit's, the statements'.
	var server, group tracetest.SpanStub
	deadline := time.Now().Add(10 * time.Second)
	for server.Name == "" || group.Name == "" {
		if time.Now().After(deadline) {
			t.Fatalf("spans: %v", names(exporter.GetSpans()))
		}
		time.Sleep(20 * time.Millisecond)
		for _, s := range exporter.GetSpans() {
			switch s.Name {
			case "POST /collect":
				server = s
			case "fossil.append.group":
				group = s
			}
		}
	}
	if server.SpanKind != trace.SpanKindServer || server.SpanContext.TraceID().String() != traceID || server.Parent.SpanID().String() != callerSpan || !server.Parent.IsRemote() {
		t.Fatalf("the request's span does not continue the caller's trace: %+v", server)
	}
	if group.Parent.SpanID() != server.SpanContext.SpanID() || group.SpanContext.TraceID() != server.SpanContext.TraceID() {
		t.Fatalf("the group commit is not a child of the request: parent %s, request %s", group.Parent.SpanID(), server.SpanContext.SpanID())
	}
	if len(group.Links) != 1 || group.Links[0].SpanContext.SpanID() != server.SpanContext.SpanID() {
		t.Fatalf("the group commit links %v, want the request", group.Links)
	}
	statements := 0
	for _, s := range exporter.GetSpans() {
		if s.Parent.SpanID() == group.SpanContext.SpanID() && s.SpanKind == trace.SpanKindClient {
			statements++
		}
	}
	if statements == 0 {
		t.Fatalf("no statement spans under the group commit: %v", names(exporter.GetSpans()))
	}
	for _, s := range exporter.GetSpans() {
		if strings.Contains(s.Name, "healthz") {
			t.Fatalf("a probe was traced: %s", s.Name)
		}
	}

	// The event carries the caller's trace context, on every read.
	want := `"traceparent":"` + traceparent + `","tracestate":"vendor=x"`
	if body := get(t, srv.URL()+"/events/1"); !strings.Contains(string(body), want) {
		t.Fatalf("GET /events/1: %s\nwant %s", body, want)
	}
	if body := get(t, srv.URL()+"/streams/orders%2F1/events"); !strings.Contains(string(body), want) {
		t.Fatalf("stream read: %s", body)
	}
	req, _ := http.NewRequest(http.MethodGet, srv.URL()+"/sse?stream=orders%2F1", nil)
	req.Header.Set("Last-Event-Id", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && !strings.HasPrefix(sc.Text(), "data:") {
	}
	resp.Body.Close()
	if !strings.Contains(sc.Text(), want) {
		t.Fatalf("SSE frame %q, want %s", sc.Text(), want)
	}

	// An event's own traceparent wins; a malformed header is ignored.
	own := "00-11111111111111111111111111111111-2222222222222222-00"
	collect(`{"specversion":"1.0","id":"b","source":"/t","type":"t","traceparent":"`+own+`"}`, "traceparent", traceparent)
	collect(`{"specversion":"1.0","id":"c","source":"/t","type":"t"}`, "traceparent", "00-zz-bad")
	if body := string(get(t, srv.URL()+"/events/2")); !strings.Contains(body, `"traceparent":"`+own+`"`) || strings.Contains(body, traceID) {
		t.Fatalf("event with its own traceparent: %s", body)
	}
	if body := string(get(t, srv.URL()+"/events/3")); strings.Contains(body, "traceparent") {
		t.Fatalf("event with a malformed traceparent header: %s", body)
	}
	// A retry with the same trace context is a duplicate, not a conflict.
	collect(`{"specversion":"1.0","id":"a","source":"/t","type":"t","data":1}`, "traceparent", traceparent, "tracestate", "vendor=x")
}

func names(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name)
	}
	return out
}

// BenchmarkCollectTracing is the cost of tracing on the write path:
// POST /collect of one event from parallel clients, with tracing off and
// on (every span sampled and exported through a batch processor to an
// exporter that drops them), each against its own server in the same run.
//
//	go test -run XXX -bench CollectTracing -benchtime 3000x ./cmd/
func BenchmarkCollectTracing(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "Off", true: "On"}[on]
		b.Run(name, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.Addr = "127.0.0.1:0"
			cfg.DatabaseURL = dbtest.NewDB(b)
			srv := NewServer(cfg, nil)
			if on {
				tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
				b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
				srv.Tracing = tracing.New(tp)
			}
			if err := srv.Run(context.Background()); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = srv.Close() })
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			b.Cleanup(tr.CloseIdleConnections)
			hc := &http.Client{Transport: tr}
			var n atomic.Int64
			b.SetParallelism(8)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/collect", strings.NewReader(fmt.Sprintf(`{"specversion":"1.0","id":"%d","source":"/bench","type":"t","data":{"i":%d}}`, i, i)))
					req.Header.Set("Content-Type", "application/cloudevents+json")
					req.Header.Set("Fossil-Stream", fmt.Sprintf("bench/%d", i%64))
					req.Header.Set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
					resp, err := hc.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("collect: %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
