package collector_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/collector"
	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/problem"
	"github.com/fossil-events/fossil/store"
)

// testBundle is one running /collect server on its own database.
type testBundle struct {
	url    string        // base URL of the HTTP server
	pool   *pgxpool.Pool // a separate pool on the same database, for checks
	client *http.Client
}

// setup starts a server wired as cmd/server.go wires it, on a fresh
// database. Everything is released in t.Cleanup.
func setup(tb testing.TB) *testBundle {
	tb.Helper()
	ctx := context.Background()
	dbURL := dbtest.NewDB(tb)
	st, err := store.Open(ctx, store.Config{DatabaseURL: dbURL, MaxConns: 10})
	if err != nil {
		tb.Fatalf("store.Open: %v", err)
	}
	tb.Cleanup(st.Close)
	app := store.NewAppender(st, store.AppenderConfig{})
	tb.Cleanup(app.Close)

	r := mux.NewRouter()
	r.SkipClean(true)
	r.UseEncodedPath()
	r.NotFoundHandler = http.HandlerFunc(problem.NotFound)
	r.MethodNotAllowedHandler = http.HandlerFunc(problem.MethodNotAllowed)
	collector.New(collector.Config{Appender: app}).Register(r)
	srv := httptest.NewServer(r)
	tb.Cleanup(srv.Close) // runs before app.Close: no request is in flight then

	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		tb.Fatalf("pgxpool.New: %v", err)
	}
	tb.Cleanup(pool.Close)

	transport := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128, DisableCompression: true}
	tb.Cleanup(transport.CloseIdleConnections)
	return &testBundle{
		url:    srv.URL,
		pool:   pool,
		client: &http.Client{Transport: transport, Timeout: 60 * time.Second},
	}
}

// response is a read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

// do posts to /collect. It is safe to call from any goroutine.
func (b *testBundle) do(ctx context.Context, h http.Header, body []byte) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, b.url+"/collect", bytes.NewReader(body))
	if err != nil {
		return response{}, err
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	res, err := b.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: res.StatusCode, header: res.Header, body: data}, nil
}

// post posts to /collect from the test goroutine.
func (b *testBundle) post(t testing.TB, h http.Header, body []byte) response {
	t.Helper()
	res, err := b.do(context.Background(), h, body)
	if err != nil {
		t.Fatalf("POST /collect: %v", err)
	}
	return res
}

// problemBody is an RFC 9457 problem as /collect writes it.
type problemBody struct {
	Type             string `json:"type"`
	Title            string `json:"title"`
	Status           int    `json:"status"`
	Detail           string `json:"detail"`
	Instance         string `json:"instance"`
	ExpectedSequence *int64 `json:"expected_sequence"`
	CurrentSequence  *int64 `json:"current_sequence"`
	Errors           []struct {
		Location string `json:"location"`
		Message  string `json:"message"`
	} `json:"errors"`
}

// requireProblem checks that res is a problem+json with the given status
// and returns it.
func requireProblem(t testing.TB, res response, status int) problemBody {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %d, want %d; body: %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != problem.ContentType {
		t.Fatalf("Content-Type = %q, want %q", ct, problem.ContentType)
	}
	var p problemBody
	if err := json.Unmarshal(res.body, &p); err != nil {
		t.Fatalf("problem body %q: %v", res.body, err)
	}
	if p.Status != status {
		t.Errorf("problem status = %d, want %d", p.Status, status)
	}
	if !strings.HasPrefix(p.Type, "urn:fossil:problem:") || p.Title == "" || p.Detail == "" {
		t.Errorf("problem lacks type, title or detail: %s", res.body)
	}
	for _, name := range []string{"Fossil-Event-Number", "Fossil-Sequence-Number", "Fossil-Duplicate"} {
		if v := res.header.Get(name); v != "" {
			t.Errorf("a %d carries %s: %s", status, name, v)
		}
	}
	return p
}

// requireInvalid checks a 400 whose problem names location, both in
// errors[0].location and in the detail.
func requireInvalid(t testing.TB, res response, location string) problemBody {
	t.Helper()
	p := requireProblem(t, res, http.StatusBadRequest)
	if p.Type != problem.TypeURI("invalid-input") {
		t.Errorf("type = %q, want %q", p.Type, problem.TypeURI("invalid-input"))
	}
	if len(p.Errors) != 1 || p.Errors[0].Location != location {
		t.Errorf("errors = %+v, want one at location %q", p.Errors, location)
	}
	if !strings.Contains(p.Detail, location) {
		t.Errorf("detail %q does not name %q", p.Detail, location)
	}
	return p
}

// position is one entry of a successful /collect body.
type position struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Number   int64  `json:"fossileventnumber"`
	Sequence int64  `json:"fossilsequenceinstream"`
}

// requireOK checks a 200 with consistent headers and body and returns the
// positions. duplicate says whether Fossil-Duplicate: true is expected.
func requireOK(t testing.TB, res response, duplicate bool) []position {
	t.Helper()
	if res.status != http.StatusOK {
		t.Fatalf("status = %d, want 200; body: %s", res.status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body struct {
		Events []position `json:"events"`
	}
	dec := json.NewDecoder(bytes.NewReader(res.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		t.Fatalf("body %q: %v", res.body, err)
	}
	if len(body.Events) == 0 {
		t.Fatalf("body has no events: %s", res.body)
	}
	last := body.Events[len(body.Events)-1]
	if got, want := res.header.Get("Fossil-Event-Number"), fmt.Sprint(last.Number); got != want {
		t.Errorf("Fossil-Event-Number = %q, want %q (the last event's)", got, want)
	}
	if got, want := res.header.Get("Fossil-Sequence-Number"), fmt.Sprint(last.Sequence); got != want {
		t.Errorf("Fossil-Sequence-Number = %q, want %q (the last event's)", got, want)
	}
	wantDup := ""
	if duplicate {
		wantDup = "true"
	}
	if got := res.header.Get("Fossil-Duplicate"); got != wantDup {
		t.Errorf("Fossil-Duplicate = %q, want %q", got, wantDup)
	}
	for _, p := range body.Events {
		if p.ID == "" || p.Source == "" || p.Number < 1 || p.Sequence < 1 {
			t.Errorf("incomplete position %+v", p)
		}
	}
	return body.Events
}

// storedEvent is one row of fossil_events.
type storedEvent struct {
	Number   int64
	Stream   string
	Sequence int64
	ID       string
	Source   string
	Type     string
	Subject  *string
	Time     *time.Time
	Doc      map[string]any // the doc column, numbers as json.Number
	RawDoc   string
}

// events returns every stored event in number order.
func (b *testBundle) events(t testing.TB) []storedEvent {
	t.Helper()
	rows, err := b.pool.Query(context.Background(),
		`SELECT number, stream, sequence, id, source, type, subject, time, doc::text FROM fossil_events ORDER BY number`)
	if err != nil {
		t.Fatalf("query events: %v", err)
	}
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var e storedEvent
		if err := rows.Scan(&e.Number, &e.Stream, &e.Sequence, &e.ID, &e.Source, &e.Type, &e.Subject, &e.Time, &e.RawDoc); err != nil {
			t.Fatalf("scan event: %v", err)
		}
		dec := json.NewDecoder(strings.NewReader(e.RawDoc))
		dec.UseNumber()
		if err := dec.Decode(&e.Doc); err != nil {
			t.Fatalf("event %d: doc %q: %v", e.Number, e.RawDoc, err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("query events: %v", err)
	}
	return out
}

// event returns the stored event with source and id.
func (b *testBundle) event(t testing.TB, source, id string) storedEvent {
	t.Helper()
	for _, e := range b.events(t) {
		if e.Source == source && e.ID == id {
			return e
		}
	}
	t.Fatalf("no stored event with source %q and id %q", source, id)
	return storedEvent{}
}

// logState summarises fossil_events and fossil_head.
type logState struct {
	count, min, max, head int64
}

// logState reports failures with t.Errorf, never t.Fatalf, so that it is
// safe in t.Cleanup: a FailNow inside a cleanup hides every line the test
// logged when go test runs without -v.
func (b *testBundle) logState(t testing.TB) logState {
	t.Helper()
	var s logState
	err := b.pool.QueryRow(context.Background(), `
SELECT (SELECT count(*) FROM fossil_events),
       (SELECT coalesce(min(number), 0) FROM fossil_events),
       (SELECT coalesce(max(number), 0) FROM fossil_events),
       (SELECT last_number FROM fossil_head)`).Scan(&s.count, &s.min, &s.max, &s.head)
	if err != nil {
		t.Errorf("log state: %v", err)
		s.count = -1
	}
	return s
}

// requireDense checks that the log holds exactly the numbers 1..n, that
// the head says n, and that every stream's sequences are 1..k in number
// order.
func (b *testBundle) requireDense(t testing.TB, n int64) {
	t.Helper()
	s := b.logState(t)
	if s.count != n || (n > 0 && s.min != 1) || s.max != n || s.head != n {
		t.Fatalf("log: count=%d min=%d max=%d head=%d, want exactly 1..%d", s.count, s.min, s.max, s.head, n)
	}
	var bad int64
	err := b.pool.QueryRow(context.Background(), `
SELECT count(*) FROM (
  SELECT sequence, row_number() OVER (PARTITION BY stream ORDER BY number) AS want FROM fossil_events
) s WHERE sequence <> want`).Scan(&bad)
	if err != nil {
		t.Fatalf("check sequences: %v", err)
	}
	if bad != 0 {
		t.Fatalf("%d events have a sequence that is not their rank in the stream", bad)
	}
	var heads int64
	err = b.pool.QueryRow(context.Background(), `
SELECT count(*) FROM (SELECT DISTINCT stream FROM fossil_events) e
FULL JOIN fossil_streams s ON s.name = e.stream WHERE s.name IS NULL OR e.stream IS NULL`).Scan(&heads)
	if err != nil {
		t.Fatalf("check stream heads: %v", err)
	}
	if heads != 0 {
		t.Fatalf("%d streams have events but no row, or a row but no events", heads)
	}
}

// requireEmpty checks that nothing was stored. It does not stop the test
// and is safe in t.Cleanup (see logState).
func (b *testBundle) requireEmpty(t testing.TB) {
	t.Helper()
	if s := b.logState(t); s.count != 0 || s.head != 0 {
		t.Errorf("log: count=%d head=%d, want nothing stored", s.count, s.head)
	}
}

// Content modes.
type mode string

const (
	binary     mode = "Binary"
	structured mode = "Structured"
	batch      mode = "Batch"
)

const (
	ctStructured = "application/cloudevents+json"
	ctBatch      = "application/cloudevents-batch+json"
)

// attrs is an event as a structured-mode JSON object.
type attrs map[string]any

// newAttrs returns a valid event with JSON data.
func newAttrs(id string) attrs {
	return attrs{
		"specversion":     "1.0",
		"id":              id,
		"source":          "/fossil/tests",
		"type":            "com.example.tested",
		"datacontenttype": "application/json",
		"data":            map[string]any{"id": id, "n": 1},
	}
}

// hdr builds a header from name/value pairs without canonicalising or
// validating, so tests can send exactly what they mean.
func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = append(h[kv[i]], kv[i+1])
	}
	return h
}

// encode renders events in mode m (binary takes exactly one) with
// Fossil-Stream: stream ("" leaves the header out).
func encode(t testing.TB, m mode, stream string, evs ...attrs) (http.Header, []byte) {
	t.Helper()
	h := http.Header{}
	if stream != "" {
		h.Set("Fossil-Stream", stream)
	}
	switch m {
	case binary:
		if len(evs) != 1 {
			t.Fatalf("binary mode carries one event, got %d", len(evs))
		}
		var body []byte
		for k, v := range evs[0] {
			switch k {
			case "data":
				if s, ok := v.(string); ok && !strings.Contains(fmt.Sprint(evs[0]["datacontenttype"]), "json") {
					body = []byte(s)
					continue
				}
				b, err := json.Marshal(v)
				if err != nil {
					t.Fatal(err)
				}
				body = b
			case "datacontenttype":
				h["Content-Type"] = []string{fmt.Sprint(v)}
			default:
				h["ce-"+k] = []string{fmt.Sprint(v)}
			}
		}
		return h, body
	case structured:
		if len(evs) != 1 {
			t.Fatalf("structured mode carries one event, got %d", len(evs))
		}
		h.Set("Content-Type", ctStructured)
		b, err := json.Marshal(evs[0])
		if err != nil {
			t.Fatal(err)
		}
		return h, b
	case batch:
		h.Set("Content-Type", ctBatch)
		if evs == nil {
			evs = []attrs{}
		}
		b, err := json.Marshal(evs)
		if err != nil {
			t.Fatal(err)
		}
		return h, b
	}
	t.Fatalf("unknown mode %q", m)
	return nil, nil
}

// jsonEqual reports whether two JSON texts hold the same value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("%q: %v", a, err)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("%q: %v", b, err)
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return bytes.Equal(ja, jb)
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
