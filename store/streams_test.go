package store

import (
	"context"
	"strings"
	"testing"
)

// TestListStreamsPlan: a prefix listing walks the primary key over the
// prefix's range (LIKE on a byte-ordered column with the pattern bound as
// a constant), not the whole stream table, and the last write costs one
// index probe per stream listed.
func TestListStreamsPlan(t *testing.T) {
	t.Parallel()
	b := setupAppend(t, AppenderConfig{})
	ctx := context.Background()
	// 20,000 streams of one event each, written behind the appender's back
	// (the plan is the point, not the append path).
	_, err := b.check.Exec(ctx, `
INSERT INTO fossil_events (number, stream, sequence, id, source, type, doc)
SELECT g, 'p' || (g % 100) || '/' || g, 1, 'id' || g, '/s', 't', '{}' FROM generate_series(1, 20000) g;
INSERT INTO fossil_streams (name) SELECT stream FROM fossil_events;
UPDATE fossil_head SET last_number = 20000;
ANALYZE fossil_streams; ANALYZE fossil_events;`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.store.ListStreams(ctx, ListStreamsParams{Prefix: "p7/", Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 200 || !strings.HasPrefix(got[0].Name, "p7/") || got[0].Events != 1 || got[0].LastNumber == 0 {
		t.Fatalf("prefix p7/: %d streams, first %+v", len(got), got[0])
	}
	conn, err := b.store.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	rows, err := conn.Query(ctx, "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) "+listStreamsSQL, "", likePrefix("p7/"), 1000)
	if err != nil {
		t.Fatal(err)
	}
	var plan []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, line)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	text := strings.Join(plan, "\n")
	if strings.Contains(text, "Seq Scan") || strings.Contains(text, "Hash") || !strings.Contains(text, "fossil_streams_pkey") ||
		!strings.Contains(text, "(name >= 'p7/'::text) AND (name < 'p70'::text)") ||
		!strings.Contains(text, "Index Scan Backward using fossil_events_stream_number on fossil_events (actual rows=1 loops=200)") {
		t.Errorf("the prefix listing does not walk the prefix's range of the primary key:\n%s", text)
	}
}
