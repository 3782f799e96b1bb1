package collector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/fossil-events/fossil/auth"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/schema"
	"github.com/fossil-events/fossil/store"
)

// Config wires a [Handler].
type Config struct {
	Appender *store.Appender
	Logger   *slog.Logger
	// MaxBody is the largest accepted request body in bytes; 0 means 1 MiB.
	MaxBody int64
	// AppendTimeout bounds the wait for the commit; 0 means 15s.
	AppendTimeout time.Duration

	// Store and Broadcaster serve wait-for-ack (Fossil-Wait-Consumer).
	Store       *store.Store
	Broadcaster *notify.Broadcaster
	// WaitTimeout is the default wait-for-ack timeout; 0 means 5s.
	WaitTimeout time.Duration
	// MaxWaitTimeout caps wait-for-ack timeouts; 0 means 60s.
	MaxWaitTimeout time.Duration
	// Schemas validates event data against registered JSON Schemas; nil
	// disables validation.
	Schemas *schema.Registry
	// AckPollInterval re-checks acks in case a notification was lost; 0
	// means 1s.
	AckPollInterval time.Duration
	// ObserveFunc, when set, is told the result of every POST /collect
	// (see [AppendResult]) and how long it took (for metrics).
	ObserveFunc func(result string, took time.Duration)
}

// Handler serves /collect.
type Handler struct {
	cfg    Config
	logger *slog.Logger
}

// New returns a Handler.
func New(cfg Config) *Handler {
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.AppendTimeout <= 0 {
		cfg.AppendTimeout = 15 * time.Second
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = 5 * time.Second
	}
	if cfg.MaxWaitTimeout <= 0 {
		cfg.MaxWaitTimeout = 60 * time.Second
	}
	if cfg.AckPollInterval <= 0 {
		cfg.AckPollInterval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Handler{cfg: cfg, logger: cfg.Logger.With("component", "collector")}
}

// Register adds the collector's routes.
func (h *Handler) Register(r *mux.Router) {
	r.Handle("/collect", problem.Handler(h.logger, h.handleCollect)).Methods(http.MethodPost)
}

// handleCollect serves POST /collect.
func (h *Handler) handleCollect(w http.ResponseWriter, r *http.Request) (err error) {
	committed := false // once the events are stored, the append succeeded whatever follows
	if h.cfg.ObserveFunc != nil {
		start := time.Now()
		defer func() {
			result := err
			if committed {
				result = nil
			}
			h.cfg.ObserveFunc(AppendResult(result, w.Header().Get(fossil.HeaderDuplicate) == "true"), time.Since(start))
		}()
	}
	if err := fossil.CheckQuery(r.URL.Query()); err != nil {
		return err
	}
	req, err := h.parseHeaders(r)
	if err != nil {
		return err
	}
	waits, err := ParseWaitConsumers(r.Header.Values(fossil.HeaderWaitConsumer), h.cfg.WaitTimeout, h.cfg.MaxWaitTimeout)
	if err != nil {
		return err
	}
	if len(waits) > 0 && h.cfg.Broadcaster == nil {
		return fmt.Errorf("%w: waiting for consumers is not available", fossil.ErrUnavailable)
	}
	if err := CheckContentLength(r, h.cfg.MaxBody); err != nil {
		return err
	}
	r.Body = http.MaxBytesReader(w, r.Body, h.cfg.MaxBody)
	decoded, err := Decode(r)
	if err != nil {
		return err
	}
	if traceparent, tracestate := TraceContext(r.Header); traceparent != "" {
		for _, d := range decoded {
			d.SetTraceContext(traceparent, tracestate)
		}
	}
	if h.cfg.Schemas != nil {
		for _, d := range decoded {
			if err := h.cfg.Schemas.Validate(d.Location, d.Event.Type, d.DataKind, d.Data); err != nil {
				return err
			}
		}
	}
	req.Events = make([]*fossil.Event, len(decoded))
	for i, d := range decoded {
		req.Events[i] = d.Event
		for _, s := range waits {
			d.Event.ExpectAck = append(d.Event.ExpectAck, s.Name)
		}
		if len(waits) > 0 {
			d.Event.LeafTail = nil // the leaf names fossilexpectack: the appender builds it
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), h.cfg.AppendTimeout)
	defer cancel()
	res, err := h.cfg.Appender.Append(ctx, req)
	if sc, ok := errors.AsType[*fossil.StoredConflictError](err); ok && auth.CanRead(r.Context(), sc.Stream) != nil {
		sc.Hidden = true // say only what the token may read
	}
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
			return fmt.Errorf("%w: the append was not confirmed in time; it may or may not be stored, and retrying it is safe", fossil.ErrUnavailable)
		}
		return err
	}
	committed = true
	last := res.Events[len(res.Events)-1]
	hd := w.Header()
	hd.Set(fossil.HeaderEventNumber, strconv.FormatInt(last.Number, 10))
	hd.Set(fossil.HeaderSequenceNumber, strconv.FormatInt(last.Sequence, 10))
	if res.Duplicate {
		hd.Set(fossil.HeaderDuplicate, "true")
	}
	status := http.StatusOK
	if len(waits) > 0 {
		numbers := make([]int64, len(res.Events))
		for i, p := range res.Events {
			numbers[i] = p.Number
		}
		timedOut, err := h.waitAcks(r.Context(), numbers, waits)
		if err != nil {
			return err // the client went away; nothing is written
		}
		if len(timedOut) > 0 {
			hd.Set(fossil.HeaderTimeout, strings.Join(timedOut, ","))
			status = http.StatusAccepted
		}
	}
	hd.Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(appendCollectResponse(make([]byte, 0, 32+96*len(res.Events)), res.Events))
	return nil
}

// appendCollectResponse renders {"events": [...]} (the body of a successful
// /collect) without reflection: it is on the hot path of every append.
func appendCollectResponse(b []byte, events []store.Position) []byte {
	b = append(b, `{"events":[`...)
	for i, p := range events {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = fossil.AppendJSONString(b, p.ID)
		b = append(b, `,"source":`...)
		b = fossil.AppendJSONString(b, p.Source)
		b = append(b, `,"fossileventnumber":`...)
		b = strconv.AppendInt(b, p.Number, 10)
		b = append(b, `,"fossilsequenceinstream":`...)
		b = strconv.AppendInt(b, p.Sequence, 10)
		b = append(b, '}')
	}
	return append(b, "]}\n"...)
}

// parseHeaders reads the Fossil-* request headers.
func (h *Handler) parseHeaders(r *http.Request) (*store.AppendRequest, error) {
	req := &store.AppendRequest{Stream: r.Header.Get(fossil.HeaderStream)}
	if len(r.Header.Values(fossil.HeaderStream)) > 1 {
		return nil, fossil.Invalid("header."+fossil.HeaderStream, "the header must be sent once")
	}
	if err := fossil.ValidateStream("header."+fossil.HeaderStream, req.Stream); err != nil {
		return nil, err
	}
	if err := auth.CanWrite(r.Context(), req.Stream); err != nil {
		return nil, err
	}
	if vs := r.Header.Values(fossil.HeaderExpectedSequence); len(vs) > 0 {
		if len(vs) > 1 {
			return nil, fossil.Invalid("header."+fossil.HeaderExpectedSequence, "the header must be sent once")
		}
		n, err := fossil.ParseExpectedSequence("header."+fossil.HeaderExpectedSequence, strings.TrimSpace(vs[0]))
		if err != nil {
			return nil, err
		}
		req.ExpectedSequence = n
	}
	if v := r.Header.Get(fossil.HeaderReplace); v != "" {
		switch strings.ToLower(strings.TrimSpace(v)) {
		case "true":
			req.Replace = true
		case "false":
		default:
			return nil, fossil.Invalid("header."+fossil.HeaderReplace, "must be true or false, got %q", v)
		}
	}
	if req.Replace && req.ExpectedSequence > 0 {
		return nil, fossil.Invalid("header."+fossil.HeaderExpectedSequence, "cannot be combined with %s: a replacement keeps the event's sequence", fossil.HeaderReplace)
	}
	return req, nil
}

// AppendResult classifies the outcome of one POST /collect for metrics:
// "ok", "duplicate" (an identical retry), "conflict" (409), "invalid" (any
// other client error), "unavailable" (503: the database is down or too slow,
// or the server is shutting down) or "error".
func AppendResult(err error, duplicate bool) string {
	status := problem.Status(err)
	switch {
	case err == nil && duplicate:
		return "duplicate"
	case err == nil:
		return "ok"
	case status == http.StatusConflict:
		return "conflict"
	case status == http.StatusServiceUnavailable:
		return "unavailable"
	case status < http.StatusInternalServerError:
		return "invalid"
	default:
		return "error"
	}
}

// TraceContext returns the W3C trace context of a request (its
// traceparent and tracestate headers, in canonical form), or "" when it
// has none or a malformed one. The collector keeps it on each event that
// has no traceparent of its own (the CloudEvents distributed-tracing
// extension), so that whoever reads the event continues the producer's
// trace.
func TraceContext(h http.Header) (traceparent, tracestate string) {
	if h.Get("traceparent") == "" {
		return "", ""
	}
	sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(context.Background(), propagation.HeaderCarrier(h)))
	if !sc.IsValid() {
		return "", ""
	}
	return "00-" + sc.TraceID().String() + "-" + sc.SpanID().String() + "-" + sc.TraceFlags().String(), sc.TraceState().String()
}
