package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"connectrpc.com/connect"
	protobuf "github.com/cloudevents/sdk-go/binding/format/protobuf/v2"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	"github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"

	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
)

// Pipeline appends over one gRPC CollectStream call on a connection of its
// own: [Pipeline.Collect] sends a request without waiting for the answer
// to the previous one, so that many requests share the server's group
// commits, and returns a [Pending] that resolves when its request is
// committed. Requests are committed in the order sent and answered in that
// order. A failed request (a sequence conflict, an invalid event) fails
// only its Pending; the next requests go on. When the call breaks (the
// connection is lost, the server stops), every request not yet answered
// fails with that error, and may or may not be stored: collect it again
// (appends are idempotent: the same source and id give the original
// positions). A Pipeline is safe for concurrent use; the order of requests
// sent from different goroutines is the order of their Collect calls.
type Pipeline struct {
	call      *connect.BidiStreamForClient[fossilv1.CollectRequest, fossilv1.CollectStreamResponse]
	transport *http.Transport

	mu      sync.Mutex // serialises sends with the queue of pendings
	pending chan *Pending
	closed  bool
	done    chan struct{} // closed when the receiver has ended
	err     error         // why the call ended, once done is closed
}

// Pending is the answer to one request of a [Pipeline].
type Pending struct {
	done chan struct{}
	res  *Result
	err  error
}

// Wait returns the request's result once it is committed (or its error).
func (p *Pending) Wait(ctx context.Context) (*Result, error) {
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Pipeline opens a CollectStream call to the server (gRPC over HTTP/2;
// without TLS for an http:// URL). window bounds the requests sent ahead of
// their answers (0 means 256): Collect blocks beyond it. ctx bounds the
// whole call; end it with [Pipeline.Close].
func (c *Client) Pipeline(ctx context.Context, window int) (*Pipeline, error) {
	if window <= 0 {
		window = 256
	}
	tr := &http.Transport{ForceAttemptHTTP2: true, MaxIdleConnsPerHost: 1}
	if base, ok := c.http.Transport.(*http.Transport); ok && base != nil {
		tr = base.Clone()
	}
	tr.Protocols = new(http.Protocols)
	tr.Protocols.SetHTTP2(true)
	tr.Protocols.SetUnencryptedHTTP2(true)
	rpc := fossilv1connect.NewEventStoreClient(&http.Client{Transport: tr}, c.base.String(), connect.WithGRPC())
	call := rpc.CollectStream(ctx)
	hd := call.RequestHeader()
	hd.Set("User-Agent", c.userAgent)
	if c.token != "" {
		hd.Set("Authorization", "Bearer "+c.token)
	}
	p := &Pipeline{call: call, transport: tr, pending: make(chan *Pending, window), done: make(chan struct{})}
	go p.receive()
	return p, nil
}

// Collect sends one request: events to stream, atomically, with the
// options of [Client.Collect] (ExpectSequence, Replace, WaitFor). An event
// without an id gets a random one. It returns once the request is sent;
// the Pending resolves when the server answers it.
func (p *Pipeline) Collect(stream string, events []event.Event, opts ...CollectOption) (*Pending, error) {
	if len(events) == 0 {
		return nil, fmt.Errorf("fossil client: collect: no events")
	}
	var o collectOptions
	for _, opt := range opts {
		opt(&o)
	}
	req := &fossilv1.CollectRequest{Stream: stream, Replace: o.replace, Events: make([]*pb.CloudEvent, len(events))}
	if o.expected > 0 {
		n := uint64(o.expected)
		req.ExpectedSequence = &n
	}
	for _, w := range o.waitSpecs {
		wc := &fossilv1.WaitConsumer{Name: w.name}
		if w.timeout > 0 {
			ms := uint64(max(w.timeout.Milliseconds(), 1))
			wc.TimeoutMs = &ms
		}
		req.WaitConsumers = append(req.WaitConsumers, wc)
	}
	for i := range events {
		if events[i].ID() == "" {
			events[i].SetID(uuid.NewString())
		}
		ce, err := toProto(&events[i])
		if err != nil {
			return nil, fmt.Errorf("fossil client: collect: event %d: %w", i, err)
		}
		req.Events[i] = ce
	}
	pd := &Pending{done: make(chan struct{})}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, errors.New("fossil client: the pipeline is closed")
	}
	select {
	case p.pending <- pd: // blocks while the window is full
	case <-p.done:
		return nil, p.err
	}
	if err := p.call.Send(req); err != nil {
		// The receiver reports the call's error to every pending request.
		<-pd.done
		return nil, pd.err
	}
	return pd, nil
}

// Close ends the call once every request sent is answered and returns the
// error that broke the call, if any.
func (p *Pipeline) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.pending)
		_ = p.call.CloseRequest()
	}
	p.mu.Unlock()
	<-p.done
	p.transport.CloseIdleConnections()
	if errors.Is(p.err, io.EOF) {
		return nil
	}
	return p.err
}

// receive resolves the pendings in order with the answers.
func (p *Pipeline) receive() {
	defer close(p.done)
	defer func() { _ = p.call.CloseResponse() }()
	for pd := range p.pending {
		r, err := p.call.Receive()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("fossil client: the server ended the call before answering")
			}
			p.err = fmt.Errorf("fossil client: collect stream: %w", err)
			pd.err = p.err
			close(pd.done)
			for pd := range p.pending { // fail the rest as they come
				pd.err = p.err
				close(pd.done)
			}
			return
		}
		if e := r.GetError(); e != nil {
			pd.err = streamError(e)
		} else {
			res := &Result{Duplicate: r.GetResult().GetDuplicate(), TimedOut: r.GetResult().GetTimedOut(), Attempts: 1}
			for _, ps := range r.GetResult().GetEvents() {
				res.Events = append(res.Events, Position{ID: ps.GetId(), Source: ps.GetSource(), Number: int64(ps.GetEventNumber()), Sequence: int64(ps.GetSequence())})
			}
			pd.res = res
		}
		close(pd.done)
	}
	p.err = io.EOF
}

// streamError turns a failed answer into an [*Error], as an HTTP answer
// with the same problem document would be.
func streamError(e *fossilv1.Error) *Error {
	body, _ := json.Marshal(e.GetProblem().AsMap())
	out := &Error{Body: body, Detail: e.GetMessage()}
	var p struct {
		Status           int          `json:"status"`
		Type             string       `json:"type"`
		Title            string       `json:"title"`
		Detail           string       `json:"detail"`
		ExpectedSequence int64        `json:"expected_sequence"`
		CurrentSequence  int64        `json:"current_sequence"`
		Errors           []FieldError `json:"errors"`
	}
	if json.Unmarshal(body, &p) == nil {
		out.Status, out.Type, out.Title = p.Status, p.Type, p.Title
		out.ExpectedSequence, out.CurrentSequence, out.Errors = p.ExpectedSequence, p.CurrentSequence, p.Errors
		if p.Detail != "" {
			out.Detail = p.Detail
		}
	}
	if out.Title == "" {
		out.Title = http.StatusText(out.Status)
	}
	return out
}

// toProto renders an event in the CloudEvents protobuf format as the
// server reads it: data the SDK holds as bytes (data_base64, or set from a
// []byte) as binary_data, which the server stores as JSON data when the
// datacontenttype says JSON and as data_base64 otherwise; any other data
// (JSON, or the text of a string) as text_data.
func toProto(e *event.Event) (*pb.CloudEvent, error) {
	ce, err := protobuf.ToProto(e)
	if err != nil {
		return nil, err
	}
	switch data := e.Data(); {
	case len(data) == 0:
		ce.Data = nil
	case e.DataBase64:
		ce.Data = &pb.CloudEvent_BinaryData{BinaryData: data}
	default:
		ce.Data = &pb.CloudEvent_TextData{TextData: string(data)}
	}
	return ce, nil
}
