package streamer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/internal/testserver"
)

// postResult is the outcome of one POST /collect made off the test
// goroutine, where t.Fatal must not be called.
type postResult struct {
	status int
	number int64 // Fossil-Event-Number; 0 when absent
	body   string
	err    error
}

// newClient returns a client that keeps enough idle connections for the
// concurrent writers of a test.
func newClient(t testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// post sends one event in binary mode with JSON data. It never touches t, so
// goroutines may call it.
func post(client *http.Client, baseURL, stream, id, data string, headers ...string) postResult {
	req, err := http.NewRequest(http.MethodPost, baseURL+"/collect", strings.NewReader(data))
	if err != nil {
		return postResult{err: err}
	}
	req.Header.Set("Fossil-Stream", stream)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", id)
	req.Header.Set("ce-source", "/test")
	req.Header.Set("ce-type", "test.event")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	return do(client, req)
}

// postBatch sends events (structured JSON objects) as one batch.
func postBatch(client *http.Client, baseURL, stream string, events []map[string]any) postResult {
	b, err := json.Marshal(events)
	if err != nil {
		return postResult{err: err}
	}
	req, err := http.NewRequest(http.MethodPost, baseURL+"/collect", bytes.NewReader(b))
	if err != nil {
		return postResult{err: err}
	}
	req.Header.Set("Fossil-Stream", stream)
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	return do(client, req)
}

func do(client *http.Client, req *http.Request) postResult {
	resp, err := client.Do(req)
	if err != nil {
		return postResult{err: err}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	res := postResult{status: resp.StatusCode, body: string(body), err: err}
	if s := resp.Header.Get("Fossil-Event-Number"); s != "" {
		res.number, _ = strconv.ParseInt(s, 10, 64)
	}
	return res
}

// mustOK fails the test unless r is a 200.
func mustOK(t testing.TB, what string, r postResult) int64 {
	t.Helper()
	if r.err != nil || r.status != http.StatusOK {
		t.Fatalf("%s: status %d, err %v: %s", what, r.status, r.err, r.body)
	}
	return r.number
}

// readFrames parses a text/event-stream body as the WHATWG algorithm does
// (an event is dispatched only at its blank line, so a frame cut by the end
// of r is dropped) and calls fn for each frame until fn returns false.
func readFrames(r io.Reader, fn func(testserver.Frame) bool) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var f testserver.Frame
	var data []string
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if len(data) > 0 {
				f.Data = strings.Join(data, "\n")
				if err := json.Unmarshal([]byte(f.Data), &f.Event); err != nil {
					return fmt.Errorf("frame %s: %w: %s", f.ID, err, f.Data)
				}
				if !fn(f) {
					return nil
				}
			}
			f, data = testserver.Frame{}, nil
		case field == "":
			// comment (keepalive)
		case field == "id":
			f.ID = value
		case field == "data":
			data = append(data, value)
		}
	}
	return sc.Err()
}

// follower is an SSE client that reconnects with Last-Event-Id whenever its
// connection ends (or after reading budget() bytes, to hang up at a random
// point, possibly in the middle of a frame), as a browser's EventSource
// does. It checks that every frame it receives continues the previous one:
// with dense set, numbers must be exactly previous+1 (for templates that
// match every event of the test); otherwise strictly increasing.
type follower struct {
	url    string
	client *http.Client
	dense  bool
	budget func() int64

	cancel context.CancelFunc
	done   chan struct{}

	mu     sync.Mutex
	got    []int64
	frames []testserver.Frame
	conns  int
	err    error
}

// followerOpts tune [startFollower].
type followerOpts struct {
	from   int64        // initial cursor
	dense  bool         // require previous+1
	budget func() int64 // bytes per connection; nil means unlimited
	keep   bool         // keep whole frames, not only numbers
}

// startFollower follows baseURL+path until the test ends or stop is called.
func startFollower(t testing.TB, baseURL, path string, o followerOpts) *follower {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{
		url:    baseURL + path,
		client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}},
		dense:  o.dense,
		budget: o.budget,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	go f.run(ctx, o.from, o.keep)
	t.Cleanup(f.stop)
	return f
}

func (f *follower) run(ctx context.Context, cursor int64, keep bool) {
	defer close(f.done)
	defer f.client.CloseIdleConnections()
	for ctx.Err() == nil {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, f.url, nil)
		if err != nil {
			f.fail(err)
			return
		}
		req.Header.Set("Last-Event-Id", strconv.FormatInt(cursor, 10))
		resp, err := f.client.Do(req)
		if err != nil {
			sleepCtx(ctx, 20*time.Millisecond) // server down or restarting: retry
			continue
		}
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode < 500 {
				f.fail(fmt.Errorf("GET %s: status %d: %s", f.url, resp.StatusCode, body))
				return
			}
			sleepCtx(ctx, 20*time.Millisecond) // 503 while the database is away: retry
			continue
		}
		f.mu.Lock()
		f.conns++
		f.mu.Unlock()
		var body io.Reader = resp.Body
		if f.budget != nil {
			body = io.LimitReader(resp.Body, f.budget())
		}
		var bad error
		_ = readFrames(body, func(fr testserver.Frame) bool {
			n := fr.Number()
			if (f.dense && n != cursor+1) || n <= cursor {
				bad = fmt.Errorf("after %d received %s (connection %d)", cursor, fr.ID, f.conns)
				return false
			}
			cursor = n
			f.mu.Lock()
			f.got = append(f.got, n)
			if keep {
				f.frames = append(f.frames, fr)
			}
			f.mu.Unlock()
			return true
		})
		resp.Body.Close()
		if bad != nil {
			f.fail(bad)
			return
		}
	}
}

func (f *follower) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// stop ends the follower and waits for it; it is safe to call twice.
func (f *follower) stop() {
	f.cancel()
	<-f.done
}

// last returns the newest number received.
func (f *follower) last() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.got) == 0 {
		return 0
	}
	return f.got[len(f.got)-1]
}

// failed returns the first ordering error.
func (f *follower) failed() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// waitFor waits until the follower has received n, failing fast on an
// ordering error.
func (f *follower) waitFor(t testing.TB, n int64, timeout time.Duration) {
	t.Helper()
	testserver.Eventually(t, timeout, fmt.Sprintf("event %d at %s", n, f.url), func() bool {
		if err := f.failed(); err != nil {
			t.Fatalf("follower of %s: %v", f.url, err)
		}
		return f.last() >= n
	})
}

// numbers returns a copy of the numbers received, in order.
func (f *follower) numbers() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]int64(nil), f.got...)
}

// connections returns how many times the follower connected.
func (f *follower) connections() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns
}

func sleepCtx(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

// wantRange fails unless got is exactly from, from+1, …, to.
func wantRange(t testing.TB, what string, got []int64, from, to int64) {
	t.Helper()
	if int64(len(got)) != to-from+1 {
		t.Fatalf("%s: received %d events, want %d..%d (%d); first %v", what, len(got), from, to, to-from+1, head(got, 10))
	}
	for i, n := range got {
		if n != from+int64(i) {
			t.Fatalf("%s: event #%d is %d, want %d", what, i, n, from+int64(i))
		}
	}
}

// frameNumbers returns the numbers of frames.
func frameNumbers(frames []testserver.Frame) []int64 {
	out := make([]int64, len(frames))
	for i, f := range frames {
		out[i] = f.Number()
	}
	return out
}

func head(s []int64, n int) []int64 { return s[:min(n, len(s))] }

// labelled runs fn with the test's goroutine label (see testserver.Labelled).
func labelled(name string, fn func()) { testserver.Labelled(name, fn) }

// goroutineStats returns how many goroutines carry label name and how many
// of those have fn on their stack.
func goroutineStats(name, fn string) (total, inFn int) {
	total, in := testserver.Goroutines(name, fn)
	return total, in[0]
}

// ssePath returns /sse with the templates as properly escaped stream
// parameters ("+" must be sent as %2B, or it means a space).
func ssePath(templates ...string) string {
	q := url.Values{"stream": templates}
	return "/sse?" + q.Encode()
}

// insertSilently appends one event directly in SQL the way the appender
// does (head row lock, next number, stream sequence, head) but sends no
// notification, as if it had been lost. It returns the event number.
func insertSilently(t testing.TB, pool *pgxpool.Pool, stream, id string) int64 {
	t.Helper()
	ctx := t.Context()
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.Background()) }()
	var number, sequence int64
	if err := tx.QueryRow(ctx, `SELECT last_number + 1 FROM fossil_head FOR UPDATE`).Scan(&number); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO fossil_streams (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, stream); err != nil {
		t.Fatal(err)
	}
	if err := tx.QueryRow(ctx, `SELECT coalesce(max(sequence), 0) + 1 FROM fossil_events WHERE stream = $1`, stream).Scan(&sequence); err != nil {
		t.Fatal(err)
	}
	doc := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/test","type":"test.event","data":{}}`, id)
	if _, err := tx.Exec(ctx, `INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
		VALUES ($1, $2, $3, $4, '/test', 'test.event', $5)`, number, stream, sequence, id, doc); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `UPDATE fossil_head SET last_number = $1`, number); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return number
}

// bulkInsert writes n events with about size bytes of data each to a new
// stream directly in SQL, numbered after+1..after+n, for tests that need a
// long history quickly. The log must hold exactly after events.
func bulkInsert(t testing.TB, dbURL, stream string, after, n, size int) {
	t.Helper()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	batch := &pgx.Batch{}
	batch.Queue(`INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
		SELECT $2 + g, $1, g, $1 || '-' || g, '/bulk', 'bulk.event',
		       json_build_object('specversion', '1.0', 'id', $1 || '-' || g, 'source', '/bulk', 'type', 'bulk.event', 'data', repeat('x', $4))
		FROM generate_series(1, $3::bigint) AS g`, stream, after, n, size)
	batch.Queue(`INSERT INTO fossil_streams (name) VALUES ($1)`, stream)
	batch.Queue(`UPDATE fossil_head SET last_number = $1`, after+n)
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		t.Fatal(err)
	}
}
