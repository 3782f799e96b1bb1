package store

import (
	"reflect"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestRowDecoderAsScan: every page read decodes rows of fossil_events
// from their wire form (rowDecoder); what it decodes must be what pgx's
// scan makes of the same rows, for every optional column present or
// absent, times before and after 2000, and names that repeat or not.
func TestRowDecoderAsScan(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s, err := Open(ctx, Config{DatabaseURL: dbtest.NewDB(t), MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.pool.Exec(ctx, `INSERT INTO fossil_events (number, stream, sequence, id, source, type, subject, time, expect_ack, doc, committed_at) VALUES
		(1, 'orders/1', 1, 'a', '/s', 't', NULL, NULL, NULL, '{"id":"a"}', '2026-12-03 14:00:00.123456+00'),
		(2, 'orders/1', 2, 'b', '/s', 't', 'sub', '1999-12-31 23:59:59.999999+00', 'billing,audit', '{"id":"b"}', '2026-12-03 14:00:01+00'),
		(3, 'ørders/ü', 1, 'c', 'urn:x', 't.u', '', '1969-07-20 20:17:40.5+00', '', '{}', '2026-12-03 14:00:02.000001+00'),
		(4, 'orders/1', 3, 'd', '/s', 't', NULL, '2000-01-01 00:00:00+00', 'one', '{"data":"é\u2028"}', '2000-01-01 00:00:00.000001+00'),
		(5, 'x', 1, 'e', '/s', 't', 's', '2262-04-11 23:47:16.854775+00', NULL, '{"a": [1, 2]}', now())`); err != nil {
		t.Fatal(err)
	}
	const q = `SELECT ` + eventColumns + ` FROM fossil_events ORDER BY number`
	rows, err := s.pool.Query(ctx, q)
	if err != nil {
		t.Fatal(err)
	}
	var dec rowDecoder
	if !dec.accepts(rows.FieldDescriptions()) {
		rows.Close()
		t.Fatalf("the decoder does not accept the columns of a page: %+v", rows.FieldDescriptions())
	}
	rows.Close()
	fast, err := collectEvents(mustQuery(t, s, q), 100, 0)
	if err != nil {
		t.Fatal(err)
	}
	rows = mustQuery(t, s, q)
	defer rows.Close()
	i := 0
	for rows.Next() {
		want, err := scanEvent(rows)
		if err != nil {
			t.Fatal(err)
		}
		if i >= len(fast) {
			t.Fatalf("decoded %d events, scanned more", len(fast))
		}
		if !reflect.DeepEqual(fast[i], want) {
			t.Errorf("event %d decoded as\n%+v\nscanned as\n%+v", want.Number, *fast[i], *want)
		}
		i++
	}
	if i != len(fast) || i != 5 {
		t.Fatalf("decoded %d events, scanned %d, want 5", len(fast), i)
	}
	if fast[0].Stream != "orders/1" || fast[1].Stream != "orders/1" {
		t.Fatalf("streams %q %q", fast[0].Stream, fast[1].Stream)
	}
}

func mustQuery(t *testing.T, s *Store, q string) pgx.Rows {
	t.Helper()
	rows, err := s.pool.Query(t.Context(), q)
	if err != nil {
		t.Fatal(err)
	}
	return rows
}
