// Package client is the Go client of a Fossil event store.
//
// It speaks Fossil's HTTP contract and hands out the CloudEvents SDK's own
// types (github.com/cloudevents/sdk-go/v2/event), so an application keeps
// the events it already builds:
//
//   - [Client.Collect] appends one event or a batch, with an expected
//     sequence, wait-for-consumer and safe retries;
//   - [Client.Subscribe] follows stream templates from a cursor and resumes
//     after a lost connection;
//   - [Client.Consume] runs a named consumer: a handler per event, offsets
//     committed in batches, acknowledgements, a graceful stop;
//   - [Aggregate] is the event-sourcing loop: load a stream, fold it into
//     state, decide, append with the expected sequence, and decide again
//     when another writer got there first;
//   - every problem+json answer becomes an [*Error] ([errors.As]), which
//     also matches the sentinel errors of package fossil ([errors.Is]).
//
// Every call takes a context. The client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
)

// DefaultURL is the server a client talks to when given no URL.
const DefaultURL = "http://127.0.0.1:8080"

// Client talks to one Fossil server.
type Client struct {
	base      *url.URL
	http      *http.Client
	token     string
	userAgent string
	retry     Retry
	idle      time.Duration
}

// Retry says how often and how patiently the client retries a request that
// failed with a network error or a 5xx answer. A 4xx answer is never
// retried: the request itself is wrong and would fail again.
type Retry struct {
	// Attempts is the most attempts a request gets, the first included
	// (default 6). 1 turns retries off.
	Attempts int
	// Initial is the first backoff (default 100ms); each further one
	// doubles, up to Max (default 5s). Each wait is drawn at random
	// between half and all of its backoff, so clients that failed together
	// do not retry together. A Retry-After header on a 503 lengthens the wait.
	Initial, Max time.Duration
}

// DefaultRetry is the retry policy of a new client.
var DefaultRetry = Retry{Attempts: 6, Initial: 100 * time.Millisecond, Max: 5 * time.Second}

// Option configures a [Client].
type Option func(*Client)

// WithHTTPClient sets the http.Client the client sends its requests with
// (default: a client without timeout, since streams are long-lived; bound
// requests with their context).
func WithHTTPClient(h *http.Client) Option { return func(c *Client) { c.http = h } }

// WithToken sends a JWT bearer token with every request.
func WithToken(token string) Option { return func(c *Client) { c.token = token } }

// WithRetry replaces [DefaultRetry]. Zero fields keep their defaults.
func WithRetry(r Retry) Option {
	return func(c *Client) {
		if r.Attempts > 0 {
			c.retry.Attempts = r.Attempts
		}
		if r.Initial > 0 {
			c.retry.Initial = r.Initial
		}
		if r.Max > 0 {
			c.retry.Max = r.Max
		}
	}
}

// WithIdleTimeout sets how long a stream (Subscribe, Consume) may stay
// silent before the client takes the connection for dead and reconnects
// (default 60s; the server sends a keepalive every 15s by default).
func WithIdleTimeout(d time.Duration) Option { return func(c *Client) { c.idle = d } }

// WithUserAgent sets the User-Agent header.
func WithUserAgent(ua string) Option { return func(c *Client) { c.userAgent = ua } }

// New returns a client of the server at baseURL ("" means [DefaultURL]).
func New(baseURL string, opts ...Option) (*Client, error) {
	if baseURL == "" {
		baseURL = DefaultURL
	}
	u, err := url.Parse(baseURL)
	if err != nil {
		return nil, fmt.Errorf("fossil client: server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("fossil client: server URL %q: want http(s)://host[:port]", baseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	c := &Client{base: u, http: &http.Client{}, retry: DefaultRetry, idle: 60 * time.Second, userAgent: "fossil-go-client"}
	for _, o := range opts {
		o(c)
	}
	return c, nil
}

// URL returns the server's base URL.
func (c *Client) URL() string { return c.base.String() }

// request is one HTTP request the client may send more than once.
type request struct {
	method string
	path   string // already escaped
	query  url.Values
	header http.Header
	body   []byte // resent as is on every attempt
}

func (c *Client) newRequest(ctx context.Context, r *request) (*http.Request, error) {
	u := *c.base
	u.RawPath = u.Path + r.path
	p, err := url.PathUnescape(u.RawPath)
	if err != nil {
		return nil, fmt.Errorf("fossil client: path %q: %w", r.path, err)
	}
	u.Path = p
	u.RawQuery = r.query.Encode()
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("fossil client: %w", err)
	}
	for k, vs := range r.header {
		req.Header[k] = vs
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	// The caller's trace context (W3C traceparent, when ctx carries a
	// span): the server continues the trace and keeps it on collected
	// events. Every retry sends the same one, so a retried event is the
	// same document (a duplicate, not a conflict).
	propagation.TraceContext{}.Inject(ctx, propagation.HeaderCarrier(req.Header))
	return req, nil
}

// do sends r, retrying network errors and 5xx answers as the retry policy
// allows. It returns a response with a 2xx status (whose body the caller
// closes) or an error: an [*Error] for a problem answer, else the last
// network error. attempts reports how many requests were sent.
func (c *Client) do(ctx context.Context, r *request, retry bool) (resp *http.Response, attempts int, err error) {
	limit := c.retry.Attempts
	if !retry || limit < 1 {
		limit = 1
	}
	for attempt := 1; ; attempt++ {
		req, err := c.newRequest(ctx, r)
		if err != nil {
			return nil, attempt - 1, err
		}
		resp, err := c.http.Do(req)
		var wait time.Duration
		if err == nil {
			if resp.StatusCode < 300 {
				return resp, attempt, nil
			}
			err = readError(resp)
			if resp.StatusCode < 500 {
				return nil, attempt, err
			}
			wait = retryAfter(resp)
		}
		if ctx.Err() != nil {
			return nil, attempt, fmt.Errorf("fossil client: %s %s: %w", r.method, r.path, errors.Join(ctx.Err(), err))
		}
		if attempt >= limit {
			if limit > 1 {
				return nil, attempt, fmt.Errorf("fossil client: %s %s: gave up after %d attempts: %w", r.method, r.path, attempt, err)
			}
			return nil, attempt, fmt.Errorf("fossil client: %s %s: %w", r.method, r.path, err)
		}
		if err := sleep(ctx, max(wait, c.retry.backoff(attempt))); err != nil {
			return nil, attempt, fmt.Errorf("fossil client: %s %s: %w", r.method, r.path, err)
		}
	}
}

// backoff returns the wait before attempt+1: between half and all of
// Initial·2^(attempt-1), capped at Max.
func (r Retry) backoff(attempt int) time.Duration {
	d := r.Initial
	for i := 1; i < attempt && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// retryAfter reads a Retry-After header in seconds (0 when absent).
func retryAfter(resp *http.Response) time.Duration {
	s, err := strconv.Atoi(resp.Header.Get("Retry-After"))
	if err != nil || s < 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, time.Minute)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// getJSON sends a GET (with retries) and decodes the JSON answer into v.
func (c *Client) getJSON(ctx context.Context, path string, query url.Values, v any) (http.Header, error) {
	resp, _, err := c.do(ctx, &request{method: http.MethodGet, path: path, query: query}, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return nil, fmt.Errorf("fossil client: GET %s: decode answer: %w", path, err)
	}
	return resp.Header, nil
}
