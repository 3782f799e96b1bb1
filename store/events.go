package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/fossil"
)

const eventColumns = `number, stream, sequence, id, source, type, subject, time, expect_ack, doc, committed_at`

func scanEvent(row pgx.Row) (*fossil.Event, error) {
	var (
		e       fossil.Event
		subject *string
		t       *time.Time
		acks    *string
	)
	if err := row.Scan(&e.Number, &e.Stream, &e.Sequence, &e.ID, &e.Source, &e.Type, &subject, &t, &acks, &e.Doc, &e.CommittedAt); err != nil {
		return nil, err
	}
	if subject != nil {
		e.Subject = *subject
	}
	if t != nil {
		e.Time = t.UTC()
	}
	if acks != nil && *acks != "" {
		e.ExpectAck = strings.Split(*acks, ",")
	}
	e.CommittedAt = e.CommittedAt.UTC()
	return &e, nil
}

func collectEvents(rows pgx.Rows, limit int) ([]*fossil.Event, error) {
	defer rows.Close()
	out := make([]*fossil.Event, 0, min(limit, 1024))
	for rows.Next() {
		e, err := scanEvent(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

const headSQL = `SELECT last_number FROM fossil_head`

// Head returns the newest committed event number (0 for an empty log).
// Every event numbered up to it is committed and visible.
func (s *Store) Head(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, headSQL).Scan(&n); err != nil {
		return 0, interpretError(fmt.Errorf("read head: %w", err))
	}
	return n, nil
}

// ReadLogParams selects a page of the global log.
type ReadLogParams struct {
	After   int64 // events with a greater number
	Through int64 // and a number at most this; 0 means no bound
	Limit   int
}

const (
	readLogSQL        = `SELECT ` + eventColumns + ` FROM fossil_events WHERE number > $1 ORDER BY number LIMIT $2`
	readLogThroughSQL = `SELECT ` + eventColumns + ` FROM fossil_events WHERE number > $1 AND number <= $3 ORDER BY number LIMIT $2`
)

// ReadLog returns events of every stream in number order, through the
// primary key. Reads of some streams go through a [Reader].
func (s *Store) ReadLog(ctx context.Context, p ReadLogParams) ([]*fossil.Event, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	var rows pgx.Rows
	var err error
	if p.Through > 0 {
		rows, err = s.pool.Query(ctx, readLogThroughSQL, p.After, p.Limit, p.Through)
	} else {
		rows, err = s.pool.Query(ctx, readLogSQL, p.After, p.Limit)
	}
	if err != nil {
		return nil, interpretError(fmt.Errorf("read log: %w", err))
	}
	events, err := collectEvents(rows, p.Limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read log: %w", err))
	}
	return events, nil
}

const streamEventsSQL = `SELECT ` + eventColumns + ` FROM fossil_events
WHERE stream = $1 AND sequence >= $2 ORDER BY sequence LIMIT $3`

// StreamEvents returns up to limit events of stream with a sequence of at
// least from, in sequence order. An unknown stream has no events.
func (s *Store) StreamEvents(ctx context.Context, stream string, from int64, limit int) ([]*fossil.Event, error) {
	rows, err := s.pool.Query(ctx, streamEventsSQL, stream, from, limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read stream: %w", err))
	}
	events, err := collectEvents(rows, limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read stream: %w", err))
	}
	return events, nil
}

const eventByNumberSQL = `SELECT ` + eventColumns + ` FROM fossil_events WHERE number = $1`

// EventByNumber returns one event. Errors: [fossil.ErrNotFound].
func (s *Store) EventByNumber(ctx context.Context, number int64) (*fossil.Event, error) {
	e, err := scanEvent(s.pool.QueryRow(ctx, eventByNumberSQL, number))
	if err != nil {
		return nil, interpretError(fmt.Errorf("event %d: %w", number, err))
	}
	return e, nil
}

const eventsByNumbersSQL = `SELECT ` + eventColumns + ` FROM fossil_events WHERE number = ANY($1::bigint[]) ORDER BY number`

// EventsByNumbers returns the stored events among numbers, in number order.
func (s *Store) EventsByNumbers(ctx context.Context, numbers []int64) ([]*fossil.Event, error) {
	rows, err := s.pool.Query(ctx, eventsByNumbersSQL, numbers)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read events: %w", err))
	}
	events, err := collectEvents(rows, len(numbers))
	if err != nil {
		return nil, interpretError(fmt.Errorf("read events: %w", err))
	}
	return events, nil
}
