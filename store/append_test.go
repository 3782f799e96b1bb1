package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
)

// appendBundle is a store and its appender on a fresh database, plus a
// separate pool for checks.
type appendBundle struct {
	store    *Store
	appender *Appender
	check    *pgxpool.Pool
	dbURL    string
}

func setupAppend(tb testing.TB, cfg AppenderConfig) *appendBundle {
	tb.Helper()
	ctx := context.Background()
	dbURL := dbtest.NewDB(tb)
	st, err := Open(ctx, Config{DatabaseURL: dbURL, MaxConns: 8})
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(st.Close)
	app := NewAppender(st, cfg)
	tb.Cleanup(app.Close) // before st.Close
	check, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		tb.Fatalf("check pool: %v", err)
	}
	tb.Cleanup(check.Close)
	return &appendBundle{store: st, appender: app, check: check, dbURL: dbURL}
}

// testEvent returns an event as the collector hands it to the store.
func testEvent(id, content string) *fossil.Event {
	doc := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":"/s","type":"t","data":%q}`, id, content)
	return &fossil.Event{ID: id, Source: "/s", Type: "t", Doc: []byte(doc)}
}

func events(evs ...*fossil.Event) []*fossil.Event { return evs }

// requireDense checks that the log holds exactly 1..n, that the head says
// n, and that each stream's sequences are 1..k in number order and match
// fossil_streams.
func (b *appendBundle) requireDense(tb testing.TB, n int64) {
	tb.Helper()
	ctx := context.Background()
	var count, lo, hi, head, badSeq, badStreams int64
	err := b.check.QueryRow(ctx, `
SELECT (SELECT count(*) FROM fossil_events),
       (SELECT coalesce(min(number), 0) FROM fossil_events),
       (SELECT coalesce(max(number), 0) FROM fossil_events),
       (SELECT last_number FROM fossil_head),
       (SELECT count(*) FROM (SELECT sequence, row_number() OVER (PARTITION BY stream ORDER BY number) AS want FROM fossil_events) s WHERE sequence <> want),
       (SELECT count(*) FROM (SELECT DISTINCT stream FROM fossil_events) e FULL JOIN fossil_streams s ON s.name = e.stream WHERE s.name IS NULL OR e.stream IS NULL)`).
		Scan(&count, &lo, &hi, &head, &badSeq, &badStreams)
	if err != nil {
		tb.Fatalf("check log: %v", err)
	}
	if count != n || (n > 0 && lo != 1) || hi != n || head != n {
		tb.Fatalf("log: count=%d min=%d max=%d head=%d, want exactly 1..%d", count, lo, hi, head, n)
	}
	if badSeq != 0 || badStreams != 0 {
		tb.Fatalf("%d events out of sequence, %d stream heads wrong", badSeq, badStreams)
	}
}

func (b *appendBundle) doc(tb testing.TB, number int64) string {
	tb.Helper()
	var doc string
	if err := b.check.QueryRow(context.Background(), `SELECT doc::text FROM fossil_events WHERE number = $1`, number).Scan(&doc); err != nil {
		tb.Fatalf("doc of %d: %v", number, err)
	}
	return doc
}

// holdHead locks fossil_head from another connection, so that the
// appender's next group blocks until the returned function is called.
func (b *appendBundle) holdHead(tb testing.TB) (release func()) {
	tb.Helper()
	ctx := context.Background()
	tx, err := b.check.Begin(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SELECT last_number FROM fossil_head FOR UPDATE`); err != nil {
		tb.Fatal(err)
	}
	var once sync.Once
	release = func() { once.Do(func() { _ = tx.Rollback(ctx) }) }
	tb.Cleanup(release)
	return release
}

// waitQueued waits until n requests wait in the appender's queue.
func (b *appendBundle) waitQueued(tb testing.TB, n int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(b.appender.queue) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("%d requests queued after 30s, want %d", len(b.appender.queue), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestAppendGroupDecisions runs one group transaction holding requests
// that depend on each other, and checks each decision and that failed
// requests consumed no number.
func TestAppendGroupDecisions(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})

	reqs := []*AppendRequest{
		0:  {Stream: "a", Events: events(testEvent("e1", "x"), testEvent("e2", "x"))},
		1:  {Stream: "a", Events: events(testEvent("late", "x")), ExpectedSequence: 1},
		2:  {Stream: "a", Events: events(testEvent("e3", "x")), ExpectedSequence: 3},
		3:  {Stream: "b", Events: events(testEvent("e1", "x"))},
		4:  {Stream: "a", Events: events(testEvent("e1", "x"))},
		5:  {Stream: "a", Events: events(testEvent("e1", "other"))},
		6:  {Stream: "a", Events: events(testEvent("e2", "replaced")), Replace: true},
		7:  {Stream: "a", Events: events(testEvent("nope", "x")), Replace: true},
		8:  {Stream: "b", Events: events(testEvent("e4", "x"), testEvent("e4", "x"))},
		9:  {Stream: "b", Events: events(testEvent("e5", "x"), testEvent("e1", "x"))},
		10: {Stream: "b", Events: events(testEvent("e5", "x"))},
	}
	outcomes, _, err := b.store.appendGroup(context.Background(), reqs, true, nil)
	if err != nil {
		t.Fatalf("appendGroup: %v", err)
	}
	pos := func(i int) string {
		if outcomes[i].err != nil {
			return "error: " + outcomes[i].err.Error()
		}
		return fmt.Sprintf("%v dup=%v", outcomes[i].res.Events, outcomes[i].res.Duplicate)
	}
	wantOK := map[int]string{
		0:  "[{e1 /s 1 1} {e2 /s 2 2}] dup=false",
		2:  "[{e3 /s 3 3}] dup=false",
		4:  "[{e1 /s 1 1}] dup=true",
		6:  "[{e2 /s 2 2}] dup=false",
		10: "[{e5 /s 4 1}] dup=false",
	}
	for i, want := range wantOK {
		if got := pos(i); got != want {
			t.Errorf("request %d: %s, want %s", i, got, want)
		}
	}
	var seq *fossil.SequenceConflictError
	if err := outcomes[1].err; !errors.As(err, &seq) || seq.Expected != 1 || seq.Current != 2 || seq.Stream != "a" {
		t.Errorf("request 1: %v, want a sequence conflict expecting 1 at 2", err)
	}
	for _, i := range []int{3, 5, 9} {
		if err := outcomes[i].err; !errors.Is(err, fossil.ErrConflict) {
			t.Errorf("request %d: %v, want ErrConflict", i, err)
		}
	}
	if err := outcomes[7].err; !errors.Is(err, fossil.ErrNotFound) {
		t.Errorf("request 7: %v, want ErrNotFound", err)
	}
	var inv *fossil.InvalidError
	if err := outcomes[8].err; !errors.As(err, &inv) || inv.Location != "body[1].id" {
		t.Errorf("request 8: %v, want an InvalidError at body[1].id", err)
	}
	b.requireDense(t, 4)
	if doc := b.doc(t, 2); doc != string(testEvent("e2", "replaced").Doc) {
		t.Errorf("event 2 = %s, want the replacement", doc)
	}
}

// TestAppendGroupOptimistic covers groups that do not read their stored
// events up front: each answer must be the one a group that reads them
// gives, with nothing written by the failed first run and no number
// consumed, and the group must report whether it had to run again.
func TestAppendGroupOptimistic(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	// Stored before: stream "s" holds e1 (number 1) and e2 (number 2).
	if _, _, err := b.store.appendGroup(ctx, []*AppendRequest{
		{Stream: "s", Events: events(testEvent("e1", "x"), testEvent("e2", "x"))},
	}, false, nil); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		reqs        []*AppendRequest
		want        []string // per request: positions and dup, or the error class
		wantRetried bool
		wantHead    int64
	}{
		{
			name:     "NothingStored",
			reqs:     []*AppendRequest{{Stream: "a", Events: events(testEvent("a1", "x"))}, {Stream: "b", Events: events(testEvent("b1", "x"))}},
			want:     []string{"[{a1 /s 3 1}] dup=false", "[{b1 /s 4 1}] dup=false"},
			wantHead: 4,
		},
		{
			name:     "DuplicateWithinTheGroup",
			reqs:     []*AppendRequest{{Stream: "c", Events: events(testEvent("c1", "x"))}, {Stream: "c", Events: events(testEvent("c1", "x"))}},
			want:     []string{"[{c1 /s 5 1}] dup=false", "[{c1 /s 5 1}] dup=true"},
			wantHead: 5,
		},
		{
			name: "StoredDuplicate",
			reqs: []*AppendRequest{
				{Stream: "d", Events: events(testEvent("d1", "x"))},
				{Stream: "s", Events: events(testEvent("e1", "x"))},
				{Stream: "s", Events: events(testEvent("e2", "other"))},
			},
			want:        []string{"[{d1 /s 6 1}] dup=false", "[{e1 /s 1 1}] dup=true", "conflict"},
			wantRetried: true,
			wantHead:    6,
		},
		{
			name:        "RetryOfAStoredRequestWithExpectedSequence",
			reqs:        []*AppendRequest{{Stream: "s", Events: events(testEvent("e2", "x")), ExpectedSequence: 2}},
			want:        []string{"[{e2 /s 2 2}] dup=true"},
			wantRetried: true,
			wantHead:    6,
		},
		{
			name:        "ExpectedSequenceFails",
			reqs:        []*AppendRequest{{Stream: "s", Events: events(testEvent("e9", "x")), ExpectedSequence: 2}, {Stream: "f", Events: events(testEvent("f1", "x"))}},
			want:        []string{"sequence", "[{f1 /s 7 1}] dup=false"},
			wantRetried: true,
			wantHead:    7,
		},
	}
	for _, tt := range tests { // in order: each case builds on the log the previous left
		t.Run(tt.name, func(t *testing.T) {
			outcomes, st, err := b.store.appendGroup(ctx, tt.reqs, true, nil)
			if err != nil {
				t.Fatalf("appendGroup: %v", err)
			}
			for i, o := range outcomes {
				var got string
				var seq *fossil.SequenceConflictError
				switch {
				case errors.As(o.err, &seq):
					got = "sequence"
				case errors.Is(o.err, fossil.ErrConflict):
					got = "conflict"
				case o.err != nil:
					got = "error: " + o.err.Error()
				default:
					got = fmt.Sprintf("%v dup=%v", o.res.Events, o.res.Duplicate)
				}
				if got != tt.want[i] {
					t.Errorf("request %d: %s, want %s", i, got, tt.want[i])
				}
			}
			if st.retried != tt.wantRetried {
				t.Errorf("retried = %v, want %v", st.retried, tt.wantRetried)
			}
			b.requireDense(t, tt.wantHead)
		})
	}
}

// TestAppendGroupHeadCache runs groups of three "processes" (three head
// caches) on one database, in turn, and checks for each group which way it
// took and that its answer is the one the long way gives: a cache is used
// only while no other process has written, a stream it takes for new but
// that exists, a stored duplicate and an expected sequence all fall back
// to reading under the lock, and nothing is written twice or skipped.
func TestAppendGroupHeadCache(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	caches := map[string]*headCache{"A": newHeadCache(), "B": newHeadCache(), "C": newHeadCache()}
	req := func(stream, id string, expected int64) []*AppendRequest {
		return []*AppendRequest{{Stream: stream, Events: events(testEvent(id, "x")), ExpectedSequence: expected}}
	}
	steps := []struct {
		name, process string
		reqs          []*AppendRequest
		want          string
		wantCached    bool // committed in one round trip from the cache
		wantRetried   bool
	}{
		{name: "FirstGroupReads", process: "A", reqs: req("s1", "e1", 0), want: "[{e1 /s 1 1}] dup=false"},
		{name: "KnownStream", process: "A", reqs: req("s1", "e2", 0), want: "[{e2 /s 2 2}] dup=false", wantCached: true},
		{name: "NewStream", process: "A", reqs: req("s2", "e3", 0), want: "[{e3 /s 3 1}] dup=false", wantCached: true},
		{name: "ExpectedSequenceKnownStream", process: "A", reqs: req("s2", "e4", 2), want: "[{e4 /s 4 2}] dup=false", wantCached: true},
		{name: "StoredDuplicate", process: "A", reqs: req("s1", "e2", 0), want: "[{e2 /s 2 2}] dup=true", wantRetried: true},
		{name: "ExpectedSequenceFails", process: "A", reqs: req("s1", "e5", 2), want: "sequence 2 at 2", wantRetried: true},
		{name: "CacheValidAfterReading", process: "A", reqs: req("s1", "e6", 3), want: "[{e6 /s 5 3}] dup=false", wantCached: true},
		{name: "OtherProcessWrites", process: "B", reqs: req("s1", "e7", 0), want: "[{e7 /s 6 4}] dup=false"},
		{name: "HeadMovedUnderTheCache", process: "A", reqs: req("s1", "e8", 0), want: "[{e8 /s 7 5}] dup=false"},
		{name: "SkippedAfterStale", process: "A", reqs: req("s2", "e9", 0), want: "[{e9 /s 8 3}] dup=false"},
		{name: "ThirdProcessStarts", process: "C", reqs: req("s3", "f1", 0), want: "[{f1 /s 9 1}] dup=false"},
		// The batch that takes s1 for new reads its head: the group is
		// planned again from the cache, which stays valid.
		{name: "ExistingStreamTakenForNew", process: "C", reqs: req("s1", "f2", 0), want: "[{f2 /s 10 6}] dup=false", wantCached: true},
		{name: "CacheKeptAfterLearning", process: "C", reqs: req("s3", "f4", 2), want: "[{f4 /s 11 2}] dup=false", wantCached: true},
		{name: "UnknownStreamWithExpectedSequence", process: "B", reqs: req("s2", "f3", 4), want: "[{f3 /s 12 4}] dup=false"},
	}
	for _, tt := range steps { // in order: each step builds on the log and caches the previous left
		t.Run(tt.name, func(t *testing.T) {
			outcomes, st, err := b.store.appendGroup(ctx, tt.reqs, true, caches[tt.process])
			if err != nil {
				t.Fatalf("appendGroup: %v", err)
			}
			var got string
			var seq *fossil.SequenceConflictError
			switch o := outcomes[0]; {
			case errors.As(o.err, &seq):
				got = fmt.Sprintf("sequence %d at %d", seq.Expected, seq.Current)
			case o.err != nil:
				got = "error: " + o.err.Error()
			default:
				got = fmt.Sprintf("%v dup=%v", o.res.Events, o.res.Duplicate)
			}
			if got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
			if st.fromCache != tt.wantCached || st.retried != tt.wantRetried {
				t.Errorf("from cache %v, retried %v; want %v, %v", st.fromCache, st.retried, tt.wantCached, tt.wantRetried)
			}
		})
	}
	b.requireDense(t, 12)
}

// TestHeadCacheEvictsLeastRecentlyUsed: a full cache forgets the stream
// used longest ago, not everything; a forgotten stream that exists is
// learned from the head read in the same batch, and the group still
// commits from the cache.
func TestHeadCacheEvictsLeastRecentlyUsed(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	cache := newHeadCacheSize(2)
	n := 0
	appendTo := func(stream string) *groupState {
		t.Helper()
		n++
		reqs := []*AppendRequest{{Stream: stream, Events: events(testEvent(fmt.Sprintf("e%d", n), "x"))}}
		outcomes, st, err := b.store.appendGroup(ctx, reqs, true, cache)
		if err != nil || outcomes[0].err != nil {
			t.Fatalf("append to %s: %v %v", stream, err, outcomes[0].err)
		}
		return st
	}
	appendTo("a") // the long way: the cache starts empty
	appendTo("b")
	appendTo("a") // a is now more recent than b
	appendTo("c") // evicts b, not a
	if _, ok := cache.streams.Peek("a"); !ok {
		t.Error("a was evicted; want b (least recently used)")
	}
	if _, ok := cache.streams.Peek("b"); ok {
		t.Error("b is still cached in a cache of two after a and c")
	}
	st := appendTo("b") // forgotten, exists: learned in the same batch
	if !st.fromCache {
		t.Error("the group on a forgotten stream took the long way; want it planned again from the cache")
	}
	if seq, _ := cache.streams.Peek("b"); seq != 2 {
		t.Errorf("cached head of b = %d, want 2", seq)
	}
	if cache.skip != 0 || !cache.valid {
		t.Errorf("cache skip %d valid %v after learning a stream; want 0, true", cache.skip, cache.valid)
	}
	b.requireDense(t, 5)
}

// TestAppenderConcurrent: 64 goroutines append to one stream and to many;
// no request fails and the log is dense.
func TestAppenderConcurrent(t *testing.T) {
	t.Parallel()
	const writers, perWriter = 64, 50
	for _, tt := range []struct {
		name   string
		stream func(w int) string
	}{
		{name: "OneStream", stream: func(int) string { return "shared" }},
		{name: "ManyStreams", stream: func(w int) string { return fmt.Sprintf("w%d", w) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := setupAppend(t, AppenderConfig{})
			var failures atomic.Int64
			var firstErr atomic.Value
			var wg sync.WaitGroup
			for w := range writers {
				wg.Go(func() {
					for i := range perWriter {
						_, err := b.appender.Append(context.Background(), &AppendRequest{
							Stream: tt.stream(w),
							Events: events(testEvent(fmt.Sprintf("w%d-%d", w, i), "x")),
						})
						if err != nil {
							failures.Add(1)
							firstErr.CompareAndSwap(nil, err.Error())
						}
					}
				})
			}
			wg.Wait()
			if n := failures.Load(); n > 0 {
				t.Fatalf("%d appends failed, first: %v", n, firstErr.Load())
			}
			b.requireDense(t, writers*perWriter)
		})
	}
}

// TestAppenderTwoProcesses: two stores with their own appenders on one
// database (two server processes) append concurrently; the head row lock
// keeps numbers dense and sequences consistent.
func TestAppenderTwoProcesses(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	st2, err := Open(context.Background(), Config{DatabaseURL: b.dbURL, MaxConns: 8})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st2.Close)
	app2 := NewAppender(st2, AppenderConfig{})
	t.Cleanup(app2.Close)

	const writers, perWriter = 16, 40
	var wg sync.WaitGroup
	var failures atomic.Int64
	for w := range writers {
		app := b.appender
		if w%2 == 1 {
			app = app2
		}
		wg.Go(func() {
			for i := range perWriter {
				stream := "shared"
				if i%2 == 0 {
					stream = fmt.Sprintf("w%d", w%4)
				}
				if _, err := app.Append(context.Background(), &AppendRequest{
					Stream: stream,
					Events: events(testEvent(fmt.Sprintf("w%d-%d", w, i), "x"), testEvent(fmt.Sprintf("w%d-%d-b", w, i), "x")),
				}); err != nil {
					failures.Add(1)
					t.Errorf("append: %v", err)
				}
			}
		})
	}
	wg.Wait()
	if failures.Load() == 0 {
		b.requireDense(t, writers*perWriter*2)
	}
}

// TestAppenderGroupIsolation queues requests behind a locked head row so
// that they commit as one group, and checks that failing requests (a
// sequence conflict, an id conflict, a statement error) neither fail their
// neighbours nor leave a hole.
func TestAppenderGroupIsolation(t *testing.T) {
	t.Parallel()
	var groups []int
	var mu sync.Mutex
	b := setupAppend(t, AppenderConfig{ObserveFunc: func(requests, _ int, _ time.Duration, _ error) {
		mu.Lock()
		groups = append(groups, requests)
		mu.Unlock()
	}})
	ctx := context.Background()
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "s", Events: events(testEvent("taken", "x"))}); err != nil {
		t.Fatal(err)
	}

	release := b.holdHead(t)
	// The first request takes the appender into a group that waits for the
	// lock; the others queue behind it and form the next group.
	type result struct {
		res *AppendResult
		err error
	}
	reqs := []*AppendRequest{
		{Stream: "s", Events: events(testEvent("blocked", "x"))},
		{Stream: "s", Events: events(testEvent("ok1", "x"))},
		{Stream: "s", Events: events(testEvent("seq", "x")), ExpectedSequence: 1},
		{Stream: "s", Events: events(testEvent("taken", "other"))},
		// Valid JSON (the leaf is computed before the event is queued)
		// that PostgreSQL refuses: invalid UTF-8.
		{Stream: "s", Events: events(&fossil.Event{ID: "bad", Source: "/s", Type: "t", Doc: []byte("{\"x\":\"\xff\"}")})},
		{Stream: "t", Events: events(testEvent("ok2", "x"), testEvent("ok3", "x"))},
	}
	results := make([]result, len(reqs))
	var wg sync.WaitGroup
	for i, req := range reqs {
		wg.Go(func() {
			res, err := b.appender.Append(ctx, req)
			results[i] = result{res, err}
		})
		if i == 0 {
			waitFor(t, func() bool { return len(b.appender.queue) == 0 && lockWaiters(t, b) == 1 })
		} else {
			b.waitQueued(t, i)
		}
	}
	release()
	wg.Wait()

	for _, i := range []int{0, 1, 5} {
		if results[i].err != nil {
			t.Errorf("request %d failed: %v", i, results[i].err)
		}
	}
	if !errors.Is(results[2].err, fossil.ErrSequenceConflict) {
		t.Errorf("request 2: %v, want a sequence conflict", results[2].err)
	}
	if !errors.Is(results[3].err, fossil.ErrConflict) {
		t.Errorf("request 3: %v, want a conflict", results[3].err)
	}
	if results[4].err == nil {
		t.Errorf("request 4 with a broken document succeeded")
	}
	b.requireDense(t, 5)
	mu.Lock()
	defer mu.Unlock()
	t.Logf("group sizes: %v", groups)
	if len(groups) < 3 || groups[2] != len(reqs)-1 {
		t.Errorf("group sizes %v: the queued requests did not commit as one group", groups)
	}
}

// TestAppenderLoneAndQueued: a request that finds the appender idle runs
// alone in its caller; requests arriving meanwhile queue up and commit as
// the next group, after it. Close waits for a lone request in flight and
// commits what was queued before it; the log stays dense and in order.
func TestAppenderLoneAndQueued(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var groups []int
	b := setupAppend(t, AppenderConfig{ObserveFunc: func(requests, _ int, _ time.Duration, _ error) {
		mu.Lock()
		groups = append(groups, requests)
		mu.Unlock()
	}})
	ctx := context.Background()
	// One writer at a time: every request is a group of one.
	for i := range 20 {
		res, err := b.appender.Append(ctx, &AppendRequest{Stream: "lone", Events: events(testEvent(fmt.Sprintf("lone-%d", i), "x"))})
		if err != nil {
			t.Fatal(err)
		}
		if p := res.Events[0]; p.Number != int64(i+1) || p.Sequence != int64(i+1) {
			t.Fatalf("append %d landed at %+v", i, p)
		}
	}

	// A lone request waits for the head lock; the next ones queue behind it.
	release := b.holdHead(t)
	type result struct {
		res *AppendResult
		err error
	}
	const queued = 5
	results := make(chan result, queued+1)
	send := func(id string) {
		res, err := b.appender.Append(ctx, &AppendRequest{Stream: "lone", Events: events(testEvent(id, "x"))})
		results <- result{res, err}
	}
	go send("first")
	waitFor(t, func() bool { return lockWaiters(t, b) == 1 })
	if n := len(b.appender.queue); n != 0 {
		t.Fatalf("%d requests queued; the lone request should run in its caller", n)
	}
	for i := range queued {
		go send(fmt.Sprintf("queued-%d", i))
	}
	b.waitQueued(t, queued)
	closed := make(chan struct{})
	go func() {
		b.appender.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a request was being committed")
	case <-time.After(50 * time.Millisecond):
	}
	release()
	<-closed
	numbers := map[int64]string{}
	for range queued + 1 {
		r := <-results
		if r.err != nil {
			t.Fatalf("append accepted before Close failed: %v", r.err)
		}
		p := r.res.Events[0]
		numbers[p.Number] = p.ID
		if p.Sequence != p.Number {
			t.Errorf("%s: number %d sequence %d, want them equal in a one-stream log", p.ID, p.Number, p.Sequence)
		}
	}
	if numbers[21] != "first" {
		t.Errorf("number 21 went to %q, want the lone request that came first", numbers[21])
	}
	b.requireDense(t, 20+queued+1)
	mu.Lock()
	defer mu.Unlock()
	for i, g := range groups[:21] {
		if g != 1 {
			t.Errorf("group %d held %d requests, want 1 (groups %v)", i, g, groups)
		}
	}
	if len(groups) != 22 || groups[21] != queued {
		t.Errorf("groups %v: want 21 groups of one, then the %d queued requests as one group", groups, queued)
	}
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "lone", Events: events(testEvent("late", "x"))}); !errors.Is(err, fossil.ErrUnavailable) {
		t.Errorf("append after Close: %v, want ErrUnavailable", err)
	}
}

// TestAppenderCancelledAndClosed: a request whose context ended is not
// stored and consumes no number; after Close, appends fail with
// ErrUnavailable and Close may be called again.
func TestAppenderCancelledAndClosed(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "s", Events: events(testEvent("gone", "x"))}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled append: %v, want context.Canceled", err)
	}
	// Queued behind a held lock, then abandoned.
	release := b.holdHead(t)
	go func() {
		_, _ = b.appender.Append(context.Background(), &AppendRequest{Stream: "s", Events: events(testEvent("first", "x"))})
	}()
	waitFor(t, func() bool { return lockWaiters(t, b) == 1 })
	ctx2, cancel2 := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.appender.Append(ctx2, &AppendRequest{Stream: "s", Events: events(testEvent("abandoned", "x"))})
		done <- err
	}()
	b.waitQueued(t, 1)
	cancel2()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("abandoned append: %v, want context.Canceled", err)
	}
	release()
	res, err := b.appender.Append(context.Background(), &AppendRequest{Stream: "s", Events: events(testEvent("after", "x"))})
	if err != nil {
		t.Fatal(err)
	}
	if res.Events[0].Number != 2 || res.Events[0].Sequence != 2 {
		t.Errorf("next append got %+v, want number 2 sequence 2", res.Events[0])
	}
	b.requireDense(t, 2)

	b.appender.Close()
	b.appender.Close()
	if _, err := b.appender.Append(context.Background(), &AppendRequest{Stream: "s", Events: events(testEvent("late", "x"))}); !errors.Is(err, fossil.ErrUnavailable) {
		t.Errorf("append after Close: %v, want ErrUnavailable", err)
	}
}

// lockWaiters counts sessions waiting for a lock in the bundle's database.
func lockWaiters(tb testing.TB, b *appendBundle) int {
	tb.Helper()
	var n int
	err := b.check.QueryRow(context.Background(),
		`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func waitFor(tb testing.TB, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatal("condition not met within 30s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkAppenderGroup measures appends through the group-commit
// appender: single-event requests from 1 and 64 concurrent callers, and
// 100-event batches.
func BenchmarkAppenderGroup(b *testing.B) {
	for _, bc := range []struct {
		name            string
		clients, perReq int
		serial          bool
	}{
		{"Clients1", 1, 1, false},
		{"Clients64", 64, 1, false},
		{"Clients64Serial", 64, 1, true},
		{"Batch100Clients4", 4, 100, false},
		{"Batch100Clients16", 16, 100, false},
		{"Batch100Clients16Serial", 16, 100, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			serialGroups = bc.serial
			defer func() { serialGroups = false }()
			var groups, grouped atomic.Int64
			ab := setupAppend(b, AppenderConfig{ObserveFunc: func(requests, _ int, _ time.Duration, _ error) {
				groups.Add(1)
				grouped.Add(int64(requests))
			}})
			var next atomic.Int64
			var wg sync.WaitGroup
			pad := strings.Repeat("x", 480) // documents of about 560 bytes, as fossil bench sends
			b.ResetTimer()
			for range bc.clients {
				wg.Go(func() {
					for {
						i := next.Add(1)
						if i > int64(b.N) {
							return
						}
						evs := make([]*fossil.Event, bc.perReq)
						for j := range evs {
							evs[j] = testEvent(fmt.Sprintf("%d-%d", i, j), pad)
						}
						if _, err := ab.appender.Append(context.Background(), &AppendRequest{Stream: fmt.Sprintf("c%d", i%1000), Events: evs}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			b.StopTimer()
			events := float64(b.N * bc.perReq)
			b.ReportMetric(events/b.Elapsed().Seconds(), "events/s")
			if g := groups.Load(); g > 0 {
				b.ReportMetric(float64(grouped.Load())/float64(g), "requests/group")
			}
		})
	}
}

// TestAppenderPipelined: two groups of several events are in flight at
// once, the second planned on the first's outcome; when the first fails
// (a stored duplicate it did not read), the second's head check fails too,
// nothing of either is written, and both run again, alone.
func TestAppenderPipelined(t *testing.T) {
	t.Parallel()
	for _, dup := range []bool{false, true} {
		t.Run(fmt.Sprintf("dup=%v", dup), func(t *testing.T) {
			t.Parallel()
			b := setupAppend(t, AppenderConfig{MaxGroupEvents: 2, minPipelined: 2})
			ctx := context.Background()
			if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "s", Events: events(testEvent("stored", "x"), testEvent("stored2", "x"))}); err != nil {
				t.Fatal(err)
			}
			// A lone request waits for the head lock; two requests of two
			// events queue behind it and form two groups.
			release := b.holdHead(t)
			type result struct {
				res *AppendResult
				err error
			}
			send := func(stream string, evs ...*fossil.Event) chan result {
				ch := make(chan result, 1)
				go func() {
					res, err := b.appender.Append(ctx, &AppendRequest{Stream: stream, Events: evs})
					ch <- result{res, err}
				}()
				return ch
			}
			r0 := send("a", testEvent("a1", "x"), testEvent("a2", "x"))
			waitFor(t, func() bool { return lockWaiters(t, b) == 1 })
			first := testEvent("b1", "x")
			if dup {
				first = testEvent("stored", "x")
			}
			r1 := send("s", first, testEvent("b2", "x"))
			b.waitQueued(t, 1)
			r2 := send("s", testEvent("c1", "x"), testEvent("c2", "x"))
			b.waitQueued(t, 2)
			release()
			want := map[string]Position{"a1": {Number: 3, Sequence: 1}, "a2": {Number: 4, Sequence: 2}}
			if dup {
				want["stored"] = Position{Number: 1, Sequence: 1}
				want["b2"] = Position{Number: 5, Sequence: 3}
				want["c1"] = Position{Number: 6, Sequence: 4}
				want["c2"] = Position{Number: 7, Sequence: 5}
			} else {
				want["b1"] = Position{Number: 5, Sequence: 3}
				want["b2"] = Position{Number: 6, Sequence: 4}
				want["c1"] = Position{Number: 7, Sequence: 5}
				want["c2"] = Position{Number: 8, Sequence: 6}
			}
			for _, ch := range []chan result{r0, r1, r2} {
				r := <-ch
				if r.err != nil {
					t.Fatal(r.err)
				}
				for _, p := range r.res.Events {
					if w := want[p.ID]; p.Number != w.Number || p.Sequence != w.Sequence {
						t.Errorf("%s landed at number %d sequence %d, want %d and %d", p.ID, p.Number, p.Sequence, w.Number, w.Sequence)
					}
				}
			}
			b.appender.Close()
			b.requireDense(t, int64(len(want)+2-map[bool]int{false: 0, true: 1}[dup]))
			if b.appender.launched < 2 {
				t.Errorf("%d groups sent without waiting, want the two queued ones", b.appender.launched)
			}
		})
	}
}

// TestInsertEventsPlanStreamsArrays holds the group insert to a plan that
// reads its parameter arrays element by element (ProjectSet), not one that
// materialises them first in a tuplestore (Function Scan), whose memory the
// writer's backend gave back to the system and took again with page faults
// at every group (docs/PERFORMANCE.md, "The writer's backend: memory
// churn"), and checks that the columns land where they belong.
func TestInsertEventsPlanStreamsArrays(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	rows, err := b.check.Query(ctx, "EXPLAIN (COSTS OFF) "+insertEventsSQL,
		[]int64{1}, []string{"s"}, []int64{1}, []string{"id"}, []string{"/src"}, []string{"t"},
		[]*string{nil}, []*time.Time{nil}, []*string{nil}, []string{`{}`}, [][]byte{{0}}, [][]byte{nil})
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if plan := strings.Join(lines, "\n"); !strings.Contains(plan, "ProjectSet") || strings.Contains(plan, "Function Scan") {
		t.Fatalf("the group insert should unnest its arrays in a ProjectSet, not a Function Scan:\n%s", plan)
	}

	subject := "subj"
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	evs := []*fossil.Event{testEvent("a", "1"), testEvent("b", "2"), testEvent("c", "3")}
	evs[1].Subject, evs[1].Time, evs[1].Type = subject, at, "second.type"
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "cols/one", Events: evs}); err != nil {
		t.Fatal(err)
	}
	var (
		stream, id, typ string
		seq             int64
		subj            *string
		tm              *time.Time
	)
	if err := b.check.QueryRow(ctx, `SELECT stream, sequence, id, type, subject, time FROM fossil_events WHERE id = 'b'`).
		Scan(&stream, &seq, &id, &typ, &subj, &tm); err != nil {
		t.Fatal(err)
	}
	if stream != "cols/one" || seq != 2 || typ != "second.type" || subj == nil || *subj != subject || tm == nil || !tm.Equal(at) {
		t.Fatalf("event b stored as stream %q sequence %d type %q subject %v time %v", stream, seq, typ, subj, tm)
	}
	b.requireDense(t, 3)
	if got := b.doc(t, 3); !strings.Contains(got, `"id":"c"`) {
		t.Fatalf("event 3's document: %s", got)
	}
}

// TestHeadCheckAgainstConcurrentUpdate pins how advanceHeadSQL's check
// meets another transaction's uncommitted move of the head, which the
// pipelined groups rely on (docs/ARCHITECTURE.md, "Pipelined groups"):
// PostgreSQL computes the new row from the version in the statement's
// snapshot before it takes the row lock. A check that expects the
// uncommitted head fails at once instead of waiting for it; a check that
// expects the head as it was waits, and fails once the other transaction
// commits — it never passes on a stale head.
func TestHeadCheckAgainstConcurrentUpdate(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first, err := b.check.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Release()
	second, err := b.check.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Release()
	isDivisionByZero := func(err error) bool {
		pgErr, ok := errors.AsType[*pgconn.PgError](err)
		return ok && pgErr.Code == "22012"
	}

	tx, err := first.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, advanceHeadSQL, int64(5), int64(0), int64(0), nil, int64(111)); err != nil {
		t.Fatalf("first move of the head: %v", err)
	}

	// Expecting the uncommitted head: fails at once. (Were it to wait
	// for the first transaction, the deadline below would end it with a
	// different error.)
	waitCtx, waitCancel := context.WithTimeout(ctx, 10*time.Second)
	token := int64(111)
	_, err = second.Exec(waitCtx, advanceHeadSQL, int64(10), int64(5), int64(0), &token, int64(222))
	waitCancel()
	if !isDivisionByZero(err) {
		t.Fatalf("a check expecting another transaction's uncommitted head: err = %v, want division_by_zero at once", err)
	}

	// Expecting the head as it was: waits for the lock, then fails on the
	// committed head.
	done := make(chan error, 1)
	go func() {
		_, err := second.Exec(ctx, advanceHeadSQL, int64(3), int64(0), int64(0), nil, int64(333))
		done <- err
	}()
	waitFor(t, func() bool { return len(done) > 0 || lockWaiters(t, b) > 0 })
	select {
	case err := <-done:
		t.Fatalf("a check expecting the head before another transaction's move did not wait for its lock: err = %v", err)
	default:
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !isDivisionByZero(err) {
		t.Fatalf("a check expecting the head as it was before another transaction's committed move: err = %v, want division_by_zero", err)
	}
	var head, groupToken int64
	if err := b.check.QueryRow(ctx, "SELECT last_number, group_token FROM fossil_head").Scan(&head, &groupToken); err != nil {
		t.Fatal(err)
	}
	if head != 5 || groupToken != 111 {
		t.Fatalf("head %d, token %d; want the first transaction's 5 and 111", head, groupToken)
	}
}
