package fossil

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
)

// Sentinel errors. The problem package maps each to an HTTP status; wrap them
// with %w and, where a client needs more, with one of the XError types below.
var (
	// ErrInvalid marks input that breaks the contract (400).
	ErrInvalid = errors.New("invalid input")
	// ErrUnsupportedMediaType marks a request that is not a CloudEvent (415).
	ErrUnsupportedMediaType = errors.New("not a CloudEvent")
	// ErrNotFound marks a missing event, stream, consumer or schema (404).
	ErrNotFound = errors.New("not found")
	// ErrSequenceConflict marks a failed optimistic-concurrency check (409).
	ErrSequenceConflict = errors.New("sequence conflict")
	// ErrConflict marks any other state conflict (409): an event id reused
	// with different content, a replacement aimed at another stream, an
	// ambiguous id, a backwards commit, a consumer name already connected.
	ErrConflict = errors.New("conflict")
	// ErrSchemaViolation marks an event whose data fails its type's schema (422).
	ErrSchemaViolation = errors.New("schema violation")
	// ErrUnauthenticated marks a missing or invalid token (401).
	ErrUnauthenticated = errors.New("unauthenticated")
	// ErrForbidden marks a request outside the token's grant (403).
	ErrForbidden = errors.New("forbidden")
	// ErrUnavailable marks a database that is down or too slow, or a server
	// that is shutting down or at capacity (503).
	ErrUnavailable = errors.New("service unavailable")
	// ErrRequestTimeout marks a request whose body did not arrive within
	// the server's read deadline (408).
	ErrRequestTimeout = errors.New("request timeout")
)

// InvalidError says which part of a request is invalid and why. It wraps
// [ErrInvalid] unless Err says otherwise.
type InvalidError struct {
	// Location names the offending part, such as "header.Fossil-Stream",
	// "body.time" or "body[2].id".
	Location string
	// Message says what is wrong in one sentence.
	Message string
	// Err is the sentinel this error wraps; nil means ErrInvalid.
	Err error
}

// Invalid returns an [*InvalidError] wrapping [ErrInvalid].
func Invalid(location, format string, args ...any) *InvalidError {
	return &InvalidError{Location: location, Message: fmt.Sprintf(format, args...)}
}

func (e *InvalidError) Error() string {
	if e.Location == "" {
		return e.Message
	}
	return e.Location + ": " + e.Message
}

func (e *InvalidError) Unwrap() error {
	if e.Err == nil {
		return ErrInvalid
	}
	return e.Err
}

// SequenceConflictError reports a failed Fossil-Expected-Sequence-Number check.
type SequenceConflictError struct {
	Stream   string
	Expected int64 // what the client sent
	Current  int64 // the sequence of the stream's last event, 0 when empty
}

func (e *SequenceConflictError) Error() string {
	return fmt.Sprintf("stream %q: expected sequence %d but the stream's last event has sequence %d", e.Stream, e.Expected, e.Current)
}

func (e *SequenceConflictError) Unwrap() error { return ErrSequenceConflict }

// SchemaViolationError lists why an event's data does not validate.
type SchemaViolationError struct {
	Location   string // e.g. "body[1].data"
	Type       string // the CloudEvents type whose schema failed
	Violations []Violation
}

// Violation is one schema failure at a JSON pointer inside the data.
type Violation struct {
	Pointer string `json:"pointer"`
	Message string `json:"message"`
}

func (e *SchemaViolationError) Error() string {
	msgs := make([]string, 0, len(e.Violations))
	for _, v := range e.Violations {
		msgs = append(msgs, fmt.Sprintf("%s: %s", v.Pointer, v.Message))
	}
	return fmt.Sprintf("%s: data does not match the schema for type %q: %s", e.Location, e.Type, strings.Join(msgs, "; "))
}

func (e *SchemaViolationError) Unwrap() error { return ErrSchemaViolation }

// QueryAccessToken is the query parameter that carries a bearer token for
// clients that cannot set headers (EventSource); every endpoint accepts it.
const QueryAccessToken = "access_token"

// CheckQuery returns an [InvalidError] naming the first query parameter
// that is neither in allowed nor access_token, so that a misspelt or
// unsupported parameter is an error instead of being silently ignored.
func CheckQuery(q url.Values, allowed ...string) error {
	names := make([]string, 0, len(q))
	for name := range q {
		if name != QueryAccessToken && !slices.Contains(allowed, name) {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	if len(allowed) == 0 {
		return Invalid("query."+names[0], "unknown query parameter %q: this endpoint takes none", names[0])
	}
	return Invalid("query."+names[0], "unknown query parameter %q: this endpoint takes %s", names[0], strings.Join(allowed, ", "))
}

// StoredConflictError is a conflict (409) with an event already stored:
// its source and id are reused with other content, or a replacement
// (Replace) names another stream than the stored event's. Number and Stream
// locate the stored event; with Hidden set (the caller may not read that
// stream) the message leaves them out.
type StoredConflictError struct {
	Source, ID string
	Number     int64
	Stream     string // the stored event's stream
	Replace    bool
	Target     string // the stream the replacement named
	Hidden     bool
}

func (e *StoredConflictError) Error() string {
	switch {
	case e.Replace && e.Hidden:
		return fmt.Sprintf("%s: the event with source %q and id %q is in another stream than %q; a replacement must target the same stream", ErrConflict, e.Source, e.ID, e.Target)
	case e.Replace:
		return fmt.Sprintf("%s: the event with source %q and id %q is in stream %q, not %q; a replacement must target the same stream", ErrConflict, e.Source, e.ID, e.Stream, e.Target)
	case e.Hidden:
		return fmt.Sprintf("%s: an event with source %q and id %q is already stored with different content", ErrConflict, e.Source, e.ID)
	default:
		return fmt.Sprintf("%s: an event with source %q and id %q is already stored (event number %d in stream %q) with different content", ErrConflict, e.Source, e.ID, e.Number, e.Stream)
	}
}

func (e *StoredConflictError) Unwrap() error { return ErrConflict }

// ConcealedError keeps an internal cause (a database driver's message,
// which may name a user, a host, a file) out of what clients read. Error is
// the whole text, for the log; Public is the same text with the cause's
// part replaced by a plain description. See [PublicText].
type ConcealedError struct {
	Err    error  // the whole error: its kind (a sentinel) and its cause
	Public string // what a client may read
}

func (e *ConcealedError) Error() string { return e.Err.Error() }
func (e *ConcealedError) Unwrap() error { return e.Err }

// Conceal returns err, in whose text the text of cause is replaced, for
// clients, by what.
func Conceal(err, cause error, what string) error {
	return &ConcealedError{Err: err, Public: strings.Replace(err.Error(), cause.Error(), what, 1)}
}

// PublicText returns the text of err that a client may read: the text of a
// [ConcealedError] in it is replaced by its public text.
func PublicText(err error) string {
	text := err.Error()
	if ce, ok := errors.AsType[*ConcealedError](err); ok {
		text = strings.Replace(text, ce.Error(), ce.Public, 1)
	}
	return text
}
