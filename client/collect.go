package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	"github.com/fossil-events/fossil/fossil"
)

// Result is the answer to a successful [Client.Collect].
type Result struct {
	// Events holds one position per collected event, in request order.
	Events []Position
	// Duplicate is true when the server already held these events (the
	// same source and id with identical content): Events are then the
	// original positions. A retry after a lost answer ends this way.
	Duplicate bool
	// TimedOut names the consumers that did not acknowledge within their
	// timeout (the server answered 202). The events are stored either way.
	TimedOut []string
	// Attempts is how many requests it took (1 without retries).
	Attempts int
}

// Position is where one collected event was stored.
type Position struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Number   int64  `json:"fossileventnumber"`
	Sequence int64  `json:"fossilsequenceinstream"`
}

// Last returns the position of the last collected event.
func (r *Result) Last() Position {
	if len(r.Events) == 0 {
		return Position{}
	}
	return r.Events[len(r.Events)-1]
}

// CollectOption adjusts one [Client.Collect].
type CollectOption func(*collectOptions)

type collectOptions struct {
	expected  int64
	replace   bool
	waits     []string
	waitSpecs []waitSpec // the same, for a Pipeline
}

type waitSpec struct {
	name    string
	timeout time.Duration
}

// ExpectSequence makes the append conditional: the (first) event must get
// sequence n in its stream, i.e. the stream must hold exactly n-1 events
// (1: the stream must be empty). Otherwise nothing is written and Collect
// returns an [*Error] that matches fossil.ErrSequenceConflict.
func ExpectSequence(n int64) CollectOption { return func(o *collectOptions) { o.expected = n } }

// Replace overwrites the stored event with the same source and id in place
// (GDPR erasure): same number, stream and sequence.
func Replace() CollectOption { return func(o *collectOptions) { o.replace = true } }

// WaitFor makes Collect return only once the named consumer acknowledged
// the events, or timeout passed (0: the server's default). It may be given
// for several consumers.
func WaitFor(consumer string, timeout time.Duration) CollectOption {
	return func(o *collectOptions) {
		w := "<" + consumer + ">"
		if timeout > 0 {
			w += "; timeout=" + strconv.FormatInt(max(timeout.Milliseconds(), 1), 10)
		}
		o.waits = append(o.waits, w)
		o.waitSpecs = append(o.waitSpecs, waitSpec{consumer, timeout})
	}
}

// Collect appends events to stream: one event in structured mode, several
// as one atomic batch (all are stored or none). It returns once the server
// has durably committed them.
//
// An event without an id gets a random one (set on the caller's event), so
// that every attempt sends the same source and id: a network error or a
// 5xx answer is retried as the client's [Retry] policy allows, and a retry
// of a request that was in fact committed gets the original positions
// (Result.Duplicate), never a second copy. A 4xx answer is never retried;
// it is returned as an [*Error].
func (c *Client) Collect(ctx context.Context, stream string, events []event.Event, opts ...CollectOption) (*Result, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("fossil client: collect: no events")
	}
	var o collectOptions
	for _, opt := range opts {
		opt(&o)
	}
	for i := range events {
		if events[i].Context == nil {
			return nil, fmt.Errorf("fossil client: collect: event %d has no context (make events with event.New)", i)
		}
		if events[i].ID() == "" {
			events[i].SetID(uuid.NewString())
		}
	}
	var (
		body []byte
		ct   string
		err  error
	)
	if len(events) == 1 {
		ct = "application/cloudevents+json"
		body, err = json.Marshal(&events[0])
	} else {
		ct = "application/cloudevents-batch+json"
		body, err = json.Marshal(events)
	}
	if err != nil {
		return nil, fmt.Errorf("fossil client: collect: encode events: %w", err)
	}
	return c.collect(ctx, stream, ct, body, o)
}

// CollectJSON appends events given as structured-mode CloudEvents JSON
// documents, sent exactly as given (Collect re-encodes events through the
// CloudEvents SDK, which normalises URI attributes). Every event needs its
// id: retries are safe only then. One document is sent in structured
// mode, several as one atomic batch.
func (c *Client) CollectJSON(ctx context.Context, stream string, events []json.RawMessage, opts ...CollectOption) (*Result, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("fossil client: collect: no events")
	}
	var o collectOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(events) == 1 {
		return c.collect(ctx, stream, "application/cloudevents+json", events[0], o)
	}
	body, err := json.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("fossil client: collect: %w", err)
	}
	return c.collect(ctx, stream, "application/cloudevents-batch+json", body, o)
}

func (c *Client) collect(ctx context.Context, stream, contentType string, body []byte, o collectOptions) (*Result, error) {
	r := &request{method: http.MethodPost, path: "/collect", header: http.Header{"Content-Type": {contentType}}, body: body}
	r.header.Set(fossil.HeaderStream, stream)
	if o.expected > 0 {
		r.header.Set(fossil.HeaderExpectedSequence, strconv.FormatInt(o.expected, 10))
	}
	if o.replace {
		r.header.Set(fossil.HeaderReplace, "true")
	}
	if len(o.waits) > 0 {
		r.header.Set(fossil.HeaderWaitConsumer, strings.Join(o.waits, ", "))
	}
	resp, attempts, err := c.do(ctx, r, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	res := &Result{Attempts: attempts, Duplicate: resp.Header.Get(fossil.HeaderDuplicate) == "true"}
	var answer struct {
		Events []Position `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&answer); err != nil {
		return nil, fmt.Errorf("fossil client: collect: decode answer: %w", err)
	}
	res.Events = answer.Events
	if t := resp.Header.Get(fossil.HeaderTimeout); t != "" {
		for _, name := range strings.Split(t, ",") {
			res.TimedOut = append(res.TimedOut, strings.TrimSpace(name))
		}
	}
	return res, nil
}

// CollectEvent appends one event; see [Client.Collect].
func (c *Client) CollectEvent(ctx context.Context, stream string, ev event.Event, opts ...CollectOption) (*Result, error) {
	return c.Collect(ctx, stream, []event.Event{ev}, opts...)
}
