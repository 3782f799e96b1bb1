package store

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
)

// readLogSize is the number of events of the analysed log the read tests
// run on: enough for PostgreSQL's statistics to make a plan that reads the
// log by number look cheaper than the matching streams' index for a busy
// literal stream, and to make a scan of the log cost a hundred times what
// a selective read returns.
const readLogSize = 100_000

// queryLog records the statements run on fossil_events and their
// arguments, so that the test can replay each under EXPLAIN ANALYZE.
type queryLog struct {
	mu      sync.Mutex
	queries []loggedQuery
}

type loggedQuery struct {
	sql  string
	args []any
}

func (l *queryLog) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	if strings.Contains(d.SQL, "fossil_events") {
		l.mu.Lock()
		l.queries = append(l.queries, loggedQuery{sql: d.SQL, args: d.Args})
		l.mu.Unlock()
	}
	return ctx
}

func (l *queryLog) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (l *queryLog) take() []loggedQuery {
	l.mu.Lock()
	defer l.mu.Unlock()
	q := l.queries
	l.queries = nil
	return q
}

// readFixture is an analysed log of readLogSize events: 2,000 streams
// scale/sN share most of it, big/one holds a tenth, and a few selective
// streams are spread through it.
type readFixture struct {
	store *Store
	log   *queryLog
	check *pgxpool.Pool
	// streams[n-1] is the stream of event n.
	streams []string
}

func streamOf(n int64) string {
	switch {
	case n%1543 == 0:
		return fmt.Sprintf("hidden/%d", n)
	case n%2011 == 0:
		return fmt.Sprintf("c%d/needle", n)
	case n%1999 == 0:
		return "small/one"
	case n%10 == 0:
		return "big/one"
	default:
		return fmt.Sprintf("scale/s%d", (n*7919)%2000)
	}
}

func newReadFixture(t *testing.T) *readFixture {
	t.Helper()
	ctx := context.Background()
	dbURL := dbtest.NewDB(t)
	check, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(check.Close)
	f := &readFixture{check: check, log: &queryLog{}}
	numbers := make([]int64, readLogSize)
	f.streams = make([]string, readLogSize)
	for i := range numbers {
		numbers[i] = int64(i + 1)
		f.streams[i] = streamOf(int64(i + 1))
	}
	// Written directly: the appender is not what is under test, and this
	// is a hundred times faster.
	for _, sql := range []string{
		`INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
		 SELECT n, s, row_number() OVER (PARTITION BY s ORDER BY n), 'e' || n, '/t', 't',
		        json_build_object('specversion', '1.0', 'id', 'e' || n, 'source', '/t', 'type', 't', 'data', repeat('x', 100))
		 FROM unnest($1::bigint[], $2::text[]) AS t(n, s)`,
		`INSERT INTO fossil_streams (name) SELECT DISTINCT stream FROM fossil_events`,
		`UPDATE fossil_head SET last_number = (SELECT max(number) FROM fossil_events)`,
		`ANALYZE fossil_events`,
		`ANALYZE fossil_streams`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = []any{numbers, f.streams}
		}
		if _, err := check.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	pcfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	pcfg.ConnConfig.RuntimeParams["plan_cache_mode"] = "force_custom_plan"
	pcfg.ConnConfig.Tracer = f.log
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f.store = &Store{pool: pool}
	return f
}

// rowsRead replays q under EXPLAIN ANALYZE and returns how many rows its
// scans of fossil_events touched (returned or filtered out, over every
// loop) and the indexes they used.
func (f *readFixture) rowsRead(t *testing.T, q loggedQuery) (int64, []string) {
	t.Helper()
	var raw []byte
	if err := f.check.QueryRow(context.Background(), "EXPLAIN (ANALYZE, FORMAT JSON) "+q.sql, q.args...).Scan(&raw); err != nil {
		t.Fatalf("explain %s: %v", q.sql, err)
	}
	var plans []struct{ Plan map[string]any }
	if err := json.Unmarshal(raw, &plans); err != nil {
		t.Fatal(err)
	}
	var rows int64
	var indexes []string
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		if n["Relation Name"] == "fossil_events" {
			num := func(k string) float64 { v, _ := n[k].(float64); return v }
			rows += int64((num("Actual Rows") + num("Rows Removed by Filter") + num("Rows Removed by Index Recheck")) * num("Actual Loops"))
			idx, _ := n["Index Name"].(string)
			indexes = append(indexes, fmt.Sprintf("%s %s", n["Node Type"], idx))
		}
		subs, _ := n["Plans"].([]any)
		for _, s := range subs {
			walk(s.(map[string]any))
		}
	}
	for _, p := range plans {
		walk(p.Plan)
	}
	return rows, indexes
}

// TestReadPlans reads selective templates page by page on an analysed log
// and replays every statement that touched fossil_events under EXPLAIN
// ANALYZE: a read must touch about as many rows as it returns, whatever
// the statistics suggest, and the page statements must use the (stream,
// number) index. It fails on reads that narrow a scan of the log by number
// with stream conditions (the previous design): the busy literal stream
// then read ten rows per row returned, and a template without a literal
// prefix read the whole log.
func TestReadPlans(t *testing.T) {
	t.Parallel()
	f := newReadFixture(t)
	ctx := context.Background()
	mustTemplates := func(raws ...string) func(string) bool {
		ts, err := fossil.ParseTemplates("test", raws)
		if err != nil {
			t.Fatal(err)
		}
		return ts.Match
	}
	grant := mustTemplates("hidden/{id}")
	all := mustTemplates("{+all}")
	cases := []struct {
		name  string
		match func(string) bool
		after int64
		limit int
	}{
		{name: "LiteralSmallStream", match: mustTemplates("small/one"), limit: 100},
		{name: "LiteralBusyStream", match: mustTemplates("big/one"), limit: 100},
		{name: "LiteralBusyStreamFromTheMiddle", match: mustTemplates("big/one"), after: readLogSize / 2, limit: 1000},
		{name: "Prefix", match: mustTemplates("hidden/{id}"), limit: 100},
		{name: "NoLiteralPrefix", match: mustTemplates("{cat}/needle"), limit: 100},
		{name: "SeveralTemplates", match: mustTemplates("hidden/{id}", "{cat}/needle", "small/one"), limit: 100},
		{name: "BusyAndQuietStreams", match: mustTemplates("big/one", "small/one", "scale/s7"), limit: 100},
		{name: "AllNarrowedByAGrant", match: func(s string) bool { return all(s) && grant(s) }, limit: 100},
		{name: "UnknownStream", match: mustTemplates("nothing/here"), limit: 100},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			// Not parallel: the query log is shared.
			var want []int64
			for i, s := range f.streams {
				if n := int64(i + 1); n > tt.after && tt.match(s) {
					want = append(want, n)
				}
			}
			r := f.store.NewReader(tt.match)
			f.log.take()
			var got []int64
			cursor, pages := tt.after, 0
			for cursor < readLogSize {
				events, scanned, err := r.Read(ctx, cursor, readLogSize, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				if scanned <= cursor {
					t.Fatalf("page after %d scanned through %d: no progress", cursor, scanned)
				}
				for _, e := range events {
					if e.Number <= cursor || e.Number > scanned || !tt.match(e.Stream) {
						t.Fatalf("page (%d, %d] returned event %d of %q", cursor, scanned, e.Number, e.Stream)
					}
					got = append(got, e.Number)
				}
				cursor = scanned
				if pages++; pages > 10_000 {
					t.Fatal("more than 10,000 pages")
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("read %d events, want %d (first got %v, want %v)", len(got), len(want), got[:min(5, len(got))], want[:min(5, len(want))])
			}
			var read int64
			for _, q := range f.log.take() {
				n, indexes := f.rowsRead(t, q)
				read += n
				if strings.Contains(q.sql, `(stream COLLATE "C", number) >`) && (len(indexes) != 1 || indexes[0] != "Index Scan fossil_events_stream_number") {
					t.Errorf("page plan scans fossil_events with %v, want one Index Scan fossil_events_stream_number", indexes)
				}
			}
			if limit := 2*int64(len(want)) + 100; read > limit {
				t.Errorf("%d events in %d pages read %d rows of fossil_events, want at most %d", len(want), pages, read, limit)
			}
			t.Logf("%d events, %d pages, %d rows read", len(want), pages, read)
		})
	}
}

// TestReaderLearnsNewStreams: streams created after a reader resolved its
// templates are found, and a read by every stream reads the log.
func TestReaderLearnsNewStreams(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	appendTo := func(stream, id string) int64 {
		t.Helper()
		res, err := b.appender.Append(ctx, &AppendRequest{Stream: stream, Events: events(testEvent(id, "x"))})
		if err != nil {
			t.Fatal(err)
		}
		return res.Events[0].Number
	}
	appendTo("orders/1", "a")
	appendTo("users/1", "b")
	ts, err := fossil.ParseTemplates("test", []string{"orders/{id}"})
	if err != nil {
		t.Fatal(err)
	}
	r := b.store.NewReader(ts.Match)
	got, scanned, err := r.Read(ctx, 0, 2, 10)
	if err != nil || len(got) != 1 || got[0].Stream != "orders/1" || scanned != 2 {
		t.Fatalf("first read: %v scanned %d err %v", got, scanned, err)
	}
	n3 := appendTo("orders/2", "c") // a stream the reader has not seen
	appendTo("users/2", "d")
	n5 := appendTo("orders/1", "e")
	got, scanned, err = r.Read(ctx, 2, n5, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Number != n3 || got[0].Stream != "orders/2" || got[1].Number != n5 || scanned != n5 {
		t.Fatalf("second read: %v scanned %d; want events %d (orders/2) and %d", got, scanned, n3, n5)
	}
	all := b.store.NewReader(nil)
	got, _, err = all.Read(ctx, 0, n5, 10)
	if err != nil || len(got) != 5 {
		t.Fatalf("read of every stream: %d events, err %v; want 5", len(got), err)
	}
}

// TestReaderBoundsPageBytes: a page whose documents exceed MaxPageBytes
// ends early, and the next page continues where it ended.
func TestReaderBoundsPageBytes(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	const n = 12
	fat := strings.Repeat("x", 1<<20)
	var last int64
	for i := range n {
		res, err := b.appender.Append(ctx, &AppendRequest{Stream: "fat", Events: events(testEvent(fmt.Sprintf("f%d", i), fat))})
		if err != nil {
			t.Fatal(err)
		}
		last = res.Events[0].Number
	}
	if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "thin", Events: events(testEvent("t", "x"))}); err != nil {
		t.Fatal(err)
	}
	ts, err := fossil.ParseTemplates("test", []string{"fat"})
	if err != nil {
		t.Fatal(err)
	}
	r := b.store.NewReader(ts.Match)
	page, scanned, err := r.Read(ctx, 0, last+1, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(page) == 0 || len(page) >= n || scanned != page[len(page)-1].Number {
		t.Fatalf("first page: %d events, scanned %d; want fewer than %d, ending at its last event", len(page), scanned, n)
	}
	got := len(page)
	pages := 1
	for scanned < last+1 {
		prev := page[len(page)-1].Number
		page, scanned, err = r.Read(ctx, scanned, last+1, 100)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 0 && page[0].Number != prev+1 {
			t.Fatalf("page %d starts at %d after %d", pages+1, page[0].Number, prev)
		}
		if len(page) == 0 && scanned < last+1 {
			t.Fatalf("empty page %d scanned only to %d", pages+1, scanned)
		}
		got += len(page)
		pages++
		if len(page) == 0 {
			break
		}
	}
	if got != n || pages < 2 {
		t.Fatalf("%d events in %d pages; want %d in more than one", got, pages, n)
	}
}

// TestReaderPagesWithoutTheCut: once a reader knows how long a stream's
// documents run it reads pages without the byte cut in SQL (see
// Reader.pageRows); documents that then grow past anything read before
// still end the page at the byte bound, with nothing skipped or repeated,
// and put the next pages back on the cut.
func TestReaderPagesWithoutTheCut(t *testing.T) {
	t.Parallel()
	// s reads its one stream through the (stream, number) index; {+all}
	// reads the log by number.
	for _, template := range []string{"s", "{+all}"} {
		t.Run(template, func(t *testing.T) {
			t.Parallel()
			testReaderPagesWithoutTheCut(t, template)
		})
	}
}

func testReaderPagesWithoutTheCut(t *testing.T, template string) {
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	var want []int64
	id := 0
	add := func(stream string, n, size int) {
		t.Helper()
		evs := make([]*fossil.Event, n)
		for i := range evs {
			id++
			evs[i] = testEvent(fmt.Sprintf("e%d", id), strings.Repeat("y", size))
		}
		res, err := b.appender.Append(ctx, &AppendRequest{Stream: stream, Events: evs})
		if err != nil {
			t.Fatal(err)
		}
		if stream == "s" || template == "{+all}" {
			for _, e := range res.Events {
				want = append(want, e.Number)
			}
		}
	}
	add("s", 300, 100)
	add("other", 10, 100)
	add("s", 6, 64<<10) // longer than anything before: one page of them costs more than MaxBytes
	add("s", 200, 100)
	head, err := b.store.Head(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const maxBytes = 16 << 10
	ts, err := fossil.ParseTemplates("test", []string{template})
	if err != nil {
		t.Fatal(err)
	}
	r := b.store.NewReader(ts.Match)
	r.MaxBytes = maxBytes
	var got []int64
	cursor, uncut := int64(0), 0
	for cursor < head {
		if _, cut := r.pageRows(1000); !cut {
			uncut++
		}
		page, scanned, err := r.Read(ctx, cursor, head, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if scanned <= cursor {
			t.Fatalf("no progress after %d", cursor)
		}
		var size int
		for i, e := range page {
			if i > 0 && size >= maxBytes {
				t.Fatalf("page after %d: event %d follows %d bytes of documents, bound %d", cursor, e.Number, size, maxBytes)
			}
			size += len(e.Doc)
			got = append(got, e.Number)
		}
		cursor = scanned
	}
	if !slices.Equal(got, want) {
		t.Fatalf("read %d events, want %d (%v…)", len(got), len(want), got[:min(len(got), 5)])
	}
	if uncut == 0 {
		t.Fatal("every page was cut in SQL; want pages without the cut once the documents' length is known")
	}
	if _, cut := r.pageRows(1000); !cut {
		t.Fatal("after 64 KiB documents with a 16 KiB bound, pages must be cut in SQL again")
	}
}

// TestReadsAreNotCompiled: the page of a template read over a few hundred
// streams is estimated far above jit_above_cost (a LIMIT per stream), and
// PostgreSQL spent 20–70 ms compiling it for a read that takes 1 ms. The
// store's connections, the writer's and the readers', run with JIT off
// unless the URL asks for it.
func TestReadsAreNotCompiled(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := dbtest.NewDB(t)
	s, err := Open(ctx, Config{DatabaseURL: dbURL, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for name, pool := range map[string]*pgxpool.Pool{"reader": s.pool, "writer": s.writePool} {
		var jit string
		if err := pool.QueryRow(ctx, "SHOW jit").Scan(&jit); err != nil {
			t.Fatal(err)
		}
		if jit != "off" {
			t.Errorf("%s pool: jit = %q, want off", name, jit)
		}
	}
	sep := "?"
	if strings.Contains(dbURL, "?") {
		sep = "&"
	}
	on, err := Open(ctx, Config{DatabaseURL: dbURL + sep + "jit=on", MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close()
	var jit string
	if err := on.pool.QueryRow(ctx, "SHOW jit").Scan(&jit); err != nil {
		t.Fatal(err)
	}
	if jit != "on" {
		t.Errorf("with jit=on in the URL: jit = %q, want on", jit)
	}
}
