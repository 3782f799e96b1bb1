package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/fossil"
)

// ImportResult says what [Store.Import] restored.
type ImportResult struct {
	Events  int64 `json:"events"`  // events imported; the newest is number Events
	Streams int64 `json:"streams"` // distinct streams
}

// ErrNotEmpty is wrapped by the error of an import into a store that
// already holds events.
var ErrNotEmpty = errors.New("the store is not empty")

const importLockSQL = `SELECT last_number, EXISTS (SELECT 1 FROM fossil_events) OR EXISTS (SELECT 1 FROM fossil_streams) FROM fossil_head FOR UPDATE`

const importStreamsSQL = `
INSERT INTO fossil_streams (name, last_sequence)
SELECT * FROM unnest($1::text[], $2::bigint[])`

const importHeadSQL = `UPDATE fossil_head SET last_number = $1`

// Import restores a log into an empty store in one transaction: next
// yields the events in number order (io.EOF ends them), each with its
// number, stream, sequence, attributes and document, which are stored as
// given. Numbers must run 1, 2, 3… and each stream's sequences 1, 2, 3…;
// (source, id) must be unique. Any failure — a bad event, a broken input,
// a store that already holds events — rolls everything back, so the store
// is left as it was. The head row stays locked for the whole import, so
// appends wait for it and then follow the imported events.
//
// Errors: an [*fossil.InvalidError] for events that break these rules (the
// location names the event), [ErrNotEmpty] wrapped in fossil.ErrConflict,
// fossil.ErrUnavailable when the database fails.
func (s *Store) Import(ctx context.Context, next func() (*fossil.Event, error)) (ImportResult, error) {
	var res ImportResult
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var head int64
		var rows bool
		if err := tx.QueryRow(ctx, importLockSQL).Scan(&head, &rows); err != nil {
			return err
		}
		if head != 0 || rows {
			return fmt.Errorf("%w: %w (its newest event is number %d): import restores into an empty database only", fossil.ErrConflict, ErrNotEmpty, head)
		}
		// An index built once over the whole table is several times
		// cheaper than the same index updated row by row; the table is
		// empty and the transaction holds it, so drop the secondary
		// indexes (whatever migrations defined them) and build them again
		// after the copy. A duplicate (source, id) fails the rebuild.
		indexes, err := dropSecondaryIndexes(ctx, tx)
		if err != nil {
			return err
		}
		src := &importSource{next: next, streams: map[string]int64{}}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"fossil_events"},
			[]string{"number", "stream", "sequence", "id", "source", "type", "subject", "time", "expect_ack", "doc"}, src)
		if src.err != nil {
			return src.err
		}
		if err != nil {
			return importError(err)
		}
		for _, def := range indexes {
			if _, err := tx.Exec(ctx, def); err != nil {
				return importError(err)
			}
		}
		names := make([]string, 0, len(src.streams))
		seqs := make([]int64, 0, len(src.streams))
		for name, seq := range src.streams {
			names, seqs = append(names, name), append(seqs, seq)
		}
		if _, err := tx.Exec(ctx, importStreamsSQL, names, seqs); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, importHeadSQL, n); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, notifySQL, ChannelEvents, strconv.FormatInt(n, 10)); err != nil {
			return err
		}
		res = ImportResult{Events: n, Streams: int64(len(names))}
		return nil
	})
	return res, interpretError(err)
}

const secondaryIndexesSQL = `
SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
FROM pg_index i
WHERE i.indrelid = 'fossil_events'::regclass
  AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
ORDER BY 1`

// dropSecondaryIndexes drops the indexes of fossil_events that no
// constraint owns and returns the statements that create them again.
func dropSecondaryIndexes(ctx context.Context, tx pgx.Tx) ([]string, error) {
	rows, err := tx.Query(ctx, secondaryIndexesSQL)
	if err != nil {
		return nil, err
	}
	var names, defs []string
	for rows.Next() {
		var name, def string
		if err := rows.Scan(&name, &def); err != nil {
			rows.Close()
			return nil, err
		}
		names, defs = append(names, name), append(defs, def)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for _, name := range names {
		if _, err := tx.Exec(ctx, "DROP INDEX "+name); err != nil {
			return nil, err
		}
	}
	return defs, nil
}

// importError explains a COPY failure on a unique index.
func importError(err error) error {
	err = interpretError(err)
	if errors.Is(err, fossil.ErrConflict) {
		return fossil.Invalid("body", "two events have the same source and id: %s", err.Error())
	}
	return err
}

// importSource feeds COPY from the caller's events, checking that numbers
// and sequences are dense.
type importSource struct {
	next    func() (*fossil.Event, error)
	streams map[string]int64 // last sequence per stream
	last    int64
	row     []any
	err     error
}

func (s *importSource) Next() bool {
	e, err := s.next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.err = err
		}
		return false
	}
	loc := "event " + strconv.FormatInt(s.last+1, 10)
	switch {
	case e.Number != s.last+1:
		s.err = fossil.Invalid(loc, "event number %d where %d was expected: numbers must run 1, 2, 3… in order", e.Number, s.last+1)
		return false
	case e.Sequence != s.streams[e.Stream]+1:
		s.err = fossil.Invalid(loc, "stream %q: sequence %d where %d was expected", e.Stream, e.Sequence, s.streams[e.Stream]+1)
		return false
	}
	s.last = e.Number
	s.streams[e.Stream] = e.Sequence
	var subject *string
	if e.Subject != "" {
		subject = &e.Subject
	}
	var t *time.Time
	if !e.Time.IsZero() {
		t = &e.Time
	}
	var acks *string
	if len(e.ExpectAck) > 0 {
		a := strings.Join(e.ExpectAck, ",")
		acks = &a
	}
	s.row = []any{e.Number, e.Stream, e.Sequence, e.ID, e.Source, e.Type, subject, t, acks, e.Doc}
	return true
}

func (s *importSource) Values() ([]any, error) { return s.row, nil }

func (s *importSource) Err() error { return s.err }
