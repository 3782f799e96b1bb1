package rpc

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/grpchealth"
	"connectrpc.com/grpcreflect"
	"github.com/cloudevents/sdk-go/binding/format/protobuf/v2/pb"
	jsoniter "github.com/json-iterator/go"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/feed"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
	fossilv1 "github.com/fossil-events/fossil/proto/fossil/v1"
	"github.com/fossil-events/fossil/proto/fossil/v1/fossilv1connect"
	"github.com/fossil-events/fossil/store"
)

// Limits of the read RPCs, as those of the HTTP query endpoints.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
	// MaxBatchEvents bounds the events of one Collect, as a /collect batch.
	MaxBatchEvents = 10000
)

// Feed delivers history then live events (the feed hub).
type Feed interface {
	Events(ctx context.Context, p feed.Params, send func([]*fossil.Event) error) error
}

// Config wires a [Handler].
type Config struct {
	Appender *store.Appender
	Store    *store.Store
	Feed     Feed
	// Decode checks one event given as a structured-mode CloudEvents JSON
	// document exactly as POST /collect does (schema validation included)
	// and returns it ready to store; loc names it in errors.
	Decode func(loc string, doc []byte) (*fossil.Event, error)
	Logger *slog.Logger
	// AppendTimeout bounds the wait for the commit; 0 means 15s.
	AppendTimeout time.Duration
	// MaxMessage bounds a request message in bytes; 0 means 4 MiB.
	MaxMessage int
	// Proofs serves the proof RPCs; nil answers them UNAVAILABLE.
	Proofs Proofs
	// Ready reports whether the process can serve (the check of
	// GET /readyz), for the gRPC health service; nil means always.
	Ready func(context.Context) error
	// WaitAcks waits until each consumer has acknowledged every event of
	// numbers, each for its own timeout, and returns the names that timed
	// out (the collector's wait, wired by cmd); nil refuses wait_consumers
	// as unavailable.
	WaitAcks func(ctx context.Context, numbers []int64, consumers []WaitConsumer) ([]string, error)
	// WaitTimeout is the default wait for a consumer (5s when 0) and
	// MaxWaitTimeout the cap (60s when 0), as for Fossil-Wait-Consumer.
	WaitTimeout, MaxWaitTimeout time.Duration
	// Observe, when set, is called after each collect request (unary or in
	// a stream) with its outcome, for the append metrics.
	Observe func(err error, duplicate bool, took time.Duration)
	// StreamWindow bounds the requests of one CollectStream read ahead of
	// their answers (0 means 1024) and StreamWindowBytes their message
	// bytes (0 means 16 MiB).
	StreamWindow, StreamWindowBytes int
}

// WaitConsumer is a consumer a writer waits for, with its timeout.
type WaitConsumer struct {
	Name    string
	Timeout time.Duration
}

// Handler implements fossilv1connect.EventStoreHandler.
type Handler struct {
	cfg    Config
	logger *slog.Logger
}

var _ fossilv1connect.EventStoreHandler = (*Handler)(nil)

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.AppendTimeout <= 0 {
		cfg.AppendTimeout = 15 * time.Second
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 4 << 20
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 5 * time.Second
	}
	if cfg.MaxWaitTimeout <= 0 {
		cfg.MaxWaitTimeout = 60 * time.Second
	}
	if cfg.StreamWindow <= 0 {
		cfg.StreamWindow = 1024
	}
	if cfg.StreamWindowBytes <= 0 {
		cfg.StreamWindowBytes = 16 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, logger: cfg.Logger.With("component", "rpc")}
}

// Route is a path prefix and the handler of the RPCs under it.
type Route struct {
	Prefix  string
	Handler http.Handler
}

// Routes returns the services to mount on the HTTP router: the event
// store, gRPC server reflection (v1 and v1alpha, for grpcurl and other
// standard tools) and the gRPC health service, which answers SERVING for
// "" and fossil.v1.EventStore while Config.Ready does (it checks what
// GET /readyz checks).
func (h *Handler) Routes() []Route {
	var routes []Route
	add := func(prefix string, handler http.Handler) {
		routes = append(routes, Route{prefix, handler})
	}
	// Answers are compressed (when the client accepts it) from 8 KiB: the
	// small answers of appends cost more to compress than they save.
	add(fossilv1connect.NewEventStoreHandler(h, connect.WithReadMaxBytes(h.cfg.MaxMessage), connect.WithCompressMinBytes(8<<10)))
	reflector := grpcreflect.NewStaticReflector(fossilv1connect.EventStoreName, grpchealth.HealthV1ServiceName)
	add(grpcreflect.NewHandlerV1(reflector))
	add(grpcreflect.NewHandlerV1Alpha(reflector))
	add(grpchealth.NewHandler(readiness{h.cfg.Ready}))
	return routes
}

// readiness is the health checker: every service Fossil serves is as
// healthy as the process is ready.
type readiness struct {
	ready func(context.Context) error
}

func (r readiness) Check(ctx context.Context, req *grpchealth.CheckRequest) (*grpchealth.CheckResponse, error) {
	switch req.Service {
	case "", fossilv1connect.EventStoreName, grpchealth.HealthV1ServiceName:
	default:
		return nil, connect.NewError(connect.CodeNotFound, fmt.Errorf("unknown service %q", req.Service))
	}
	if r.ready != nil {
		if err := r.ready(ctx); err != nil {
			return &grpchealth.CheckResponse{Status: grpchealth.StatusNotServing}, nil
		}
	}
	return &grpchealth.CheckResponse{Status: grpchealth.StatusServing}, nil
}

// GetEvent returns one event, as GET /events/{number}.
func (h *Handler) GetEvent(ctx context.Context, req *connect.Request[fossilv1.GetEventRequest]) (*connect.Response[fossilv1.GetEventResponse], error) {
	n := req.Msg.GetEventNumber()
	if n > math.MaxInt64 {
		return nil, h.fail(ctx, fossil.Invalid("event_number", "must be at most %d", int64(math.MaxInt64)))
	}
	e, err := h.cfg.Store.EventByNumber(ctx, int64(n))
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	if err := auth.CanRead(ctx, e.Stream); err != nil {
		return nil, h.fail(ctx, err)
	}
	pe, err := ToProto(e)
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return connect.NewResponse(&fossilv1.GetEventResponse{Event: pe}), nil
}

// ReadStream returns a page of one stream, as GET /streams/{stream}/events.
func (h *Handler) ReadStream(ctx context.Context, req *connect.Request[fossilv1.ReadStreamRequest]) (*connect.Response[fossilv1.ReadResponse], error) {
	m := req.Msg
	if err := fossil.ValidateStream("stream", m.GetStream()); err != nil {
		return nil, h.fail(ctx, err)
	}
	if err := auth.CanRead(ctx, m.GetStream()); err != nil {
		return nil, h.fail(ctx, err)
	}
	limit, err := pageLimit(m.GetLimit())
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	from := m.GetFromSequence()
	if from > math.MaxInt64 {
		return nil, h.fail(ctx, fossil.Invalid("from_sequence", "must be at most %d", int64(math.MaxInt64)))
	}
	from = max(from, 1)
	events, err := h.cfg.Store.StreamEvents(ctx, m.GetStream(), int64(from), limit)
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return h.page(ctx, events, len(events) == limit, nil)
}

// ReadLog returns a page of the global log, as GET /events.
func (h *Handler) ReadLog(ctx context.Context, req *connect.Request[fossilv1.ReadLogRequest]) (*connect.Response[fossilv1.ReadResponse], error) {
	m := req.Msg
	limit, err := pageLimit(m.GetLimit())
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	if m.GetAfter() > math.MaxInt64 {
		return nil, h.fail(ctx, fossil.Invalid("after", "must be at most %d", int64(math.MaxInt64)))
	}
	events, err := h.cfg.Store.ReadLog(ctx, store.ReadLogParams{After: int64(m.GetAfter()), Limit: limit})
	if err != nil {
		return nil, h.fail(ctx, err)
	}
	return h.page(ctx, events, len(events) == limit, auth.ReadFilter(ctx))
}

func (h *Handler) page(ctx context.Context, events []*fossil.Event, more bool, allow func(string) bool) (*connect.Response[fossilv1.ReadResponse], error) {
	out := &fossilv1.ReadResponse{Events: make([]*fossilv1.Event, 0, len(events)), More: more}
	for _, e := range events {
		if allow != nil && !allow(e.Stream) {
			continue
		}
		pe, err := ToProto(e)
		if err != nil {
			return nil, h.fail(ctx, err)
		}
		out.Events = append(out.Events, pe)
	}
	return connect.NewResponse(out), nil
}

func pageLimit(n uint32) (int, error) {
	switch {
	case n == 0:
		return DefaultLimit, nil
	case n > MaxLimit:
		return 0, fossil.Invalid("limit", "limit %d is above the maximum of %d", n, MaxLimit)
	default:
		return int(n), nil
	}
}

// Subscribe streams history then live events, as GET /sse.
func (h *Handler) Subscribe(ctx context.Context, req *connect.Request[fossilv1.SubscribeRequest], stream *connect.ServerStream[fossilv1.SubscribeResponse]) error {
	m := req.Msg
	switch n := len(m.GetTemplates()); {
	case n == 0:
		return h.fail(ctx, fossil.Invalid("templates", "at least one stream template is required, e.g. orders/{id} or {+all}"))
	case n > feed.MaxTemplates:
		return h.fail(ctx, fossil.Invalid("templates", "at most %d stream templates are allowed", feed.MaxTemplates))
	}
	templates, err := fossil.ParseTemplates("templates", m.GetTemplates())
	if err != nil {
		return h.fail(ctx, err)
	}
	if m.GetAfter() > math.MaxInt64 {
		return h.fail(ctx, fossil.Invalid("after", "must be at most %d", int64(math.MaxInt64)))
	}
	p := feed.Params{Templates: templates, After: int64(m.GetAfter()), Allow: auth.ReadFilter(ctx)}
	if exp, ok := auth.ExpiresAt(ctx); ok {
		p.Expires = exp
	}
	// The pages are converted and sent by a goroutine of their own, one
	// page behind the reads: the next page is read from the database while
	// the previous one is on its way (as /sse reads ahead). At most two
	// pages wait between them.
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan []*fossil.Event, 2)
	sent := make(chan error, 1)
	sender := newPageSender(stream, req.Header().Get("Content-Type"))
	go func() {
		var err error
		for events := range pages {
			if err != nil {
				continue // drain what the reader handed over before it stopped
			}
			if err = sender.send(events); err != nil {
				cancel()
			}
		}
		sent <- err
	}()
	err = h.cfg.Feed.Events(sctx, p, func(events []*fossil.Event) error {
		select {
		case pages <- events:
			return nil
		case <-sctx.Done():
			return sctx.Err()
		}
	})
	close(pages)
	if sendErr := <-sent; sendErr != nil {
		err = sendErr
	}
	if err != nil && ctx.Err() == nil && !errors.Is(err, context.Canceled) {
		return h.fail(ctx, err)
	}
	return nil
}

// pageSender sends pages of events as SubscribeResponses. With the
// protobuf codec (gRPC, gRPC-Web and Connect's binary form) a message's
// bytes are written straight from the stored documents by a wireEncoder
// and handed over as the message's unknown fields, which proto.Marshal
// copies as they are: the wire form is that of SubscribeResponse.events.
// With JSON, the events are built as messages.
type pageSender struct {
	stream *connect.ServerStream[fossilv1.SubscribeResponse]
	raw    bool
	enc    wireEncoder
	buf    []byte
}

func newPageSender(stream *connect.ServerStream[fossilv1.SubscribeResponse], contentType string) *pageSender {
	return &pageSender{stream: stream, raw: binaryCodec(contentType)}
}

// binaryCodec reports whether a request's content type selects the
// protobuf binary codec.
func binaryCodec(contentType string) bool {
	mt, _, _ := strings.Cut(contentType, ";")
	switch strings.ToLower(strings.TrimSpace(mt)) {
	case "application/grpc", "application/grpc+proto",
		"application/grpc-web", "application/grpc-web+proto",
		"application/connect+proto":
		return true
	}
	return false
}

// send sends one page of events as one message.
func (s *pageSender) send(events []*fossil.Event) error {
	if !s.raw {
		out := &fossilv1.SubscribeResponse{Events: make([]*fossilv1.Event, len(events))}
		for i, e := range events {
			pe, err := ToProto(e)
			if err != nil {
				return err
			}
			out.Events[i] = pe
		}
		return s.stream.Send(out)
	}
	var err error
	s.buf, err = s.enc.appendSubscribeEvents(s.buf[:0], events)
	if err != nil {
		return err
	}
	out := &fossilv1.SubscribeResponse{}
	out.ProtoReflect().SetUnknown(protoreflect.RawFields(s.buf))
	err = s.stream.Send(out)
	if cap(s.buf) > maxKeptPage {
		s.buf = nil
	}
	return err
}

// maxKeptPage bounds the message buffer a subscriber keeps between pages.
const maxKeptPage = 4 << 20

// fail turns err into a Connect error: the code of its HTTP status and the
// problem document as an error detail (google.protobuf.Struct).
func (h *Handler) fail(ctx context.Context, err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) {
		return ce
	}
	code, msg, st := h.problem(ctx, err)
	out := connect.NewError(code, errors.New(msg))
	if st != nil {
		if d, dErr := connect.NewErrorDetail(st); dErr == nil {
			out.AddDetail(d)
		}
	}
	return out
}

// streamError renders err as the error of one answer of a stream.
func (h *Handler) streamError(ctx context.Context, err error) *fossilv1.Error {
	code, msg, st := h.problem(ctx, err)
	return &fossilv1.Error{Code: uint32(code), Message: msg, Problem: st}
}

// problem maps err to its code, its message and the problem document.
func (h *Handler) problem(ctx context.Context, err error) (connect.Code, string, *structpb.Struct) {
	p := problem.FromError(err)
	if p.Status >= http.StatusInternalServerError && p.Status != http.StatusServiceUnavailable {
		h.logger.ErrorContext(ctx, "rpc failed", "error", err)
	}
	var st *structpb.Struct
	if b, mErr := json.Marshal(p); mErr == nil {
		var fields map[string]any
		if json.Unmarshal(b, &fields) == nil {
			st, _ = structpb.NewStruct(fields)
		}
	}
	return Code(p.Status), p.Detail, st
}

// Code maps the HTTP status of an error to its Connect (gRPC) code.
func Code(status int) connect.Code {
	switch status {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return connect.CodeInvalidArgument
	case http.StatusRequestEntityTooLarge:
		return connect.CodeResourceExhausted
	case http.StatusUnauthorized:
		return connect.CodeUnauthenticated
	case http.StatusForbidden:
		return connect.CodePermissionDenied
	case http.StatusNotFound:
		return connect.CodeNotFound
	case http.StatusConflict:
		return connect.CodeAborted
	case http.StatusUnprocessableEntity:
		return connect.CodeFailedPrecondition
	case http.StatusServiceUnavailable:
		return connect.CodeUnavailable
	default:
		return connect.CodeInternal
	}
}

// isJSONMedia reports whether a datacontenttype says JSON, as the
// collector decides it.
func isJSONMedia(contentType string) bool {
	if contentType == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		mt = strings.ToLower(strings.TrimSpace(strings.SplitN(contentType, ";", 2)[0]))
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// fields of CloudEvent that must not appear among its attributes.
var notAttributes = map[string]bool{"specversion": true, "id": true, "source": true, "type": true, "data": true, "data_base64": true}

// StructuredJSON renders a protobuf CloudEvent as the structured-mode JSON
// document POST /collect would receive for it, for the collector's checks:
//   - attributes become members: ce_timestamp as RFC 3339, ce_bytes as
//     base64, ce_uri and ce_uri_ref as strings;
//   - text_data is the data itself when datacontenttype is JSON or absent
//     (it must then be JSON), else a string;
//   - binary_data is JSON data when datacontenttype is JSON, else
//     data_base64;
//   - proto_data is refused (send the message's bytes as binary_data).
func StructuredJSON(loc string, ce *pb.CloudEvent) ([]byte, error) {
	if ce == nil {
		return nil, fossil.Invalid(loc, "the event is empty")
	}
	doc := map[string]any{
		"specversion": ce.GetSpecVersion(),
		"id":          ce.GetId(),
		"source":      ce.GetSource(),
		"type":        ce.GetType(),
	}
	ct := ""
	for name, v := range ce.GetAttributes() {
		at := loc + ".attributes." + name
		if notAttributes[name] {
			return nil, fossil.Invalid(at, "%q is not an attribute: it has its own field of CloudEvent", name)
		}
		switch a := v.GetAttr().(type) {
		case *pb.CloudEventAttributeValue_CeBoolean:
			doc[name] = a.CeBoolean
		case *pb.CloudEventAttributeValue_CeInteger:
			doc[name] = a.CeInteger
		case *pb.CloudEventAttributeValue_CeString:
			doc[name] = a.CeString
		case *pb.CloudEventAttributeValue_CeBytes:
			doc[name] = base64.StdEncoding.EncodeToString(a.CeBytes)
		case *pb.CloudEventAttributeValue_CeUri:
			doc[name] = a.CeUri
		case *pb.CloudEventAttributeValue_CeUriRef:
			doc[name] = a.CeUriRef
		case *pb.CloudEventAttributeValue_CeTimestamp:
			if err := a.CeTimestamp.CheckValid(); err != nil {
				return nil, fossil.Invalid(at, "invalid timestamp: %s", err.Error())
			}
			doc[name] = a.CeTimestamp.AsTime().UTC().Format(time.RFC3339Nano)
		default:
			return nil, fossil.Invalid(at, "attribute %q has no value", name)
		}
		if name == "datacontenttype" {
			s, ok := doc[name].(string)
			if !ok {
				return nil, fossil.Invalid(at, "attribute %q must be a string", name)
			}
			ct = s
		}
	}
	switch d := ce.GetData().(type) {
	case nil:
	case *pb.CloudEvent_TextData:
		if ct == "" || isJSONMedia(ct) {
			if !json.Valid([]byte(d.TextData)) {
				return nil, fossil.Invalid(loc+".text_data", "datacontenttype %q says JSON (absent means JSON) but text_data is not valid JSON", ct)
			}
			doc["data"] = json.RawMessage(d.TextData)
		} else {
			doc["data"] = d.TextData
		}
	case *pb.CloudEvent_BinaryData:
		if isJSONMedia(ct) {
			if !json.Valid(d.BinaryData) {
				return nil, fossil.Invalid(loc+".binary_data", "datacontenttype %q says JSON but binary_data is not valid JSON", ct)
			}
			doc["data"] = json.RawMessage(d.BinaryData)
		} else {
			doc["data_base64"] = base64.StdEncoding.EncodeToString(d.BinaryData)
		}
	case *pb.CloudEvent_ProtoData:
		return nil, fossil.Invalid(loc+".proto_data", "proto_data is not supported; send the message's bytes as binary_data with datacontenttype application/protobuf and dataschema naming its type")
	}
	b, err := json.Marshal(doc)
	if err != nil {
		return nil, fossil.Invalid(loc, "the event cannot be rendered as JSON: %s", err.Error())
	}
	return b, nil
}

// ToProto renders a stored event: the CloudEvent as collected and where it
// is stored. JSON data (and text of other media types) comes back as
// text_data, binary data as binary_data; time is a ce_timestamp,
// dataschema a ce_uri, extensions keep their JSON type (a number that is
// not a 32-bit integer comes back as its JSON text). Subscribe calls it
// for every event it sends, so the document is read with jsoniter's
// streaming iterator rather than into a map.
func ToProto(e *fossil.Event) (*fossilv1.Event, error) {
	ce := &pb.CloudEvent{Attributes: make(map[string]*pb.CloudEventAttributeValue, 4)}
	var (
		ct, timeText string
		data         []byte
		dataB64      string
		hasData      bool
		failed       error
	)
	it := docJSON.BorrowIterator(e.Doc)
	defer docJSON.ReturnIterator(it)
	ok := it.ReadObjectCB(func(it *jsoniter.Iterator, name string) bool {
		switch name {
		case "specversion":
			ce.SpecVersion = it.ReadString()
		case "id":
			ce.Id = it.ReadString()
		case "source":
			ce.Source = it.ReadString()
		case "type":
			ce.Type = it.ReadString()
		case "data":
			data, hasData = it.SkipAndAppendBytes(make([]byte, 0, 32)), true
		case "data_base64":
			dataB64 = it.ReadString()
		case "time":
			timeText = it.ReadString()
		case "dataschema":
			ce.Attributes[name] = &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeUri{CeUri: it.ReadString()}}
		default:
			v := attributeValue(it)
			if name == "datacontenttype" {
				ct = v.GetCeString()
			}
			ce.Attributes[name] = v
		}
		return it.Error == nil
	})
	if !ok || (it.Error != nil && !errors.Is(it.Error, io.EOF)) {
		return nil, fmt.Errorf("event %d: stored document: %v", e.Number, it.Error)
	}
	if timeText != "" {
		t, err := time.Parse(time.RFC3339Nano, timeText)
		if err != nil {
			return nil, fmt.Errorf("event %d: stored time: %w", e.Number, err)
		}
		ce.Attributes["time"] = &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeTimestamp{CeTimestamp: timestamppb.New(t)}}
	}
	switch {
	case dataB64 != "":
		b, err := base64.StdEncoding.DecodeString(dataB64)
		if err != nil {
			failed = fmt.Errorf("event %d: stored data_base64: %w", e.Number, err)
		}
		ce.Data = &pb.CloudEvent_BinaryData{BinaryData: b}
	case hasData && len(data) > 0 && data[0] == '"' && ct != "" && !isJSONMedia(ct):
		var text string
		if err := json.Unmarshal(data, &text); err != nil {
			failed = fmt.Errorf("event %d: stored data: %w", e.Number, err)
		}
		ce.Data = &pb.CloudEvent_TextData{TextData: text}
	case hasData:
		ce.Data = &pb.CloudEvent_TextData{TextData: string(data)}
	}
	if failed != nil {
		return nil, failed
	}
	return &fossilv1.Event{
		Event:       ce,
		Stream:      e.Stream,
		EventNumber: uint64(e.Number),
		Sequence:    uint64(e.Sequence),
		ExpectAck:   e.ExpectAck,
	}, nil
}

// docJSON reads stored documents.
var docJSON = jsoniter.Config{}.Froze()

// attributeValue types a stored extension by its JSON form.
func attributeValue(it *jsoniter.Iterator) *pb.CloudEventAttributeValue {
	switch it.WhatIsNext() {
	case jsoniter.StringValue:
		return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeString{CeString: it.ReadString()}}
	case jsoniter.BoolValue:
		return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeBoolean{CeBoolean: it.ReadBool()}}
	case jsoniter.NumberValue:
		raw := string(it.SkipAndAppendBytes(make([]byte, 0, 32)))
		if n, err := strconv.ParseInt(raw, 10, 32); err == nil {
			return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeInteger{CeInteger: int32(n)}}
		}
		return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeString{CeString: raw}}
	default:
		return &pb.CloudEventAttributeValue{Attr: &pb.CloudEventAttributeValue_CeString{CeString: string(it.SkipAndAppendBytes(make([]byte, 0, 32)))}}
	}
}
