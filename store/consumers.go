package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/fossil"
)

// Consumer is a named consumer's state.
type Consumer struct {
	Name        string     `json:"name"`
	Offset      int64      `json:"offset"`
	Lag         int64      `json:"lag"`
	Connected   bool       `json:"connected"`
	CommittedAt *time.Time `json:"committed_at"`
}

// consumerSQL lists consumers known by an offset or a live lease.
const consumerSQL = `
SELECT coalesce(c.name, l.name), coalesce(c."offset", 0), c.committed_at,
       coalesce(l.expires_at > now(), false), (SELECT last_number FROM fossil_head)
FROM fossil_consumers c
FULL OUTER JOIN (SELECT * FROM fossil_consumer_leases WHERE expires_at > now()) l ON l.name = c.name`

func scanConsumer(row pgx.Row) (*Consumer, error) {
	var c Consumer
	var head int64
	if err := row.Scan(&c.Name, &c.Offset, &c.CommittedAt, &c.Connected, &head); err != nil {
		return nil, err
	}
	c.Lag = max(head-c.Offset, 0)
	if c.CommittedAt != nil {
		t := c.CommittedAt.UTC()
		c.CommittedAt = &t
	}
	return &c, nil
}

// GetConsumer returns one consumer. Errors: [fossil.ErrNotFound] when the
// name has neither a committed offset nor a connection.
func (s *Store) GetConsumer(ctx context.Context, name string) (*Consumer, error) {
	c, err := scanConsumer(s.pool.QueryRow(ctx, consumerSQL+` WHERE coalesce(c.name, l.name) = $1`, name))
	if err != nil {
		return nil, interpretError(fmt.Errorf("consumer %q: %w", name, err))
	}
	return c, nil
}

// ListConsumers returns every known consumer, by name.
func (s *Store) ListConsumers(ctx context.Context) ([]*Consumer, error) {
	rows, err := s.pool.Query(ctx, consumerSQL+` ORDER BY 1`)
	if err != nil {
		return nil, interpretError(fmt.Errorf("list consumers: %w", err))
	}
	defer rows.Close()
	out := []*Consumer{}
	for rows.Next() {
		c, err := scanConsumer(rows)
		if err != nil {
			return nil, interpretError(fmt.Errorf("list consumers: %w", err))
		}
		out = append(out, c)
	}
	return out, interpretError(rows.Err())
}

// ConsumerOffset returns the committed offset and whether there is one.
func (s *Store) ConsumerOffset(ctx context.Context, name string) (int64, bool, error) {
	var off int64
	err := s.pool.QueryRow(ctx, `SELECT "offset" FROM fossil_consumers WHERE name = $1`, name).Scan(&off)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, interpretError(fmt.Errorf("consumer offset: %w", err))
	}
	return off, true, nil
}

const lockConsumerSQL = `SELECT "offset" FROM fossil_consumers WHERE name = $1 FOR UPDATE`

// upsertOffsetSQL stores the offset unless it would move back without
// $3 (rewind). The condition is checked again here, not only after
// lockConsumerSQL, because two first commits of a name both find no row to
// lock: the second one then waits for the first's insert and must not
// overwrite a higher offset with a lower one.
const upsertOffsetSQL = `
INSERT INTO fossil_consumers (name, "offset", committed_at) VALUES ($1, $2, now())
ON CONFLICT (name) DO UPDATE SET "offset" = excluded."offset", committed_at = excluded.committed_at
WHERE $3::boolean OR fossil_consumers."offset" <= excluded."offset"`

// CommitOffset durably stores a consumer's offset. Errors: an
// [*fossil.InvalidError] when offset is beyond the newest event;
// [fossil.ErrConflict] when it is below the stored offset and rewind is
// false.
func (s *Store) CommitOffset(ctx context.Context, name string, offset int64, rewind bool) error {
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var head int64
		if err := tx.QueryRow(ctx, headSQL).Scan(&head); err != nil {
			return err
		}
		if offset > head {
			return fossil.Invalid("header.Last-Event-Id", "offset %d is beyond the newest event (%d)", offset, head)
		}
		var cur int64
		err := tx.QueryRow(ctx, lockConsumerSQL, name).Scan(&cur)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			// First commit: the insert below may race another first commit;
			// ON CONFLICT keeps it correct.
		case err != nil:
			return err
		case offset < cur && !rewind:
			return fmt.Errorf("%w: offset %d is below the committed offset %d; send Fossil-Rewind: true to move back", fossil.ErrConflict, offset, cur)
		}
		tag, err := tx.Exec(ctx, upsertOffsetSQL, name, offset, rewind)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: offset %d is below the offset committed meanwhile; send Fossil-Rewind: true to move back", fossil.ErrConflict, offset)
		}
		return nil
	})
	return interpretError(err)
}

const acquireLeaseSQL = `
INSERT INTO fossil_consumer_leases (name, holder, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE fossil_consumer_leases.expires_at < now()
RETURNING holder`

// AcquireLease takes the connection lease of consumer name for holder, a
// unique id of one connection. It fails with [fossil.ErrConflict] when
// another live holder has it. Leases expire ttl after the last renewal, so
// a crashed process frees its names within ttl.
func (s *Store) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration) error {
	var got string
	err := s.pool.QueryRow(ctx, acquireLeaseSQL, name, holder, ttl.Seconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%w: consumer %q is already connected; one connection per consumer is allowed", fossil.ErrConflict, name)
	}
	return interpretError(err)
}

const renewLeaseSQL = `
UPDATE fossil_consumer_leases SET expires_at = now() + make_interval(secs => $3)
WHERE name = $1 AND holder = $2`

// RenewLease extends holder's lease. Errors: [fossil.ErrConflict] when the
// lease was lost (it expired and someone else took it).
func (s *Store) RenewLease(ctx context.Context, name, holder string, ttl time.Duration) error {
	tag, err := s.pool.Exec(ctx, renewLeaseSQL, name, holder, ttl.Seconds())
	if err != nil {
		return interpretError(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: the lease of consumer %q was lost", fossil.ErrConflict, name)
	}
	return nil
}

// ReleaseLease frees holder's lease, if it still has it.
func (s *Store) ReleaseLease(ctx context.Context, name, holder string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM fossil_consumer_leases WHERE name = $1 AND holder = $2`, name, holder)
	return interpretError(err)
}

// eventsByIDSQL finds the events an ack may name. The LIMIT only guards
// against an id reused by a great many sources; the caller keeps those its
// grant may read.
const eventsByIDSQL = `SELECT number, stream FROM fossil_events WHERE id = $1 AND ($2::text IS NULL OR source = $2) ORDER BY number LIMIT 1000`

const insertAckSQL = `INSERT INTO fossil_acks (number, consumer) VALUES ($1, $2) ON CONFLICT DO NOTHING`

// Ack records that consumer has processed the event with CloudEvent id
// (and source, when not empty), and notifies waiting writers. Acks are
// idempotent. It returns the event number. Only events whose stream
// canRead accepts are considered (nil: every event), so an event outside
// the caller's read grant is unknown to it. Errors: [fossil.ErrNotFound]
// for an unknown event; [fossil.ErrConflict] when id is used by several
// sources and source is empty.
func (s *Store) Ack(ctx context.Context, id, source, consumer string, canRead func(stream string) bool) (int64, error) {
	var number int64
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var src *string
		if source != "" {
			src = &source
		}
		rows, err := tx.Query(ctx, eventsByIDSQL, id, src)
		if err != nil {
			return err
		}
		type hit struct {
			Number int64
			Stream string
		}
		hits, err := pgx.CollectRows(rows, pgx.RowToStructByPos[hit])
		if err != nil {
			return err
		}
		var numbers []int64
		for _, h := range hits {
			if canRead == nil || canRead(h.Stream) {
				numbers = append(numbers, h.Number)
			}
		}
		switch len(numbers) {
		case 0:
			if source != "" {
				return fmt.Errorf("%w: no event has id %q and source %q", fossil.ErrNotFound, id, source)
			}
			return fmt.Errorf("%w: no event has id %q", fossil.ErrNotFound, id)
		case 1:
		default:
			return fmt.Errorf("%w: several events have id %q; name the source in the body", fossil.ErrConflict, id)
		}
		number = numbers[0]
		if _, err := tx.Exec(ctx, insertAckSQL, number, consumer); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, notifySQL, ChannelAcks, AckPayload(number, consumer))
		return err
	})
	if err != nil {
		return 0, interpretError(err)
	}
	s.committed(ChannelAcks, AckPayload(number, consumer))
	return number, nil
}

// AckPayload is the notification payload of an ack: "<number>:<consumer>".
func AckPayload(number int64, consumer string) string {
	return strconv.FormatInt(number, 10) + ":" + consumer
}

const ackedBySQL = `
SELECT consumer FROM fossil_acks
WHERE number = ANY($1::bigint[]) AND consumer = ANY($2::text[])
GROUP BY consumer HAVING count(*) = $3`

// AckedBy returns which of consumers have acknowledged every one of
// numbers.
func (s *Store) AckedBy(ctx context.Context, numbers []int64, consumers []string) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, ackedBySQL, numbers, consumers, len(numbers))
	if err != nil {
		return nil, interpretError(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, interpretError(err)
	}
	out := make(map[string]bool, len(names))
	for _, n := range names {
		out[n] = true
	}
	return out, nil
}
