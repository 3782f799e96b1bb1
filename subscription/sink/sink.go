// Package sink delivers one event to one destination. Each protocol is one
// file (http.go, nats.go, kafka.go) implementing [Sink]; the dispatcher in
// package subscription knows nothing of HTTP, NATS or Kafka. A sink never
// retries: it reports an [Outcome], and the dispatcher turns outcomes into
// retries, backoff and parking.
package sink

import (
	"context"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Message is one event to deliver.
type Message struct {
	// Event is the CloudEvent with the fossil extensions.
	Event *event.Event
	// Source is the event's source exactly as the producer sent it.
	Source string
	// Stream is the Fossil stream (the Kafka record key).
	Stream string
	// ID identifies this delivery for deduplication by the destination
	// ("<subscription id>:<event number>"), the same on every attempt.
	ID string
	// Number is the event number.
	Number int64
	// JSON renders the event as one line of CloudEvents JSON with the
	// fossil extensions (for pull members).
	JSON func() []byte
}

// Kind classifies the answer to one delivery attempt.
type Kind int

// Outcomes of one attempt.
const (
	// Delivered: the destination took the event.
	Delivered Kind = iota
	// Retry: a transient failure (timeout, network, 408, 5xx); counts as an
	// attempt and backs off.
	Retry
	// RetryAfter: the destination asked to wait (429); does not count as an
	// attempt. Outcome.After is the wait it asked for (0 when unsaid).
	RetryAfter
	// Reject: the destination refused the event for good; it is parked.
	Reject
	// Disable: the destination is gone (410); the subscription stops
	// before this event.
	Disable
)

// Outcome is the result of one attempt.
type Outcome struct {
	Kind  Kind
	After time.Duration // RetryAfter only
	Err   string        // what went wrong, for lasterror and logs
}

// Reason is a short label of the outcome for metrics.
func (o Outcome) Reason() string {
	switch o.Kind {
	case Delivered:
		return "delivered"
	case Retry:
		return "retry"
	case RetryAfter:
		return "throttled"
	case Reject:
		return "rejected"
	case Disable:
		return "gone"
	}
	return "unknown"
}

// Sink delivers events to one destination. Send is called concurrently
// (for different streams) and must respect ctx, whose deadline is the
// attempt's time limit.
type Sink interface {
	Send(ctx context.Context, m *Message) Outcome
	Close() error
}

// Header is one attribute of a binary-mode message.
type Header struct{ Name, Value string }

// BinaryHeaders returns the attributes of m as binary-mode headers named
// prefix+attribute (the NATS and Kafka bindings), with datacontenttype as
// content-type, the event's W3C trace context as traceparent and
// tracestate (see [TraceContext]), and the data.
func BinaryHeaders(m *Message, prefix string) ([]Header, []byte) {
	ev := m.Event
	hs := make([]Header, 0, 12)
	add := func(name, v string) {
		if v != "" {
			hs = append(hs, Header{prefix + name, v})
		}
	}
	add("specversion", ev.SpecVersion())
	add("id", ev.ID())
	add("source", m.Source)
	add("type", ev.Type())
	add("subject", ev.Subject())
	if t := ev.Time(); !t.IsZero() {
		add("time", t.UTC().Format(time.RFC3339Nano))
	}
	add("dataschema", ev.DataSchema())
	for name, v := range ev.Extensions() {
		s, err := types.Format(v)
		if err == nil {
			add(name, s)
		}
	}
	if ct := ev.DataContentType(); ct != "" {
		hs = append(hs, Header{"content-type", ct})
	}
	if tp, ts := TraceContext(ev); tp != "" {
		hs = append(hs, Header{"traceparent", tp})
		if ts != "" {
			hs = append(hs, Header{"tracestate", ts})
		}
	}
	return hs, ev.Data()
}

// TraceContext returns the trace context an event carries in the
// CloudEvents distributed-tracing extension (its traceparent and
// tracestate attributes), in the canonical W3C form, or "" when it has
// no traceparent or an invalid one (an invalid tracestate is dropped).
// The sinks send it as the protocol's own trace headers, traceparent and
// tracestate, beside the attributes' ce- forms: Fossil does not trace a
// delivery itself, so the event travels to the consumer as one hop from
// its producer, and the W3C headers that a consumer's tracing
// instrumentation reads (otelhttp, the NATS and Kafka instrumentations)
// continue the producer's trace.
func TraceContext(ev *event.Event) (traceparent, tracestate string) {
	exts := ev.Extensions()
	tp, _ := exts["traceparent"].(string)
	if tp == "" {
		return "", ""
	}
	ts, _ := exts["tracestate"].(string)
	carrier := traceCarrier{tp, ts}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), carrier))
	if !sc.IsValid() {
		return "", ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String(), sc.TraceState().String()
}

// traceCarrier hands an event's trace context to the W3C propagator.
type traceCarrier struct{ traceparent, tracestate string }

func (c traceCarrier) Get(key string) string {
	switch key {
	case "traceparent":
		return c.traceparent
	case "tracestate":
		return c.tracestate
	}
	return ""
}

func (c traceCarrier) Set(string, string) {}

func (c traceCarrier) Keys() []string { return []string{"traceparent", "tracestate"} }
