// Package testserver runs whole Fossil servers for end-to-end tests, each on
// its own database (see internal/dbtest), listening on 127.0.0.1:0. Import
// it only from _test.go files of external test packages.
package testserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/cmd"
	"github.com/fossil-events/fossil/internal/dbtest"
)

// Server is a running Fossil server.
type Server struct {
	*cmd.Server
	URL   string
	DBURL string
	Pool  *pgxpool.Pool // to the same database, for assertions
}

// Start runs a server on a fresh database. opts adjust the configuration.
func Start(t testing.TB, opts ...func(*cmd.Config)) *Server {
	t.Helper()
	return StartOn(t, dbtest.NewDB(t), opts...)
}

// StartOn runs a server on an existing database, as a second process would.
func StartOn(t testing.TB, dbURL string, opts ...func(*cmd.Config)) *Server {
	t.Helper()
	return start(t, dbURL, nil, opts)
}

// StartLogged runs a server on a fresh database that also writes its debug
// log to logs (which must be safe for concurrent writes).
func StartLogged(t testing.TB, logs io.Writer, opts ...func(*cmd.Config)) *Server {
	t.Helper()
	return start(t, dbtest.NewDB(t), logs, opts)
}

func start(t testing.TB, dbURL string, logs io.Writer, opts []func(*cmd.Config)) *Server {
	t.Helper()
	cfg := cmd.DefaultConfig()
	cfg.DatabaseURL = dbURL
	cfg.Addr = "127.0.0.1:0"
	cfg.PollInterval = 200 * time.Millisecond
	cfg.ShutdownTimeout = 5 * time.Second
	for _, o := range opts {
		o(&cfg)
	}
	level := slog.LevelWarn
	if os.Getenv("FOSSIL_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	var w io.Writer = testWriter{t}
	if logs != nil {
		level = slog.LevelDebug
		w = io.MultiWriter(w, logs)
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
	srv := cmd.NewServer(cfg, logger)
	if err := srv.Run(context.Background()); err != nil {
		_ = srv.Close()
		t.Fatalf("start server: %v", err)
	}
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatalf("pool: %v", err)
	}
	s := &Server{Server: srv, URL: srv.URL(), DBURL: dbURL, Pool: pool}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		pool.Close()
	})
	return s
}

// testWriter sends log lines to t.Log, and drops them once the test ended.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // logging after the test finished
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Event is a minimal event to post in binary mode.
type Event struct {
	ID, Source, Type string
	Data             string // JSON
}

// Post posts one event in binary mode with extra headers and returns the
// response (body read) — it fails the test on transport errors only.
func (s *Server) Post(t testing.TB, stream string, e Event, headers ...string) (*http.Response, []byte) {
	t.Helper()
	if e.Source == "" {
		e.Source = "/test"
	}
	if e.Type == "" {
		e.Type = "test.event"
	}
	if e.Data == "" {
		e.Data = `{}`
	}
	req, err := http.NewRequest(http.MethodPost, s.URL+"/collect", strings.NewReader(e.Data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Fossil-Stream", stream)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", e.ID)
	req.Header.Set("ce-source", e.Source)
	req.Header.Set("ce-type", e.Type)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, body
}

// MustPost posts and requires a 200; it returns the event number.
func (s *Server) MustPost(t testing.TB, stream string, e Event, headers ...string) int64 {
	t.Helper()
	resp, body := s.Post(t, stream, e, headers...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("post %s: status %d: %s", e.ID, resp.StatusCode, body)
	}
	n, err := strconv.ParseInt(resp.Header.Get("Fossil-Event-Number"), 10, 64)
	if err != nil {
		t.Fatalf("post %s: bad Fossil-Event-Number %q", e.ID, resp.Header.Get("Fossil-Event-Number"))
	}
	return n
}

// Frame is one SSE event as received.
type Frame struct {
	ID    string
	Data  string
	Event map[string]any // Data decoded
}

// Number returns the frame's event number.
func (f Frame) Number() int64 {
	n, _ := strconv.ParseInt(f.ID, 10, 64)
	return n
}

// SSE is an open event stream.
type SSE struct {
	Resp   *http.Response
	cancel context.CancelFunc
	frames chan Frame
	done   chan struct{}
	mu     sync.Mutex
	err    error
	// Comments counts comment lines (keepalives).
	comments int
}

// OpenSSE opens path (e.g. "/sse?stream=a") with optional headers and
// starts reading frames in the background. The stream closes at test end.
func (s *Server) OpenSSE(t testing.TB, path string, headers ...string) *SSE {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+path, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("open sse: %v", err)
	}
	sse := &SSE{Resp: resp, cancel: cancel, frames: make(chan Frame, 100000), done: make(chan struct{})}
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cancel()
		close(sse.done)
		close(sse.frames)
		sse.err = fmt.Errorf("status %d: %s", resp.StatusCode, body)
		t.Cleanup(func() {})
		return sse
	}
	go sse.read()
	t.Cleanup(sse.Close)
	return sse
}

func (s *SSE) read() {
	defer close(s.done)
	defer close(s.frames)
	err := ReadFrames(s.Resp.Body, func(f Frame) error {
		s.frames <- f
		return nil
	}, func(string) {
		s.mu.Lock()
		s.comments++
		s.mu.Unlock()
	})
	s.mu.Lock()
	s.err = err
	s.mu.Unlock()
}

// ReadFrames parses a text/event-stream body, the one SSE parser of the
// tests: each event (an id line and data lines, ended by a blank line) goes
// to frame with its data joined by newlines and, when it is JSON, decoded
// into Event; each comment line (": keepalive") goes to comment, which may
// be nil. It returns when r ends, with r's error, or with frame's.
func ReadFrames(r io.Reader, frame func(Frame) error, comment func(string)) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	var f Frame
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if f.ID != "" || len(data) > 0 {
				f.Data = strings.Join(data, "\n")
				_ = json.Unmarshal([]byte(f.Data), &f.Event)
				if err := frame(f); err != nil {
					return err
				}
			}
			f, data = Frame{}, nil
		case strings.HasPrefix(line, ":"):
			if comment != nil {
				comment(line)
			}
		case strings.HasPrefix(line, "id: "):
			f.ID = line[4:]
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[6:])
		}
	}
	return sc.Err()
}

// Comments returns how many comment lines arrived.
func (s *SSE) Comments() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.comments
}

// Err returns why the stream could not be opened or ended, if known.
func (s *SSE) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Next waits for n frames or fails the test after timeout.
func (s *SSE) Next(t testing.TB, n int, timeout time.Duration) []Frame {
	t.Helper()
	out := make([]Frame, 0, n)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for len(out) < n {
		select {
		case f, ok := <-s.frames:
			if !ok {
				t.Fatalf("stream ended after %d of %d frames (err %v)", len(out), n, s.Err())
			}
			out = append(out, f)
		case <-deadline.C:
			t.Fatalf("timed out after %d of %d frames", len(out), n)
		}
	}
	return out
}

// Quiet asserts that no frame arrives within d.
func (s *SSE) Quiet(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case f, ok := <-s.frames:
		if ok {
			t.Fatalf("unexpected frame %s: %s", f.ID, f.Data)
		}
	case <-time.After(d):
	}
}

// Ended reports whether the server ended the stream within d.
func (s *SSE) Ended(d time.Duration) bool {
	select {
	case <-s.done:
		return true
	case <-time.After(d):
		return false
	}
}

// Close closes the stream and waits for the reader.
func (s *SSE) Close() {
	s.cancel()
	<-s.done
	s.Resp.Body.Close()
}

// JSON is a small helper to build request bodies.
func JSON(v any) *bytes.Reader {
	b, _ := json.Marshal(v)
	return bytes.NewReader(b)
}

// ListenerPID returns the PostgreSQL backend pid of the server's LISTEN
// connection, for pg_terminate_backend; 0 while it is not connected or when
// the server only polls.
func (s *Server) ListenerPID() uint32 {
	l, ok := s.Notifier().Listener().(interface{ BackendPID() uint32 })
	if !ok {
		return 0
	}
	return l.BackendPID()
}

// Eventually polls cond every 10ms until it holds, and fails the test with
// what (a description of the awaited state) after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
