package client_test

import (
	"context"
	"strings"
	"testing"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/trace"
)

// TestTraceContext: Collect sends the caller's trace context; the stored
// event carries it (the CloudEvents distributed-tracing extension), the
// same on a retry after a lost answer, and Event.TraceContext gives it
// back to the consumer as the parent of its spans.
func TestTraceContext(t *testing.T) {
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	c := newClient(t, p.URL())
	tid, _ := trace.TraceIDFromHex("4bf92f3577b34da6a3ce929d0e0e4736")
	sid, _ := trace.SpanIDFromHex("00f067aa0ba902b7")
	producer := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled})
	ctx := trace.ContextWithSpanContext(context.Background(), producer)

	// The first answer is lost after the server committed: the retry is
	// the same document, so a duplicate.
	p.inject("/collect", dropAfter)
	res, err := c.Collect(ctx, "traced/1", []event.Event{newEvent(t, "t1", "t", map[string]int{"a": 1})})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Duplicate || res.Last().Number != 1 {
		t.Fatalf("retried collect: %+v", res)
	}
	page, err := c.ReadStream(context.Background(), "traced/1", 1, 10)
	if err != nil || len(page.Events) != 1 {
		t.Fatalf("read: %v %+v", err, page)
	}
	ev := page.Events[0]
	if !strings.Contains(string(ev.Raw), `"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"`) {
		t.Fatalf("stored event %s", ev.Raw)
	}
	got := trace.SpanContextFromContext(ev.TraceContext(context.Background()))
	if got.TraceID() != tid || got.SpanID() != sid || !got.IsRemote() || !got.IsSampled() {
		t.Fatalf("Event.TraceContext: %+v", got)
	}
	// Without a trace context, nothing is added.
	if _, err := c.Collect(context.Background(), "traced/2", []event.Event{newEvent(t, "t2", "t", nil)}); err != nil {
		t.Fatal(err)
	}
	page, _ = c.ReadStream(context.Background(), "traced/2", 1, 10)
	if strings.Contains(string(page.Events[0].Raw), "traceparent") {
		t.Fatalf("untraced event %s", page.Events[0].Raw)
	}
	if ctx := context.Background(); page.Events[0].TraceContext(ctx) != ctx {
		t.Fatal("TraceContext of an untraced event changed the context")
	}
}
