package client_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/client"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

// TestMain gives every test its own database (see internal/dbtest) and
// checks for leaked goroutines.
func TestMain(m *testing.M) { dbtest.Main(m) }

// fastRetry keeps the tests' backoffs short.
var fastRetry = client.Retry{Attempts: 6, Initial: time.Millisecond, Max: 10 * time.Millisecond}

// newClient returns a client of url whose connections close at test end.
func newClient(t testing.TB, url string, opts ...client.Option) *client.Client {
	t.Helper()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	opts = append([]client.Option{client.WithHTTPClient(&http.Client{Transport: tr}), client.WithRetry(fastRetry)}, opts...)
	c, err := client.New(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// newEvent builds a CloudEvent with JSON data.
func newEvent(t testing.TB, id, typ string, data any) event.Event {
	t.Helper()
	ev := event.New()
	ev.SetID(id)
	ev.SetSource("/test")
	ev.SetType(typ)
	if data != nil {
		if err := ev.SetData(event.ApplicationJSON, data); err != nil {
			t.Fatal(err)
		}
	}
	return ev
}

// fault is what the proxy does with one request.
type fault int

const (
	pass       fault = iota
	answer503        // answer 503 (with Retry-After: 0) without forwarding
	answer500        // answer 500 without forwarding
	dropBefore       // close the connection without forwarding: a network error
	dropAfter        // forward, then close the connection: the answer is lost
)

// proxy stands between a client and a real server and injects faults. It
// records every request it sees.
type proxy struct {
	srv     *httptest.Server
	target  *url.URL
	rp      *httputil.ReverseProxy
	written atomic.Int64 // response bytes written to clients of paths in track

	mu       sync.Mutex
	faults   map[string][]fault // by path; consumed in order, then pass
	requests []seen
	onSeen   func(seen)
	track    string
}

type seen struct {
	method, path string
	header       http.Header
}

func newProxy(t testing.TB, target string) *proxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{target: u, faults: map[string][]fault{}}
	p.rp = httputil.NewSingleHostReverseProxy(u)
	p.rp.FlushInterval = -1
	p.rp.ErrorLog = nil
	tr := http.DefaultTransport.(*http.Transport).Clone()
	p.rp.Transport = tr
	p.srv = httptest.NewUnstartedServer(http.HandlerFunc(p.serve))
	p.srv.Listener = smallWrites{p.srv.Listener}
	p.srv.Start()
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		tr.CloseIdleConnections()
	})
	return p
}

func (p *proxy) URL() string { return p.srv.URL }

// inject queues faults for the next requests to path.
func (p *proxy) inject(path string, faults ...fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults[path] = append(p.faults[path], faults...)
}

// seen returns the requests to path so far.
func (p *proxy) seen(path string) []seen {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []seen
	for _, s := range p.requests {
		if s.path == path {
			out = append(out, s)
		}
	}
	return out
}

// kill breaks every open connection, as a crashed network would.
func (p *proxy) kill() { p.srv.CloseClientConnections() }

func (p *proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	s := seen{method: r.Method, path: r.URL.Path, header: r.Header.Clone()}
	p.requests = append(p.requests, s)
	f := pass
	if q := p.faults[r.URL.Path]; len(q) > 0 {
		f, p.faults[r.URL.Path] = q[0], q[1:]
	}
	hook, track := p.onSeen, p.track != "" && p.track == r.URL.Path
	p.mu.Unlock()
	if hook != nil {
		hook(s)
	}
	switch f {
	case answer503:
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Retry-After", "0")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"type":"urn:fossil:problem:unavailable","title":"Service unavailable","status":503,"detail":"injected"}`)
	case answer500:
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "injected failure")
	case dropBefore:
		hijackClose(w)
	case dropAfter:
		r.URL.Scheme, r.URL.Host, r.RequestURI = p.target.Scheme, p.target.Host, ""
		resp, err := p.rp.Transport.RoundTrip(r)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		hijackClose(w)
	default:
		if track {
			w = &countingWriter{ResponseWriter: w, n: &p.written}
		}
		p.rp.ServeHTTP(w, r)
	}
}

// smallWrites gives accepted connections small send buffers, so that what
// a client does not read backs up to the server instead of into the kernel.
type smallWrites struct{ net.Listener }

func (l smallWrites) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(32 << 10)
	}
	return c, err
}

func hijackClose(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		conn.Close()
	}
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

func (c *countingWriter) Flush() { http.NewResponseController(c.ResponseWriter).Flush() }

// smallBuffers makes a transport whose sockets have small kernel buffers,
// so that what a reader does not read stays on the server's side.
func smallBuffers(t testing.TB) *http.Client {
	dialer := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 32<<10)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DialContext = dialer.DialContext
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// startServer runs a real Fossil server for a test.
func startServer(t testing.TB) *testserver.Server { return testserver.Start(t) }

// collectN appends n events with ids prefix-1…prefix-n to stream in one
// batch.
func collectN(t testing.TB, c *client.Client, stream, prefix string, n int, size int) {
	t.Helper()
	events := make([]event.Event, n)
	pad := make([]byte, size)
	for i := range pad {
		pad[i] = 'x'
	}
	for i := range events {
		events[i] = newEvent(t, fmt.Sprintf("%s-%d", prefix, i+1), "test.event", map[string]any{"i": i + 1, "pad": string(pad)})
	}
	if _, err := c.Collect(context.Background(), stream, events); err != nil {
		t.Fatalf("collect %s: %v", prefix, err)
	}
}
