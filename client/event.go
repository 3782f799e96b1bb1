package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/cloudevents/sdk-go/v2/event"
	"go.opentelemetry.io/otel/propagation"

	"github.com/fossil-events/fossil/fossil"
)

// Event is a stored event as the server serves it: the CloudEvent (without
// the server's fossil* extensions, so it can be collected again as is) and
// its place in the log.
type Event struct {
	event.Event
	// Number is the event's position in the global log: dense, in commit
	// order. It is the cursor of Subscribe and the offset of consumers.
	Number int64
	// Stream and Sequence say where the event was collected: Sequence
	// counts from 1 in its stream, without holes.
	Stream   string
	Sequence int64
	// ExpectAck lists the consumers a writer waits for (fossilexpectack).
	ExpectAck []string
	// Raw is the event's JSON exactly as the server sent it, fossil*
	// extensions included.
	Raw json.RawMessage
}

// TraceContext returns ctx carrying the trace context the event was
// collected in (its CloudEvents distributed-tracing extension,
// traceparent and tracestate), as a remote parent: a span started from it
// continues the producer's trace. ctx is returned as is when the event
// has none.
func (e *Event) TraceContext(ctx context.Context) context.Context {
	carrier := propagation.MapCarrier{}
	for _, name := range []string{"traceparent", "tracestate"} {
		if v, ok := e.Extensions()[name].(string); ok {
			carrier[name] = v
		}
	}
	if carrier["traceparent"] == "" {
		return ctx
	}
	return propagation.TraceContext{}.Extract(ctx, carrier)
}

// NeedsAck reports whether a writer waits for consumer to acknowledge the
// event.
func (e *Event) NeedsAck(consumer string) bool { return slices.Contains(e.ExpectAck, consumer) }

// parseEvent decodes one served event.
func parseEvent(raw []byte) (*Event, error) {
	raw = bytes.Clone(raw)
	stored, err := fossil.ParseJSON("event", raw)
	if err != nil {
		return nil, fmt.Errorf("fossil client: %w", err)
	}
	e := &Event{Number: stored.Number, Stream: stored.Stream, Sequence: stored.Sequence, ExpectAck: stored.ExpectAck, Raw: raw}
	if err := e.Event.UnmarshalJSON(stored.Doc); err != nil {
		return nil, fmt.Errorf("fossil client: event %d: %w", stored.Number, err)
	}
	return e, nil
}

// parseBatch decodes a JSON array of served events.
func parseBatch(body []byte) ([]*Event, error) {
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil {
		return nil, fmt.Errorf("fossil client: decode events: %w", err)
	}
	out := make([]*Event, len(raws))
	for i, raw := range raws {
		e, err := parseEvent(raw)
		if err != nil {
			return nil, err
		}
		out[i] = e
	}
	return out, nil
}
