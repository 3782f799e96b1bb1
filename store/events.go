package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

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

// DefaultPageBytes bounds the event documents of one page read from the
// log when the caller gives no bound (see [ReadLogParams.MaxBytes]).
const DefaultPageBytes = 1 << 20

// pageBytesSlack is added, per row, to the byte bound of the SQL cut, which
// counts stored sizes (pg_column_size: compressed, plus a header of at most
// 4 bytes). A row's document is never shorter than its stored size minus
// 4, so when SQL cuts a page, the documents returned add up to at least
// the bound and [PageFull] says more may follow.
const pageBytesSlack = 4

// pageCut wraps a page query (whose select list is eventColumns) so that
// rows stop once the stored sizes of the rows before them, in number
// order, reach the parameter bytesParam. The stored size is read without
// fetching or decompressing TOASTed documents, so a page of large events
// costs the server only the rows it sends. The exact cut, on document
// length, is made by collectEvents.
func pageCut(inner, bytesParam string) string {
	return pageCutOrdered(inner, `number`, bytesParam)
}

// pageCutOrdered is pageCut for an inner query ordered by order, which
// must give the rows in number order.
func pageCutOrdered(inner, order, bytesParam string) string {
	return `SELECT ` + eventColumns + ` FROM (SELECT ` + eventColumns +
		`, sum(pg_column_size(doc)) OVER (ORDER BY ` + order + ` ROWS UNBOUNDED PRECEDING) - pg_column_size(doc) AS before_bytes FROM (` +
		inner + `) page) cut WHERE before_bytes < ` + bytesParam + ` ORDER BY ` + order
}

// pageCutBound is the value of pageCut's parameter for a page of limit
// rows bounded by maxBytes of documents.
func pageCutBound(limit int, maxBytes int64) int64 {
	return maxBytes + pageBytesSlack*int64(limit)
}

// collectEvents reads at most limit events, and stops before an event once
// the documents read so far reach maxBytes (0: no bound; at least one
// event is always read). The rows left are discarded.
//
// Rows of eventColumns in the formats pgx asks for are decoded by
// [rowDecoder], others by scanEvent.
func collectEvents(rows pgx.Rows, limit int, maxBytes int64) ([]*fossil.Event, error) {
	defer rows.Close()
	out := make([]*fossil.Event, 0, min(limit, 1024))
	var size int64
	var dec rowDecoder
	fast := dec.accepts(rows.FieldDescriptions())
	for rows.Next() {
		if len(out) >= limit || (maxBytes > 0 && size >= maxBytes) {
			break
		}
		var e *fossil.Event
		var err error
		if fast {
			e, err = dec.decode(rows.RawValues(), min(limit, 1024)-len(out))
		} else {
			e, err = scanEvent(rows)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, e)
		size += int64(len(e.Doc))
	}
	rows.Close()
	return out, rows.Err()
}

// rowDecoder decodes rows of eventColumns from their wire form, without
// pgx's scan plans: a catch-up reads hundreds of thousands of rows, and
// scanning each into eleven destinations (a plan per column, a string per
// text column, the times converted twice) cost about 1.5 µs of CPU per
// event, more than PostgreSQL's whole work for it (docs/PERFORMANCE.md,
// "At scale"). It accepts only the column types and formats of
// fossil_events as pgx requests them (binary bigint and timestamptz, text
// and json in either format); anything else is left to scanEvent.
//
// Events are allocated in small blocks, documents are copied into shared
// chunks of docChunk bytes (each document's capacity clipped to its
// length, so that appending to one never overwrites the next), and a row
// whose stream is the previous row's shares its name: a page of one
// stream allocates one string for all of its events.
type rowDecoder struct {
	block  []fossil.Event
	docs   []byte
	stream string
}

// docChunk is the size of the blocks documents are copied into; a larger
// document gets its own.
const docChunk = 64 << 10

func (d *rowDecoder) doc(b []byte) []byte {
	if len(b) > docChunk/4 {
		return bytes.Clone(b)
	}
	if cap(d.docs)-len(d.docs) < len(b) {
		d.docs = make([]byte, 0, docChunk)
	}
	n := len(d.docs)
	d.docs = append(d.docs, b...)
	return d.docs[n:len(d.docs):len(d.docs)]
}

// eventColumnTypes are the type OIDs of eventColumns, in order.
var eventColumnTypes = [...]uint32{
	pgtype.Int8OID, pgtype.TextOID, pgtype.Int8OID, pgtype.TextOID, pgtype.TextOID, pgtype.TextOID,
	pgtype.TextOID, pgtype.TimestamptzOID, pgtype.TextOID, pgtype.JSONOID, pgtype.TimestamptzOID,
}

func (d *rowDecoder) accepts(fields []pgconn.FieldDescription) bool {
	if len(fields) != len(eventColumnTypes) {
		return false
	}
	for i, f := range fields {
		if f.DataTypeOID != eventColumnTypes[i] {
			return false
		}
		switch f.DataTypeOID {
		case pgtype.Int8OID, pgtype.TimestamptzOID:
			if f.Format != pgtype.BinaryFormatCode {
				return false
			}
		default: // text and json: the same bytes in both formats
		}
	}
	return true
}

// decode decodes one row; more is about how many rows may follow (the size
// of the next block of events).
func (d *rowDecoder) decode(v [][]byte, more int) (*fossil.Event, error) {
	if len(v) != len(eventColumnTypes) || v[0] == nil || v[1] == nil || v[2] == nil || v[9] == nil || v[10] == nil {
		return nil, errors.New("decode event: unexpected row")
	}
	if len(d.block) == 0 {
		d.block = make([]fossil.Event, max(1, min(more, 32)))
	}
	e := &d.block[0]
	d.block = d.block[1:]
	var err error
	if e.Number, err = int8At(v[0]); err != nil {
		return nil, err
	}
	if string(v[1]) != d.stream { // no allocation for the comparison
		d.stream = string(v[1])
	}
	e.Stream = d.stream
	if e.Sequence, err = int8At(v[2]); err != nil {
		return nil, err
	}
	e.ID, e.Source, e.Type = string(v[3]), string(v[4]), string(v[5])
	if v[6] != nil {
		e.Subject = string(v[6])
	}
	if v[7] != nil {
		if e.Time, err = timestamptzAt(v[7]); err != nil {
			return nil, err
		}
	}
	if len(v[8]) > 0 {
		e.ExpectAck = strings.Split(string(v[8]), ",")
	}
	e.Doc = d.doc(v[9])
	if e.CommittedAt, err = timestamptzAt(v[10]); err != nil {
		return nil, err
	}
	return e, nil
}

func int8At(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("decode event: bigint of %d bytes", len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// postgresEpoch is 2000-01-01 00:00:00 UTC in Unix seconds.
const postgresEpoch = 946684800

// timestamptzAt decodes a binary timestamptz (microseconds since
// 2000-01-01 UTC) as a UTC time; infinities are not events' times.
func timestamptzAt(b []byte) (time.Time, error) {
	us, err := int8At(b)
	if err != nil {
		return time.Time{}, err
	}
	if us == math.MaxInt64 || us == math.MinInt64 {
		return time.Time{}, errors.New("decode event: infinite timestamp")
	}
	return time.Unix(postgresEpoch+us/1_000_000, (us%1_000_000)*1000).UTC(), nil
}

// PageFull reports whether more events may follow a page read with limit
// and maxBytes (0: [DefaultPageBytes]): the page holds limit events, or its
// documents reached the byte bound. A page that is not full holds every
// event that matched up to the end of what was read.
func PageFull(events []*fossil.Event, limit int, maxBytes int64) bool {
	if len(events) >= limit {
		return true
	}
	if maxBytes <= 0 {
		maxBytes = DefaultPageBytes
	}
	var size int64
	for _, e := range events {
		size += int64(len(e.Doc))
	}
	return size >= maxBytes
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
	// Tail marks the hub's tail reader, which every live stream waits
	// for: it does not queue behind catch-up reads.
	Tail bool
	// MaxBytes bounds the page by the length of its documents as well: no
	// event is read once those before it add up to MaxBytes (the first
	// always is). 0 means [DefaultPageBytes]. Use [PageFull] to tell
	// whether more may follow.
	MaxBytes int64
}

// readLogSQL and readLogThroughSQL read a page of the log. The log is
// dense (hard problem 1), so the page after $1 lies within (after,
// after+limit]: saying so bounds what any plan reads by the page, even one
// made with statistics from when the log was small (on a replica whose
// replay paused, a plan that read every event from the cursor to the bound
// and sorted them made a replay quadratic).
var (
	readLogSQL        = pageCut(`SELECT `+eventColumns+` FROM fossil_events WHERE number > $1 AND number <= $1 + $2 ORDER BY number LIMIT $2`, `$3`)
	readLogThroughSQL = pageCut(`SELECT `+eventColumns+` FROM fossil_events WHERE number > $1 AND number <= least($4, $1 + $2) ORDER BY number LIMIT $2`, `$3`)
)

// ReadLog returns events of every stream in number order, through the
// primary key. Reads of some streams go through a [Reader]. Reads other
// than the tail's go to a read replica up to what it holds (replicas.go).
func (s *Store) ReadLog(ctx context.Context, p ReadLogParams) ([]*fossil.Event, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultPageBytes
	}
	if p.Tail {
		return readLog(ctx, pageDB{pool: s.pool}, p.After, p.Through, p.Limit, p.MaxBytes)
	}
	return s.routePage(ctx, p.After, p.Through, p.Limit, p.MaxBytes, readLog)
}

// readLog reads a page of the log in (after, through] (through 0: no
// bound) on db.
func readLog(ctx context.Context, db pageDB, after, through int64, limit int, maxBytes int64) ([]*fossil.Event, error) {
	var rows pgx.Rows
	var err error
	bound := pageCutBound(limit, maxBytes)
	if through > 0 {
		rows, err = db.query(ctx, readLogThroughSQL, after, limit, bound, through)
	} else {
		rows, err = db.query(ctx, readLogSQL, after, limit, bound)
	}
	if err != nil {
		return nil, interpretError(fmt.Errorf("read log: %w", err))
	}
	events, err := collectEvents(rows, limit, maxBytes)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read log: %w", err))
	}
	return events, nil
}

// streamEventsSQL: within a stream, number order is sequence order, so
// pageCut applies; sequences are dense, so the page lies within [from,
// from+limit) (see readLogSQL). streamEventsThroughSQL is its replica form's inner
// statement: the events up to a number.
var (
	streamEventsSQL = pageCut(`SELECT `+eventColumns+` FROM fossil_events
WHERE stream = $1 AND sequence >= $2 AND sequence < $2 + $3 ORDER BY sequence LIMIT $3`, `$4`)
	streamEventsThroughSQL = pageCut(`SELECT `+eventColumns+` FROM fossil_events
WHERE stream = $1 AND sequence >= $2 AND sequence < $2 + $3 AND number <= $5 ORDER BY sequence LIMIT $3`, `$4`)
)

// StreamEvents returns up to limit events of stream with a sequence of at
// least from, in sequence order, and at most [DefaultPageBytes] of
// documents (see [PageFull]). An unknown stream has no events. A read
// replica serves the events it holds, the primary the rest.
func (s *Store) StreamEvents(ctx context.Context, stream string, from int64, limit int) ([]*fossil.Event, error) {
	maxBytes := int64(DefaultPageBytes)
	read := func(ctx context.Context, db pageDB, through int64, from int64, limit int, maxBytes int64) ([]*fossil.Event, error) {
		var rows pgx.Rows
		var err error
		if through > 0 {
			rows, err = db.query(ctx, streamEventsThroughSQL, stream, from, limit, pageCutBound(limit, maxBytes), through)
		} else {
			rows, err = db.query(ctx, streamEventsSQL, stream, from, limit, pageCutBound(limit, maxBytes))
		}
		if err != nil {
			return nil, interpretError(fmt.Errorf("read stream: %w", err))
		}
		events, err := collectEvents(rows, limit, maxBytes)
		if err != nil {
			return nil, interpretError(fmt.Errorf("read stream: %w", err))
		}
		return events, nil
	}
	if r, replayed := s.pick(0); r != nil {
		events, err := s.readReplica(ctx, r, func(ctx context.Context, db pageDB) ([]*fossil.Event, error) {
			return read(ctx, db, replayed, from, limit, maxBytes)
		})
		if err == nil {
			if PageFull(events, limit, maxBytes) {
				return events, nil
			}
			// Every event of the stream up to replayed is in the page;
			// the next sequence is the primary's to serve.
			next := from
			if len(events) > 0 {
				next = events[len(events)-1].Sequence + 1
			}
			rest, err := s.readPrimary(ctx, func(ctx context.Context, db pageDB) ([]*fossil.Event, error) {
				return read(ctx, db, 0, next, limit-len(events), maxBytes-docBytes(events))
			})
			if err != nil {
				return nil, err
			}
			return append(events, rest...), nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
	}
	return s.readPrimary(ctx, func(ctx context.Context, db pageDB) ([]*fossil.Event, error) {
		return read(ctx, db, 0, from, limit, maxBytes)
	})
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
	events, err := collectEvents(rows, len(numbers), 0)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read events: %w", err))
	}
	return events, nil
}
