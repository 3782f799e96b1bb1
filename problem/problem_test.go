package problem_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/problem"
)

// TestFromError covers every row of the error table.
func TestFromError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		err    error
		status int
		typ    string
	}{
		{"Invalid", fossil.Invalid("header.Fossil-Stream", "stream name is required"), 400, "urn:fossil:problem:invalid-input"},
		{"UnsupportedMediaType", fmt.Errorf("%w: text/plain", fossil.ErrUnsupportedMediaType), 415, "urn:fossil:problem:unsupported-media-type"},
		{"Unauthenticated", fossil.ErrUnauthenticated, 401, "urn:fossil:problem:unauthenticated"},
		{"Forbidden", fmt.Errorf("%w: stream x", fossil.ErrForbidden), 403, "urn:fossil:problem:forbidden"},
		{"NotFound", fmt.Errorf("%w: event 9", fossil.ErrNotFound), 404, "urn:fossil:problem:not-found"},
		{"SequenceConflict", &fossil.SequenceConflictError{Stream: "s", Expected: 3, Current: 1}, 409, "urn:fossil:problem:sequence-conflict"},
		{"Conflict", fmt.Errorf("%w: id reused", fossil.ErrConflict), 409, "urn:fossil:problem:conflict"},
		{"SchemaViolation", &fossil.SchemaViolationError{Location: "body.data", Type: "t", Violations: []fossil.Violation{{Pointer: "/a", Message: "missing"}}}, 422, "urn:fossil:problem:schema-violation"},
		{"Unavailable", fmt.Errorf("%w: database down", fossil.ErrUnavailable), 503, "urn:fossil:problem:unavailable"},
		{"DeadlineExceeded", fmt.Errorf("query: %w", context.DeadlineExceeded), 503, "urn:fossil:problem:unavailable"},
		{"MaxBytes", fmt.Errorf("read: %w", &http.MaxBytesError{Limit: 10}), 413, "urn:fossil:problem:too-large"},
		{"Unknown", errors.New("secret internal detail"), 500, "urn:fossil:problem:internal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := problem.FromError(tt.err)
			if p.Status != tt.status || p.Type != tt.typ || p.Title == "" || p.Detail == "" {
				t.Fatalf("FromError = %+v, want status %d type %s", p, tt.status, tt.typ)
			}
			if tt.status == 500 && p.Detail == tt.err.Error() {
				t.Fatal("a 500 must not reveal its cause")
			}
		})
	}
}

func TestFromErrorExtensions(t *testing.T) {
	t.Parallel()
	p := problem.FromError(fmt.Errorf("append: %w", &fossil.SequenceConflictError{Stream: "s", Expected: 3, Current: 1}))
	if p.ExpectedSequence == nil || *p.ExpectedSequence != 3 || p.CurrentSequence == nil || *p.CurrentSequence != 1 || p.Stream != "s" {
		t.Fatalf("sequence extensions: %+v", p)
	}
	p = problem.FromError(fossil.Invalid("body.time", "bad time"))
	if len(p.Errors) != 1 || p.Errors[0].Location != "body.time" {
		t.Fatalf("errors: %+v", p.Errors)
	}
	p = problem.FromError(&fossil.SchemaViolationError{Location: "body[1].data", Violations: []fossil.Violation{{Pointer: "/a", Message: "m1"}, {Pointer: "/b", Message: "m2"}}})
	if len(p.Errors) != 2 || p.Errors[1].Pointer != "/b" || p.Errors[1].Location != "body[1].data" {
		t.Fatalf("violations: %+v", p.Errors)
	}
}

func TestHandlerWritesProblems(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		err     error
		status  int
		headers map[string]string
	}{
		{"Forbidden", fossil.ErrForbidden, 403, map[string]string{"WWW-Authenticate": `Bearer error="insufficient_scope"`}},
		{"Unauthenticated", fossil.ErrUnauthenticated, 401, map[string]string{"WWW-Authenticate": "Bearer"}},
		{"Unavailable", fossil.ErrUnavailable, 503, map[string]string{"Retry-After": "1"}},
		{"Invalid", fossil.Invalid("query.limit", "too big"), 400, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := problem.Handler(slog.New(slog.DiscardHandler), func(http.ResponseWriter, *http.Request) error { return tt.err })
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil))
			if rec.Code != tt.status || rec.Header().Get("Content-Type") != problem.ContentType {
				t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
			}
			for k, v := range tt.headers {
				if got := rec.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
			var body map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatal(err)
			}
			for _, k := range []string{"type", "title", "status", "detail", "instance"} {
				if _, ok := body[k]; !ok {
					t.Errorf("body lacks %q: %s", k, rec.Body)
				}
			}
			if body["status"] != float64(tt.status) || body["instance"] != "/x" {
				t.Errorf("body %s", rec.Body)
			}
		})
	}
}

// TestHandlerSilentWhenClientGone: a request whose client went away is
// not answered.
func TestHandlerSilentWhenClientGone(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	h := problem.Handler(slog.New(slog.DiscardHandler), func(_ http.ResponseWriter, r *http.Request) error { return r.Context().Err() })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/x", nil).WithContext(ctx))
	if rec.Body.Len() != 0 {
		t.Fatalf("wrote %q", rec.Body)
	}
}

// TestStatusAgreesWithFromError: Status is the status FromError answers.
func TestStatusAgreesWithFromError(t *testing.T) {
	t.Parallel()
	for _, err := range []error{
		fossil.Invalid("header.x", "bad"),
		fmt.Errorf("wrapped: %w", fossil.ErrNotFound),
		&fossil.SequenceConflictError{Stream: "s", Expected: 2, Current: 1},
		fossil.ErrConflict, fossil.ErrUnsupportedMediaType, fossil.ErrSchemaViolation,
		fossil.ErrUnauthenticated, fossil.ErrForbidden, fossil.ErrUnavailable,
		context.DeadlineExceeded, &http.MaxBytesError{Limit: 10}, errors.New("boom"),
	} {
		if got, want := problem.Status(err), problem.FromError(err).Status; got != want {
			t.Errorf("Status(%v) = %d, FromError says %d", err, got, want)
		}
	}
	if got := problem.Status(nil); got != http.StatusOK {
		t.Errorf("Status(nil) = %d", got)
	}
}
