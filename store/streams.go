package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// StreamInfo describes one stream: how many events it holds and when it
// was last written.
type StreamInfo struct {
	Name string `json:"name"`
	// Events is the sequence of its newest event: streams are dense, so
	// this is also how many events it holds.
	Events int64 `json:"events"`
	// LastNumber is the event number of its newest event.
	LastNumber int64 `json:"last_number"`
	// CreatedAt is when its first event was committed.
	CreatedAt time.Time `json:"created_at"`
	// LastWrite is when its newest event was committed.
	LastWrite time.Time `json:"last_write"`
}

// streamInfoSelect joins each stream row to its newest event: the last
// entry at or before (name, +inf) of the (stream, number) index, one probe
// per stream listed. As in the selective readers (reader.go), the bound is
// a row comparison and the order the index's, so no other index or join
// can serve the subquery and its plan cannot flip to a read of the log
// (TestListStreamsPlan). Every stream row has events, so the entry found is
// the stream's own, and its sequence is the stream's newest (sequences
// are assigned in number order).
const streamInfoSelect = `SELECT s.name, e.sequence, e.number, s.created_at, e.committed_at
FROM fossil_streams s
CROSS JOIN LATERAL (SELECT number, sequence, committed_at FROM fossil_events
    WHERE (stream COLLATE "C", number) <= (s.name, 9223372036854775807)
    ORDER BY stream COLLATE "C" DESC, number DESC LIMIT 1) e`

func scanStreamInfo(row pgx.Row) (*StreamInfo, error) {
	var si StreamInfo
	if err := row.Scan(&si.Name, &si.Events, &si.LastNumber, &si.CreatedAt, &si.LastWrite); err != nil {
		return nil, err
	}
	si.CreatedAt = si.CreatedAt.UTC()
	si.LastWrite = si.LastWrite.UTC()
	return &si, nil
}

// ListStreamsParams selects a page of the stream list.
type ListStreamsParams struct {
	Prefix string // names starting with it; "" means every stream
	After  string // names after it, in byte order
	Limit  int
}

// listStreamsSQL walks the primary key (COLLATE "C", byte order) from the
// cursor; the LIKE on a byte-ordered column with a constant pattern (plans
// are custom, see Open) becomes a range on that index, so a prefix costs
// the streams it matches.
const listStreamsSQL = streamInfoSelect + `
WHERE s.name > $1 AND s.name LIKE $2 ORDER BY s.name LIMIT $3`

// ListStreams returns up to p.Limit streams whose names start with
// p.Prefix and sort after p.After, in byte order.
func (s *Store) ListStreams(ctx context.Context, p ListStreamsParams) ([]*StreamInfo, error) {
	if p.Limit <= 0 {
		p.Limit = 100
	}
	rows, err := s.pool.Query(ctx, listStreamsSQL, p.After, likePrefix(p.Prefix), p.Limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("list streams: %w", err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*StreamInfo, error) { return scanStreamInfo(row) })
	if err != nil {
		return nil, interpretError(fmt.Errorf("list streams: %w", err))
	}
	return out, nil
}

// likePrefix is the LIKE pattern matching the names that start with prefix.
func likePrefix(prefix string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
	return r.Replace(prefix) + "%"
}

// Stream returns one stream. Errors: [fossil.ErrNotFound] when it holds no
// event.
func (s *Store) Stream(ctx context.Context, name string) (*StreamInfo, error) {
	si, err := scanStreamInfo(s.pool.QueryRow(ctx, streamInfoSelect+` WHERE s.name = $1`, name))
	if err != nil {
		return nil, interpretError(fmt.Errorf("stream %q: %w", name, err))
	}
	return si, nil
}

const countStreamsSQL = `SELECT count(*) FROM fossil_streams`

// CountStreams returns how many streams hold events. It reads the whole
// stream table (an index-only scan when it is vacuumed), so callers cache
// it.
func (s *Store) CountStreams(ctx context.Context) (int64, error) {
	var n int64
	if err := s.pool.QueryRow(ctx, countStreamsSQL).Scan(&n); err != nil {
		return 0, interpretError(fmt.Errorf("count streams: %w", err))
	}
	return n, nil
}
