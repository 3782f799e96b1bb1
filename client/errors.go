package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/fossil-events/fossil/fossil"
)

// Error is a problem+json answer (RFC 9457) from the server, or any other
// answer with a 4xx or 5xx status. Get it with [errors.As]; [errors.Is]
// also matches it against the sentinel errors of package fossil
// (fossil.ErrSequenceConflict, fossil.ErrNotFound, …).
type Error struct {
	Status   int    // the HTTP status
	Type     string // a URI such as "urn:fossil:problem:sequence-conflict"
	Title    string
	Detail   string
	Instance string
	// ExpectedSequence and CurrentSequence are set on a sequence conflict
	// (409): the sequence the request expected, and the sequence of the
	// stream's last event (0 for an empty stream).
	ExpectedSequence int64
	CurrentSequence  int64
	// Errors lists the invalid parts of a request (400, 422).
	Errors []FieldError
	// Body is the answer's body as received (at most 64 KiB).
	Body []byte
}

// FieldError names one invalid part of a request, such as
// "header.Fossil-Stream" or "body[2].id".
type FieldError struct {
	Location string `json:"location"`
	Message  string `json:"message"`
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s", e.Status, e.Title)
	if e.Detail != "" {
		b.WriteString(": " + e.Detail)
	}
	return b.String()
}

// Unwrap gives the sentinel error of package fossil that the answer stands
// for, so that errors.Is(err, fossil.ErrSequenceConflict) works.
func (e *Error) Unwrap() error {
	switch {
	case e.Type == "urn:fossil:problem:sequence-conflict":
		return fossil.ErrSequenceConflict
	case e.Status == http.StatusBadRequest:
		return fossil.ErrInvalid
	case e.Status == http.StatusUnauthorized:
		return fossil.ErrUnauthenticated
	case e.Status == http.StatusForbidden:
		return fossil.ErrForbidden
	case e.Status == http.StatusNotFound:
		return fossil.ErrNotFound
	case e.Status == http.StatusConflict:
		return fossil.ErrConflict
	case e.Status == http.StatusUnsupportedMediaType:
		return fossil.ErrUnsupportedMediaType
	case e.Status == http.StatusUnprocessableEntity:
		return fossil.ErrSchemaViolation
	case e.Status == http.StatusServiceUnavailable:
		return fossil.ErrUnavailable
	}
	return nil
}

// readError turns a non-2xx answer into an *Error and closes its body.
func readError(resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	e := &Error{Status: resp.StatusCode, Body: body}
	var p struct {
		Type             string       `json:"type"`
		Title            string       `json:"title"`
		Detail           string       `json:"detail"`
		Instance         string       `json:"instance"`
		ExpectedSequence int64        `json:"expected_sequence"`
		CurrentSequence  int64        `json:"current_sequence"`
		Errors           []FieldError `json:"errors"`
	}
	if json.Unmarshal(body, &p) == nil {
		e.Type, e.Title, e.Detail, e.Instance = p.Type, p.Title, p.Detail, p.Instance
		e.ExpectedSequence, e.CurrentSequence, e.Errors = p.ExpectedSequence, p.CurrentSequence, p.Errors
	} else {
		e.Detail = strings.TrimSpace(string(body))
		if len(e.Detail) > 200 {
			e.Detail = e.Detail[:200] + "…"
		}
	}
	if e.Title == "" {
		e.Title = http.StatusText(resp.StatusCode)
	}
	return e
}
