package store

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
)

// catalogue is the stream catalogue in memory: the name of every stream,
// complete up to a known event number, in the order they were learned.
// Template reads are resolved against it (see [Reader]) instead of against
// the events: a log holds a few names per thousand events.
//
// It is loaded once from fossil_streams, together with the head, in one
// snapshot; afterwards it learns the streams created since from their
// first events (sequence 1), through the partial index
// fossil_events_first_number, so a refresh costs the new streams, not the
// log. Names are only ever appended, so a reader may keep a prefix of the
// slice without holding the lock. The zero value is ready to use.
type catalogue struct {
	mu      sync.Mutex // held across a refresh, so one refresh serves all
	loaded  bool
	through int64 // every stream with an event numbered ≤ through is known
	names   []string
}

const loadCatalogueSQL = `SELECT name FROM fossil_streams`

const newStreamsSQL = `SELECT stream FROM fossil_events
WHERE sequence = 1 AND number > $1 AND number <= $2 ORDER BY number`

// upTo returns the names of every stream with an event numbered at most
// through, which must be committed (at most a head read earlier).
func (c *catalogue) upTo(ctx context.Context, s *Store, through int64) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.loaded {
		if err := c.load(ctx, s); err != nil {
			return nil, err
		}
	}
	if through > c.through {
		rows, err := s.pool.Query(ctx, newStreamsSQL, c.through, through)
		if err != nil {
			return nil, interpretError(fmt.Errorf("read new streams: %w", err))
		}
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, interpretError(fmt.Errorf("read new streams: %w", err))
		}
		c.names = append(c.names, names...)
		c.through = through
	}
	return c.names[:len(c.names):len(c.names)], nil
}

// load reads every stream name and the head they are complete for in one
// snapshot.
func (c *catalogue) load(ctx context.Context, s *Store) error {
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, headSQL).Scan(&c.through); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, loadCatalogueSQL)
		if err != nil {
			return err
		}
		c.names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		c.names = nil
		return interpretError(fmt.Errorf("load the stream catalogue: %w", err))
	}
	c.loaded = true
	return nil
}
