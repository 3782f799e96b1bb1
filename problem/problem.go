// Package problem writes RFC 9457 application/problem+json responses and owns
// the one table that maps Fossil's errors to HTTP statuses.
//
// Handlers return errors instead of writing them: [Handler] adapts a
// func(w, r) error into an http.Handler, so a handler can never forget to
// return after writing an error, and every error is answered the same way.
package problem

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"

	"github.com/fossil-events/fossil/fossil"
)

// ContentType is the media type of every error response.
const ContentType = "application/problem+json"

// Problem is an RFC 9457 problem document.
type Problem struct {
	Type     string        `json:"type"`
	Title    string        `json:"title"`
	Status   int           `json:"status"`
	Detail   string        `json:"detail"`
	Instance string        `json:"instance,omitempty"`
	Errors   []ErrorDetail `json:"errors,omitempty"`

	// Sequence-conflict extensions.
	Stream           string `json:"stream,omitempty"`
	ExpectedSequence *int64 `json:"expected_sequence,omitempty"`
	CurrentSequence  *int64 `json:"current_sequence,omitempty"`
}

// ErrorDetail locates one failure inside the request.
type ErrorDetail struct {
	Location string `json:"location,omitempty"`
	Pointer  string `json:"pointer,omitempty"`
	Message  string `json:"message"`
}

// entry is one row of the error table.
type entry struct {
	err    error
	status int
	slug   string
	title  string
}

// table maps sentinels to statuses. Order matters only for errors that wrap
// several sentinels; the first match wins.
var table = []entry{
	{fossil.ErrInvalid, http.StatusBadRequest, "invalid-input", "Invalid input"},
	{fossil.ErrUnsupportedMediaType, http.StatusUnsupportedMediaType, "unsupported-media-type", "Not a CloudEvent"},
	{fossil.ErrUnauthenticated, http.StatusUnauthorized, "unauthenticated", "Authentication required"},
	{fossil.ErrForbidden, http.StatusForbidden, "forbidden", "Outside the token's grant"},
	{fossil.ErrNotFound, http.StatusNotFound, "not-found", "Not found"},
	{fossil.ErrSequenceConflict, http.StatusConflict, "sequence-conflict", "Sequence conflict"},
	{fossil.ErrConflict, http.StatusConflict, "conflict", "Conflict"},
	{fossil.ErrSchemaViolation, http.StatusUnprocessableEntity, "schema-violation", "Data does not match the schema"},
	{fossil.ErrRequestTimeout, http.StatusRequestTimeout, "request-timeout", "Request timeout"},
	{fossil.ErrUnavailable, http.StatusServiceUnavailable, "unavailable", "Service unavailable"},
	{context.DeadlineExceeded, http.StatusServiceUnavailable, "unavailable", "Service unavailable"},
}

// TypeURI returns the problem type URI for a slug such as "sequence-conflict".
func TypeURI(slug string) string { return "urn:fossil:problem:" + slug }

// Status returns the HTTP status [FromError] gives err (200 for nil), for
// callers that classify errors without answering, such as metrics: one
// table decides both.
func Status(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) {
		return http.StatusRequestEntityTooLarge
	}
	for _, e := range table {
		if errors.Is(err, e.err) {
			return e.status
		}
	}
	return http.StatusInternalServerError
}

// FromError builds the problem document for err. Unknown errors become a 500
// whose detail says nothing of the cause.
func FromError(err error) Problem {
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) {
		return Problem{
			Type:   TypeURI("too-large"),
			Title:  "Request body too large",
			Status: http.StatusRequestEntityTooLarge,
			Detail: "the request body exceeds the limit of " + strconv.FormatInt(maxBytes.Limit, 10) + " bytes",
		}
	}
	for _, e := range table {
		if !errors.Is(err, e.err) {
			continue
		}
		p := Problem{Type: TypeURI(e.slug), Title: e.title, Status: e.status, Detail: fossil.PublicText(err)}
		var inv *fossil.InvalidError
		if errors.As(err, &inv) {
			p.Detail = inv.Error()
			p.Errors = []ErrorDetail{{Location: inv.Location, Message: inv.Message}}
		}
		var seq *fossil.SequenceConflictError
		if errors.As(err, &seq) {
			p.Stream = seq.Stream
			p.ExpectedSequence = &seq.Expected
			p.CurrentSequence = &seq.Current
		}
		var sv *fossil.SchemaViolationError
		if errors.As(err, &sv) {
			for _, v := range sv.Violations {
				p.Errors = append(p.Errors, ErrorDetail{Location: sv.Location, Pointer: v.Pointer, Message: v.Message})
			}
		}
		if e.status == http.StatusServiceUnavailable && errors.Is(err, context.DeadlineExceeded) {
			p.Detail = "the database did not answer in time; retry later"
		}
		return p
	}
	return Problem{
		Type:   TypeURI("internal"),
		Title:  "Internal server error",
		Status: http.StatusInternalServerError,
		Detail: "an internal error occurred; it has been logged",
	}
}

// Write sends p as the response. Headers set on w before the call (such as
// WWW-Authenticate or Allow) are kept.
func Write(w http.ResponseWriter, r *http.Request, p Problem) {
	if p.Instance == "" && r != nil {
		p.Instance = r.URL.Path
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	switch {
	case p.Status == http.StatusUnauthorized && h.Get("WWW-Authenticate") == "":
		h.Set("WWW-Authenticate", "Bearer")
	case p.Status == http.StatusForbidden && h.Get("WWW-Authenticate") == "":
		h.Set("WWW-Authenticate", `Bearer error="insufficient_scope"`)
	}
	if p.Status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "1")
	}
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Error writes err as a problem and logs it: server faults at Error level
// with the real cause, client faults at Debug. A request whose client went
// away is not answered.
func Error(logger *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return
	}
	p := FromError(err)
	// The request id is added by cmd's log handler from r's context.
	attrs := []any{"method", r.Method, "path", r.URL.Path, "status", p.Status, "error", err}
	switch {
	case p.Status >= 500:
		logger.ErrorContext(r.Context(), "request failed", attrs...)
	default:
		logger.DebugContext(r.Context(), "request rejected", attrs...)
	}
	Write(w, r, p)
}

// HandlerFunc is an HTTP handler that returns its error instead of writing it.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Handler adapts fn: a returned error is written with [Error]. A handler
// that has already started its response (an SSE stream, say) must return nil
// or an error it accepts will not be written.
func Handler(logger *slog.Logger, fn HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := fn(w, r); err != nil {
			Error(logger, w, r, err)
		}
	})
}

// WriteJSON writes a successful JSON response with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// NotFound answers routes that do not exist.
func NotFound(w http.ResponseWriter, r *http.Request) {
	Write(w, r, Problem{Type: TypeURI("not-found"), Title: "Not found", Status: http.StatusNotFound, Detail: "no route for " + r.URL.Path})
}

// MethodNotAllowed answers a known route called with the wrong method; the
// router sets the Allow header before calling it.
func MethodNotAllowed(w http.ResponseWriter, r *http.Request) {
	Write(w, r, Problem{Type: TypeURI("method-not-allowed"), Title: "Method not allowed", Status: http.StatusMethodNotAllowed, Detail: "method " + r.Method + " is not allowed on " + r.URL.Path})
}

// BodyError classifies a failure to read a request body: the limit was
// exceeded (413, the [*http.MaxBytesError] itself), the body did not arrive
// before the read deadline (408, [fossil.ErrRequestTimeout]), or the
// client sent something unreadable (400).
func BodyError(err error) error {
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		return err
	}
	if netErr, ok := errors.AsType[net.Error](err); ok && netErr.Timeout() {
		return fmt.Errorf("%w: the request body did not arrive in time", fossil.ErrRequestTimeout)
	}
	return fossil.Invalid("body", "the request body could not be read: %s", err.Error())
}
