package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"golang.org/x/sync/semaphore"
	"google.golang.org/protobuf/proto"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/collector"
	"github.com/fossil-events/fossil/fossil"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/store"
)

// maxWaitConsumers bounds the consumers one request may wait for, as
// Fossil-Wait-Consumer does.
const maxWaitConsumers = 32

// Collect appends one event or an atomic batch, as POST /collect.
func (h *Handler) Collect(ctx context.Context, req *connect.Request[fossilv1.CollectRequest]) (*connect.Response[fossilv1.CollectResponse], error) {
	start := time.Now()
	out, err := h.collect(ctx, req)
	h.observe(start, out, err)
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return connect.NewResponse(out), nil
}

// collect is Collect without the error rendering.
func (h *Handler) collect(ctx context.Context, req *connect.Request[fossilv1.CollectRequest]) (*fossilv1.CollectResponse, error) {
	m := req.Msg
	ar, waits, err := h.prepare(ctx, m, traceOf(req.Header()))
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, h.cfg.AppendTimeout)
	defer cancel()
	res, err := h.cfg.Appender.Append(actx, ar)
	return h.answer(ctx, res, err, waits)
}

// answer turns an append's outcome into the response, after waiting for
// the consumers the request named.
func (h *Handler) answer(ctx context.Context, res *store.AppendResult, err error, waits []WaitConsumer) (*fossilv1.CollectResponse, error) {
	if sc, ok := errors.AsType[*fossil.StoredConflictError](err); ok && auth.CanRead(ctx, sc.Stream) != nil {
		sc.Hidden = true // say only what the token may read
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w: the append was not confirmed in time; it may or may not be stored, and retrying it is safe", fossil.ErrUnavailable)
		}
		return nil, err
	}
	out := &fossilv1.CollectResponse{Events: make([]*fossilv1.Position, len(res.Events)), Duplicate: res.Duplicate}
	for i, p := range res.Events {
		out.Events[i] = &fossilv1.Position{Id: p.ID, Source: p.Source, EventNumber: uint64(p.Number), Sequence: uint64(p.Sequence)}
	}
	if len(waits) > 0 {
		numbers := make([]int64, len(res.Events))
		for i, p := range res.Events {
			numbers[i] = p.Number
		}
		timedOut, err := h.cfg.WaitAcks(ctx, numbers, waits)
		if err != nil {
			return nil, err // the client went away; the events are stored
		}
		out.TimedOut = timedOut
	}
	return out, nil
}

func (h *Handler) observe(start time.Time, out *fossilv1.CollectResponse, err error) {
	if h.cfg.Observe != nil {
		h.cfg.Observe(err, out.GetDuplicate(), time.Since(start))
	}
}

// traceContext is the W3C trace context a call carried in its metadata
// (traceparent, tracestate), in canonical form; zero when none or malformed.
type traceContext struct{ parent, state string }

// traceOf reads the trace context of a call's metadata, as POST /collect
// reads its headers.
func traceOf(md http.Header) traceContext {
	p, s := collector.TraceContext(md)
	return traceContext{p, s}
}

// prepare checks a request as POST /collect checks its headers and body,
// and returns the append request and the consumers to wait for. An event
// without a traceparent attribute of its own gets the call's trace
// context (tc), as /collect gives it the request's.
func (h *Handler) prepare(ctx context.Context, m *fossilv1.CollectRequest, tc traceContext) (*store.AppendRequest, []WaitConsumer, error) {
	ar := &store.AppendRequest{Stream: m.GetStream(), Replace: m.GetReplace()}
	if err := fossil.ValidateStream("stream", ar.Stream); err != nil {
		return nil, nil, err
	}
	if err := auth.CanWrite(ctx, ar.Stream); err != nil {
		return nil, nil, err
	}
	if m.ExpectedSequence != nil {
		n := m.GetExpectedSequence()
		if n < 1 || n > math.MaxInt64 {
			return nil, nil, fossil.Invalid("expected_sequence", "must be an integer from 1 to %d, got %d", int64(math.MaxInt64), n)
		}
		if ar.Replace {
			return nil, nil, fossil.Invalid("expected_sequence", "cannot be combined with replace: a replacement keeps the event's sequence")
		}
		ar.ExpectedSequence = int64(n)
	}
	waits, err := h.waitConsumers(m.GetWaitConsumers())
	if err != nil {
		return nil, nil, err
	}
	switch n := len(m.GetEvents()); {
	case n == 0:
		return nil, nil, fossil.Invalid("events", "at least one event is required")
	case n > MaxBatchEvents:
		return nil, nil, fossil.Invalid("events", "the batch holds %d events; at most %d are allowed", n, MaxBatchEvents)
	}
	ar.Events = make([]*fossil.Event, len(m.GetEvents()))
	for i, ce := range m.GetEvents() {
		loc := fmt.Sprintf("events[%d]", i)
		if tc.parent != "" && ce.GetAttributes()["traceparent"] == nil {
			if ce.Attributes == nil {
				ce.Attributes = make(map[string]*pb.CloudEventAttributeValue, 2)
			}
			ce.Attributes["traceparent"] = ceString(tc.parent)
			if tc.state != "" {
				ce.Attributes["tracestate"] = ceString(tc.state)
			}
		}
		doc, err := StructuredJSON(loc, ce)
		if err != nil {
			return nil, nil, err
		}
		e, err := h.cfg.Decode(loc, doc)
		if err != nil {
			return nil, nil, err
		}
		for _, w := range waits {
			e.ExpectAck = append(e.ExpectAck, w.Name)
		}
		if len(waits) > 0 {
			e.LeafTail = nil // the leaf names fossilexpectack: the appender builds it
		}
		ar.Events[i] = e
	}
	return ar, waits, nil
}

func ceString(s string) *pb.CloudEventAttributeValue {
	return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeString{CeString: s}}
}

// waitConsumers checks wait_consumers as Fossil-Wait-Consumer is checked.
func (h *Handler) waitConsumers(in []*fossilv1.WaitConsumer) ([]WaitConsumer, error) {
	if len(in) == 0 {
		return nil, nil
	}
	if len(in) > maxWaitConsumers {
		return nil, fossil.Invalid("wait_consumers", "at most %d consumers may be waited for", maxWaitConsumers)
	}
	if h.cfg.WaitAcks == nil {
		return nil, fmt.Errorf("%w: waiting for consumers is not available", fossil.ErrUnavailable)
	}
	out := make([]WaitConsumer, len(in))
	seen := make(map[string]bool, len(in))
	for i, w := range in {
		loc := fmt.Sprintf("wait_consumers[%d].name", i)
		name := w.GetName()
		if err := fossil.ValidateConsumerName(loc, name); err != nil {
			return nil, err
		}
		if strings.ContainsAny(name, ",<>;") {
			return nil, fossil.Invalid(loc, "consumer name %q cannot be waited for: it contains one of , < > ;", name)
		}
		if seen[name] {
			return nil, fossil.Invalid(loc, "consumer %q is listed twice", name)
		}
		seen[name] = true
		out[i] = WaitConsumer{Name: name, Timeout: h.cfg.WaitTimeout}
		if w.TimeoutMs != nil {
			ms := min(w.GetTimeoutMs(), uint64(h.cfg.MaxWaitTimeout/time.Millisecond))
			out[i].Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	return out, nil
}

// inflight is one request of a CollectStream between its reading and its
// answer.
type inflight struct {
	start   time.Time
	size    int64
	ctx     context.Context
	cancel  context.CancelFunc
	pending *store.Pending
	waits   []WaitConsumer
	err     error // the request failed its checks
}

// CollectStream answers each request of the call in order, as soon as its
// group commits. One goroutine reads, checks and submits requests to the
// appender without waiting for their commits, at most StreamWindow
// requests and StreamWindowBytes ahead of the answers; this one waits for
// each outcome in turn and sends it.
func (h *Handler) CollectStream(ctx context.Context, stream *connect.BidiStream[fossilv1.CollectRequest, fossilv1.CollectStreamResponse]) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	window := semaphore.NewWeighted(int64(max(h.cfg.StreamWindowBytes, h.cfg.MaxMessage)))
	queue := make(chan *inflight, h.cfg.StreamWindow)
	var recvErr error // set before queue is closed
	tc := traceOf(stream.RequestHeader())
	go func() {
		defer close(queue)
		for {
			m, err := stream.Receive()
			if err != nil {
				if !errors.Is(err, io.EOF) && ctx.Err() == nil {
					recvErr = err
				}
				return
			}
			it := &inflight{start: time.Now(), size: int64(proto.Size(m))}
			if err := window.Acquire(ctx, it.size); err != nil {
				return
			}
			ar, waits, err := h.prepare(ctx, m, tc)
			if err != nil {
				it.err = err
			} else {
				it.ctx, it.cancel = context.WithTimeout(ctx, h.cfg.AppendTimeout)
				it.pending = h.cfg.Appender.Submit(it.ctx, ar)
				it.waits = waits
			}
			select {
			case queue <- it:
			case <-ctx.Done():
				if it.cancel != nil {
					it.cancel()
				}
				return
			}
		}
	}()
	var index uint64
	for it := range queue {
		out := &fossilv1.CollectStreamResponse{Index: index}
		index++
		err := it.err
		if err == nil {
			var res *store.AppendResult
			res, err = it.pending.Wait(it.ctx)
			it.cancel()
			out.Result, err = h.answer(ctx, res, err, it.waits)
		}
		h.observe(it.start, out.Result, err)
		if err != nil {
			if ctx.Err() != nil {
				return connect.NewError(connect.CodeCanceled, ctx.Err()) // the client went away
			}
			out.Error = h.streamError(ctx, err)
		}
		window.Release(it.size)
		if err := stream.Send(out); err != nil {
			// The reader stops (its Receive ends when this handler
			// returns); requests not yet committed are dropped.
			return err
		}
	}
	if recvErr != nil {
		return h.fail(ctx, recvErr)
	}
	return nil
}
