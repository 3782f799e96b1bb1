package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/consumer"
	"github.com/fossil-events/fossil/feed"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// client is used for every plain request; it never waits long, so a
// request that should be answered at once cannot hang a test.
var client = &http.Client{Timeout: 15 * time.Second}

// response is a read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request to base+path with header name/value pairs and returns
// the read response. It fails the test on transport errors only.
func do(t testing.TB, method, rawURL, body string, headers ...string) response {
	t.Helper()
	res, err := tryDo(context.Background(), method, rawURL, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, rawURL, err)
	}
	return res
}

// tryDo is do for any goroutine.
func tryDo(ctx context.Context, method, rawURL, body string, headers ...string) (response, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
	if err != nil {
		return response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// consumerURL is base + "/consumer/<escaped name>" + suffix.
func consumerURL(base, name, suffix string) string {
	return base + "/consumer/" + url.PathEscape(name) + suffix
}

// commit sends PUT /consumer/{name}/commit.
func commit(t testing.TB, base, name string, headers ...string) response {
	t.Helper()
	return do(t, http.MethodPut, consumerURL(base, name, "/commit"), "", headers...)
}

// mustCommit commits offset n with Last-Event-Id and requires a 204.
func mustCommit(t testing.TB, base, name string, n int64) {
	t.Helper()
	res := commit(t, base, name, "Last-Event-Id", strconv.FormatInt(n, 10))
	if res.status != http.StatusNoContent {
		t.Fatalf("commit %s=%d: status %d: %s", name, n, res.status, res.body)
	}
}

// status is the JSON of GET /consumer/{name}.
type status struct {
	Name        string     `json:"name"`
	Offset      int64      `json:"offset"`
	Lag         int64      `json:"lag"`
	Connected   bool       `json:"connected"`
	CommittedAt *time.Time `json:"committed_at"`
}

// getStatus reads GET /consumer/{name} and requires a 200.
func getStatus(t testing.TB, base, name string) status {
	t.Helper()
	res := do(t, http.MethodGet, consumerURL(base, name, ""), "")
	if res.status != http.StatusOK {
		t.Fatalf("GET consumer %q: status %d: %s", name, res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET consumer %q: Content-Type %q", name, ct)
	}
	var s status
	dec := json.NewDecoder(strings.NewReader(string(res.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		t.Fatalf("GET consumer %q: %v: %s", name, err, res.body)
	}
	return s
}

// listStatus reads GET /consumers.
func listStatus(t testing.TB, base string) []status {
	t.Helper()
	res := do(t, http.MethodGet, base+"/consumers", "")
	if res.status != http.StatusOK {
		t.Fatalf("GET /consumers: status %d: %s", res.status, res.body)
	}
	var body struct {
		Consumers []status `json:"consumers"`
	}
	if err := json.Unmarshal(res.body, &body); err != nil {
		t.Fatalf("GET /consumers: %v: %s", err, res.body)
	}
	if body.Consumers == nil {
		t.Fatalf("GET /consumers: no consumers array: %s", res.body)
	}
	return body.Consumers
}

// problemBody is an RFC 9457 problem.
type problemBody struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// requireProblem checks that res is an application/problem+json with the
// given status and the members type, title, status and detail.
func requireProblem(t testing.TB, res response, want int) problemBody {
	t.Helper()
	if res.status != want {
		t.Fatalf("status = %d, want %d; body: %s", res.status, want, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type = %q, want %q; body: %s", ct, problem.ContentType, res.body)
	}
	var p problemBody
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", res.body, err)
	}
	if p.Status != want || !strings.HasPrefix(p.Type, "urn:fossil:problem:") || p.Title == "" || p.Detail == "" {
		t.Fatalf("incomplete problem for a %d: %s", want, res.body)
	}
	return p
}

// waitFor polls cond every 10ms until it holds or fails the test after
// timeout, saying what it waited for.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stream is a consumer SSE connection read by hand, so that a test can kill
// it abruptly (TCP reset) the way a crashed client would disappear.
type stream struct {
	resp   *http.Response
	conn   net.Conn
	frames chan frame
	done   chan struct{}
	mu     sync.Mutex
	err    error
}

// frame is one SSE event.
type frame struct {
	number int64
	data   map[string]any
}

// openStream connects GET path on base with header pairs. It returns the
// stream on a 200, or the read error response otherwise.
func openStream(t testing.TB, base, path string, headers ...string) (*stream, response) {
	t.Helper()
	s, res, err := tryOpenStream(base, path, headers...)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	if s != nil {
		t.Cleanup(s.kill)
	}
	return s, res
}

// mustOpenStream requires a 200.
func mustOpenStream(t testing.TB, base, path string, headers ...string) *stream {
	t.Helper()
	s, res := openStream(t, base, path, headers...)
	if s == nil {
		t.Fatalf("GET %s: status %d: %s", path, res.status, res.body)
	}
	return s
}

func tryOpenStream(base, path string, headers ...string) (*stream, response, error) {
	var (
		mu   sync.Mutex
		conn net.Conn
	)
	transport := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			mu.Lock()
			conn = c
			mu.Unlock()
			return c, err
		},
	}
	req, err := http.NewRequest(http.MethodGet, base+path, nil)
	if err != nil {
		return nil, response{}, err
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return nil, response{}, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return nil, response{status: resp.StatusCode, header: resp.Header, body: b}, err
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		resp.Body.Close()
		return nil, response{}, fmt.Errorf("Content-Type %q", ct)
	}
	mu.Lock()
	defer mu.Unlock()
	s := &stream{resp: resp, conn: conn, frames: make(chan frame, 100000), done: make(chan struct{})}
	go s.read()
	return s, response{status: resp.StatusCode, header: resp.Header}, nil
}

func (s *stream) read() {
	defer close(s.done)
	defer close(s.frames)
	s.setErr(testserver.ReadFrames(s.resp.Body, func(tf testserver.Frame) error {
		if tf.Data == "" {
			return nil
		}
		n, err := strconv.ParseInt(tf.ID, 10, 64)
		if err != nil {
			return fmt.Errorf("bad id line %q", tf.ID)
		}
		if tf.Event == nil {
			return fmt.Errorf("frame %d: data is not a JSON object: %s", n, tf.Data)
		}
		s.frames <- frame{number: n, data: tf.Event}
		return nil
	}, nil))
}

func (s *stream) setErr(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = err
	}
}

// next returns the next frame or fails the test after timeout.
func (s *stream) next(t testing.TB, timeout time.Duration) frame {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if !ok {
			s.mu.Lock()
			err := s.err
			s.mu.Unlock()
			t.Fatalf("the stream ended (%v)", err)
		}
		return f
	case <-time.After(timeout):
		t.Fatalf("no frame within %v", timeout)
	}
	return frame{}
}

// quiet fails the test if a frame arrives within d.
func (s *stream) quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if ok {
			t.Fatalf("unexpected frame %d: %v", f.number, f.data)
		}
	case <-time.After(d):
	}
}

// ended reports whether the server ended the stream within d.
func (s *stream) ended(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// kill drops the connection with a TCP reset, without a goodbye, and
// waits for the reader. It is safe to call more than once.
func (s *stream) kill() {
	if tc, ok := s.conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = s.conn.Close()
	<-s.done
	_ = s.resp.Body.Close()
}

// rig is a consumer handler wired by hand, as cmd/server.go wires it, so
// that tests can shorten the lease and look at the pool.
type rig struct {
	url      string
	store    *store.Store
	appender *store.Appender
	pool     *pgxpool.Pool // a separate pool on the same database, for checks
	dbURL    string
}

// setupRig starts the consumer routes on a fresh database (or dbURL when
// given) with the given lease TTL.
func setupRig(t *testing.T, ttl time.Duration, dbURL string) *rig {
	t.Helper()
	ctx := context.Background()
	if dbURL == "" {
		dbURL = dbtest.NewDB(t)
	}
	st, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: 8})
	if err != nil {
		t.Fatalf("store.Open: %v", err)
	}
	t.Cleanup(st.Close)
	app := store.NewAppender(st, store.AppenderConfig{})
	t.Cleanup(app.Close)
	b := notify.New(st.NewListener(), notify.Config{Channels: []string{store.ChannelEvents, store.ChannelAcks}})
	if err := b.Start(ctx); err != nil {
		t.Fatalf("notify: %v", err)
	}
	t.Cleanup(b.Stop)
	hub := feed.New(feed.Config{Store: st, Broadcaster: b, PollInterval: 200 * time.Millisecond})
	if err := hub.Start(ctx); err != nil {
		t.Fatalf("feed: %v", err)
	}
	t.Cleanup(hub.Stop)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	r := mux.NewRouter()
	r.SkipClean(true)
	r.UseEncodedPath()
	consumer.New(consumer.Config{Store: st, Hub: hub, Logger: logger, LeaseTTL: ttl}).Register(r)
	streamCtx, cancelStreams := context.WithCancel(ctx)
	srv := httptest.NewUnstartedServer(r)
	srv.Config.BaseContext = func(net.Listener) context.Context { return streamCtx }
	srv.Start()
	t.Cleanup(func() {
		cancelStreams() // end open streams, so Close does not wait for them
		srv.Close()
	})
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgxpool.New: %v", err)
	}
	t.Cleanup(pool.Close)
	return &rig{url: srv.URL, store: st, appender: app, pool: pool, dbURL: dbURL}
}

// appendEvents stores n events in stream and returns their numbers.
func (r *rig) appendEvents(t testing.TB, stream string, n int) []int64 {
	t.Helper()
	req := &store.AppendRequest{Stream: stream}
	for i := range n {
		id := fmt.Sprintf("%s-%d-%d", stream, time.Now().UnixNano(), i)
		doc := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/rig","type":"test.event"}`, id)
		req.Events = append(req.Events, &fossil.Event{ID: id, Source: "/rig", Type: "test.event", Doc: []byte(doc)})
	}
	res, err := r.appender.Append(context.Background(), req)
	if err != nil {
		t.Fatalf("append: %v", err)
	}
	out := make([]int64, n)
	for i, p := range res.Events {
		out[i] = p.Number
	}
	return out
}

// count runs a SELECT count(*)-like query on the check pool.
func (r *rig) count(t testing.TB, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := r.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// postEvent posts one binary-mode event and returns its number; it is safe
// to call from any goroutine.
func postEvent(ctx context.Context, base, streamName, id string, headers ...string) (int64, error) {
	h := append([]string{
		"Fossil-Stream", streamName,
		"Content-Type", "application/json",
		"ce-specversion", "1.0",
		"ce-id", id,
		"ce-source", "/test",
		"ce-type", "test.event",
	}, headers...)
	res, err := tryDo(ctx, http.MethodPost, base+"/collect", `{}`, h...)
	if err != nil {
		return 0, err
	}
	if res.status != http.StatusOK {
		return 0, fmt.Errorf("post %s: status %d: %s", id, res.status, res.body)
	}
	return strconv.ParseInt(res.header.Get("Fossil-Event-Number"), 10, 64)
}

// labelKey marks the goroutines of one test's server (see
// testserver.LabelKey).
const labelKey = testserver.LabelKey

// labeledGoroutines counts the goroutines labelled value, in total and
// those whose stack mentions each of funcs.
func labeledGoroutines(t testing.TB, value string, funcs ...string) (total int, in []int) {
	t.Helper()
	return testserver.Goroutines(value, funcs...)
}
