package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/cloudevents/sdk-go/v2/binding"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
)

// HTTPConfig configures an [HTTP] sink.
type HTTPConfig struct {
	URL     string
	Method  string            // POST when empty
	Headers map[string]string // protocolsettings.headers
	// Bearer is sent as "Authorization: Bearer …" (an ACCESSTOKEN
	// credential); User and Password as basic auth (PLAIN).
	Bearer         string
	User, Password string
	// Timeout bounds one attempt (the subscription's acktimeout).
	Timeout time.Duration
	// MaxConns bounds the connections kept to the destination.
	MaxConns int
}

// HTTP delivers events as CloudEvents HTTP binary-mode requests, with the
// event's trace context also as the W3C traceparent and tracestate
// headers (see [TraceContext]). It keeps
// connections alive and never follows redirects.
type HTTP struct {
	cfg    HTTPConfig
	client *http.Client
}

// NewHTTP returns an HTTP sink.
func NewHTTP(cfg HTTPConfig) *HTTP {
	if cfg.Method == "" {
		cfg.Method = http.MethodPost
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 64
	}
	return &HTTP{cfg: cfg, client: NewHTTPClient(cfg.Timeout, cfg.MaxConns)}
}

// NewHTTPClient returns a client that does not follow redirects, keeps up
// to maxConns idle connections per host and gives up after timeout.
func NewHTTPClient(timeout time.Duration, maxConns int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns = maxConns * 2
	tr.MaxIdleConnsPerHost = maxConns
	tr.ResponseHeaderTimeout = timeout
	tr.DialContext = (&net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}).DialContext
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Send posts m. 2xx delivers; 429 waits for Retry-After; 408, 5xx, a
// timeout or a network error retries; 410 disables; anything else
// (redirects included) rejects.
func (s *HTTP) Send(ctx context.Context, m *Message) Outcome {
	req, err := http.NewRequestWithContext(ctx, s.cfg.Method, s.cfg.URL, nil)
	if err != nil {
		return Outcome{Kind: Reject, Err: "build request: " + err.Error()}
	}
	if err := cehttp.WriteRequest(ctx, binding.ToMessage(m.Event), req); err != nil {
		return Outcome{Kind: Reject, Err: "encode event: " + err.Error()}
	}
	// The trace context as the W3C headers too (ce-traceparent is the
	// extension's binary-mode form), what a receiver's tracing middleware
	// continues.
	if tp, ts := TraceContext(m.Event); tp != "" {
		req.Header["Traceparent"] = []string{tp}
		if ts != "" {
			req.Header["Tracestate"] = []string{ts}
		}
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	switch {
	case s.cfg.Bearer != "":
		req.Header.Set("Authorization", "Bearer "+s.cfg.Bearer)
	case s.cfg.User != "":
		req.SetBasicAuth(s.cfg.User, s.cfg.Password)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, context.Canceled) && ctx.Err() != nil {
			return Outcome{Kind: Retry, Err: "delivery interrupted"}
		}
		return Outcome{Kind: Retry, Err: describeHTTPError(err)}
	}
	// Drain a little so the connection can be reused.
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	return classify(resp, time.Now())
}

func classify(resp *http.Response, now time.Time) Outcome {
	code := resp.StatusCode
	msg := fmt.Sprintf("HTTP %d %s", code, http.StatusText(code))
	switch {
	case code >= 200 && code < 300:
		return Outcome{Kind: Delivered}
	case code == http.StatusTooManyRequests:
		return Outcome{Kind: RetryAfter, After: RetryAfterDelay(resp.Header.Get("Retry-After"), now), Err: msg}
	case code == http.StatusRequestTimeout || code >= 500:
		return Outcome{Kind: Retry, Err: msg}
	case code == http.StatusGone:
		return Outcome{Kind: Disable, Err: msg}
	default:
		return Outcome{Kind: Reject, Err: msg}
	}
}

// RetryAfterDelay parses a Retry-After value (seconds or an HTTP date)
// relative to now; 0 when absent or invalid.
func RetryAfterDelay(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 0 {
			return 0
		}
		return time.Duration(min(n, 86400)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

func describeHTTPError(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
		return "timeout: no answer within the ack timeout"
	}
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		if inner := ue.Unwrap(); inner != nil {
			return "network error: " + inner.Error()
		}
	}
	return "network error: " + err.Error()
}

// Close releases idle connections.
func (s *HTTP) Close() error {
	s.client.CloseIdleConnections()
	return nil
}

// Handshake performs the CloudEvents webhook validation handshake: an
// OPTIONS request with WebHook-Request-Origin, which the sink must answer
// with a 2xx and WebHook-Allowed-Origin equal to "*" or origin.
func Handshake(ctx context.Context, client *http.Client, url, origin string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodOptions, url, nil)
	if err != nil {
		return fmt.Errorf("handshake: %w", err)
	}
	req.Header.Set("WebHook-Request-Origin", origin)
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("handshake: %s", describeHTTPError(err))
	}
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("handshake: the sink answered OPTIONS with HTTP %d", resp.StatusCode)
	}
	allowed := strings.TrimSpace(resp.Header.Get("WebHook-Allowed-Origin"))
	if allowed != "*" && allowed != origin {
		return fmt.Errorf("handshake: the sink did not grant WebHook-Allowed-Origin to %q", origin)
	}
	return nil
}
