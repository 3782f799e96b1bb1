package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/fossil-events/fossil/fossil"
)

// ChannelSubscriptions carries the id of a subscription whose definition,
// state or parked list changed.
var ChannelSubscriptions = channel("fossil_subscriptions")

// ErrLeaseLost is returned by [Store.FlushDispatch] when the caller no
// longer holds the subscription's lease (it expired and another process
// took it, or the subscription was deleted).
var ErrLeaseLost = fmt.Errorf("%w: subscription lease lost", fossil.ErrConflict)

// Subscription is a stored subscription with its delivery status.
type Subscription struct {
	ID         string
	Definition []byte // the validated definition, without id and sinkcredential
	Credential []byte // the sinkcredential object, nil when none
	Position   int64
	Scanned    int64
	State      string // "active" or "disabled"
	Delivered  int64
	LastError  *string
	Generation int64
	Parked     int64 // parked events now
	Head       int64 // the newest event number when read
}

const subscriptionColumns = `s.id, s.definition, s.credential, s.position, s.scanned, s.state, s.delivered, s.lasterror, s.generation,
 (SELECT count(*) FROM fossil_subscription_parked p WHERE p.id = s.id), (SELECT last_number FROM fossil_head)`

func scanSubscription(row pgx.Row) (*Subscription, error) {
	var s Subscription
	if err := row.Scan(&s.ID, &s.Definition, &s.Credential, &s.Position, &s.Scanned, &s.State, &s.Delivered, &s.LastError, &s.Generation, &s.Parked, &s.Head); err != nil {
		return nil, err
	}
	return &s, nil
}

// CreateSubscriptionParams describes a new subscription.
type CreateSubscriptionParams struct {
	ID         string
	Definition []byte
	Credential []byte // nil when none
	// StartAfter, when set, is the position to start after; nil means the
	// newest event.
	StartAfter *int64
	// StartAfterLocation names the field StartAfter came from, for errors.
	StartAfterLocation string
}

const insertSubscriptionSQL = `
INSERT INTO fossil_subscriptions (id, definition, credential, position, scanned)
VALUES ($1, $2, $3, $4, $4)`

// CreateSubscription stores a new subscription positioned after
// StartAfter (or the newest event). Errors: an [*fossil.InvalidError] when
// StartAfter is beyond the newest event; [fossil.ErrConflict] when the id
// exists.
func (s *Store) CreateSubscription(ctx context.Context, p CreateSubscriptionParams) (*Subscription, error) {
	var out *Subscription
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var head int64
		if err := tx.QueryRow(ctx, headSQL).Scan(&head); err != nil {
			return err
		}
		pos := head
		if p.StartAfter != nil {
			if *p.StartAfter > head {
				return fossil.Invalid(p.StartAfterLocation, "startafter %d is beyond the newest event (%d)", *p.StartAfter, head)
			}
			pos = *p.StartAfter
		}
		if _, err := tx.Exec(ctx, insertSubscriptionSQL, p.ID, p.Definition, p.Credential, pos); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, notifySQL, ChannelSubscriptions, p.ID); err != nil {
			return err
		}
		var err error
		out, err = scanSubscription(tx.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM fossil_subscriptions s WHERE s.id = $1`, p.ID))
		return err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("create subscription: %w", err))
	}
	return out, nil
}

// GetSubscription returns one subscription. Errors: [fossil.ErrNotFound].
func (s *Store) GetSubscription(ctx context.Context, id string) (*Subscription, error) {
	sub, err := scanSubscription(s.pool.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM fossil_subscriptions s WHERE s.id = $1`, id))
	if err != nil {
		return nil, interpretError(fmt.Errorf("subscription %q: %w", id, err))
	}
	return sub, nil
}

// ListSubscriptions returns every subscription, by id.
func (s *Store) ListSubscriptions(ctx context.Context) ([]*Subscription, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+subscriptionColumns+` FROM fossil_subscriptions s ORDER BY s.id`)
	if err != nil {
		return nil, interpretError(fmt.Errorf("list subscriptions: %w", err))
	}
	defer rows.Close()
	out := []*Subscription{}
	for rows.Next() {
		sub, err := scanSubscription(rows)
		if err != nil {
			return nil, interpretError(fmt.Errorf("list subscriptions: %w", err))
		}
		out = append(out, sub)
	}
	return out, interpretError(rows.Err())
}

const updateSubscriptionSQL = `
UPDATE fossil_subscriptions
SET definition = $2, credential = CASE WHEN $4 THEN $3 ELSE credential END,
    state = 'active', generation = generation + 1, updated_at = now()
WHERE id = $1`

// UpdateSubscription replaces a subscription's definition, keeping its
// position and pending events, and re-enables it. A nil credential keeps
// the stored one. Errors: [fossil.ErrNotFound].
func (s *Store) UpdateSubscription(ctx context.Context, id string, definition, credential []byte) (*Subscription, error) {
	var out *Subscription
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, updateSubscriptionSQL, id, definition, credential, credential != nil)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("%w: no subscription has id %q", fossil.ErrNotFound, id)
		}
		if _, err := tx.Exec(ctx, notifySQL, ChannelSubscriptions, id); err != nil {
			return err
		}
		out, err = scanSubscription(tx.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM fossil_subscriptions s WHERE s.id = $1`, id))
		return err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("update subscription: %w", err))
	}
	return out, nil
}

// DeleteSubscription deletes a subscription with its lease, pending and
// parked events, and returns it as it was. Errors: [fossil.ErrNotFound].
//
// It locks the lease row before the subscription's, the order in which a
// delivering process's flush takes them (flushSubscriptionSQL): the other
// order deadlocks with a flush in progress, and PostgreSQL then fails one
// of the two.
func (s *Store) DeleteSubscription(ctx context.Context, id string) (*Subscription, error) {
	var out *Subscription
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT 1 FROM fossil_subscription_leases WHERE id = $1 FOR UPDATE`, id); err != nil {
			return err
		}
		var err error
		out, err = scanSubscription(tx.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM fossil_subscriptions s WHERE s.id = $1 FOR UPDATE`, id))
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM fossil_subscriptions WHERE id = $1`, id); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, notifySQL, ChannelSubscriptions, id)
		return err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("delete subscription %q: %w", id, err))
	}
	return out, nil
}

// ParkedEvent is one parked event of a subscription.
type ParkedEvent struct {
	Number    int64     `json:"fossileventnumber"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lasterror"`
	ParkedAt  time.Time `json:"parkedat"`
	Replay    bool      `json:"-"`
}

// ListParked returns a subscription's parked events in number order.
// Errors: [fossil.ErrNotFound] for an unknown subscription.
func (s *Store) ListParked(ctx context.Context, id string) ([]ParkedEvent, error) {
	var out []ParkedEvent
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM fossil_subscriptions WHERE id = $1`, id).Scan(&one); err != nil {
			return err
		}
		var err error
		out, err = parkedRows(ctx, tx, id, false)
		return err
	})
	if err != nil {
		return nil, interpretError(fmt.Errorf("parked events of %q: %w", id, err))
	}
	return out, nil
}

// ReplayingParked returns the parked events a replay asked to deliver
// again, in number order.
func (s *Store) ReplayingParked(ctx context.Context, id string) ([]ParkedEvent, error) {
	out, err := parkedRows(ctx, s.pool, id, true)
	return out, interpretError(err)
}

func parkedRows(ctx context.Context, db DBTX, id string, replayOnly bool) ([]ParkedEvent, error) {
	rows, err := db.Query(ctx, `SELECT number, attempts, lasterror, parkedat, replay FROM fossil_subscription_parked
WHERE id = $1 AND (replay OR NOT $2) ORDER BY number`, id, replayOnly)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := []ParkedEvent{}
	for rows.Next() {
		var p ParkedEvent
		if err := rows.Scan(&p.Number, &p.Attempts, &p.LastError, &p.ParkedAt, &p.Replay); err != nil {
			return nil, err
		}
		p.ParkedAt = p.ParkedAt.UTC()
		out = append(out, p)
	}
	return out, rows.Err()
}

// ReplayParked marks every parked event of a subscription for delivery
// again. Errors: [fossil.ErrNotFound] for an unknown subscription.
func (s *Store) ReplayParked(ctx context.Context, id string) error {
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var one int
		if err := tx.QueryRow(ctx, `SELECT 1 FROM fossil_subscriptions WHERE id = $1`, id).Scan(&one); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE fossil_subscription_parked SET replay = true WHERE id = $1`, id); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, notifySQL, ChannelSubscriptions, id)
		return err
	})
	return interpretError(err)
}

// DeleteParked drops one parked event. Errors: [fossil.ErrNotFound] for an
// unknown subscription or an event that is not parked.
func (s *Store) DeleteParked(ctx context.Context, id string, number int64) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM fossil_subscription_parked WHERE id = $1 AND number = $2`, id, number)
	if err != nil {
		return interpretError(err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%w: event %d is not parked in subscription %q", fossil.ErrNotFound, number, id)
	}
	return nil
}

const acquireSubscriptionLeaseSQL = `
INSERT INTO fossil_subscription_leases (id, holder, expires_at)
SELECT $1, $2, now() + make_interval(secs => $3) WHERE EXISTS (SELECT 1 FROM fossil_subscriptions WHERE id = $1)
ON CONFLICT (id) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at
WHERE fossil_subscription_leases.expires_at < now() OR fossil_subscription_leases.holder = excluded.holder
RETURNING holder`

// AcquireSubscriptionLease takes the delivery lease of subscription id for
// holder, or renews it when holder has it. It reports false when another
// live holder has it or the subscription does not exist.
func (s *Store) AcquireSubscriptionLease(ctx context.Context, id, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := s.pool.QueryRow(ctx, acquireSubscriptionLeaseSQL, id, holder, ttl.Seconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, interpretError(fmt.Errorf("acquire subscription lease: %w", err))
	}
	return true, nil
}

// SubscriptionLeaseHolder returns the live holder of subscription id's
// delivery lease, or "" when nobody holds it.
func (s *Store) SubscriptionLeaseHolder(ctx context.Context, id string) (string, error) {
	var holder string
	err := s.pool.QueryRow(ctx, `SELECT holder FROM fossil_subscription_leases WHERE id = $1 AND expires_at > now()`, id).Scan(&holder)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", interpretError(fmt.Errorf("subscription lease holder: %w", err))
	}
	return holder, nil
}

// ReleaseSubscriptionLease frees holder's lease of id, if it still has it.
func (s *Store) ReleaseSubscriptionLease(ctx context.Context, id, holder string) error {
	_, err := s.pool.Exec(ctx, `DELETE FROM fossil_subscription_leases WHERE id = $1 AND holder = $2`, id, holder)
	return interpretError(err)
}

// PendingEvent is a matching event above the position that is not done.
type PendingEvent struct {
	Number    int64
	Stream    string
	Attempts  int
	NextTry   time.Time // zero: at once
	LastError string
}

// DispatchState is what a dispatcher resumes from.
type DispatchState struct {
	Subscription *Subscription
	Pending      []PendingEvent // in number order
}

// LoadDispatch reads a subscription and its pending events for the holder
// of its lease. Errors: [ErrLeaseLost] when holder does not hold it.
func (s *Store) LoadDispatch(ctx context.Context, id, holder string) (*DispatchState, error) {
	var st DispatchState
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		sub, err := scanSubscription(tx.QueryRow(ctx, `SELECT `+subscriptionColumns+` FROM fossil_subscriptions s
WHERE s.id = $1 AND EXISTS (SELECT 1 FROM fossil_subscription_leases l WHERE l.id = s.id AND l.holder = $2 AND l.expires_at > now())`, id, holder))
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		st.Subscription = sub
		rows, err := tx.Query(ctx, `SELECT number, stream, attempts, next_try, coalesce(lasterror, '') FROM fossil_subscription_pending WHERE id = $1 ORDER BY number`, id)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var p PendingEvent
			var next *time.Time
			if err := rows.Scan(&p.Number, &p.Stream, &p.Attempts, &next, &p.LastError); err != nil {
				return err
			}
			if next != nil {
				p.NextTry = next.UTC()
			}
			st.Pending = append(st.Pending, p)
		}
		return rows.Err()
	})
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return nil, err
		}
		return nil, interpretError(fmt.Errorf("load subscription %q: %w", id, err))
	}
	return &st, nil
}

// FlushParams is one durable step of a dispatcher.
type FlushParams struct {
	ID       string
	Holder   string
	LeaseTTL time.Duration
	Position int64
	Scanned  int64
	// Delivered is added to the delivered count.
	Delivered int64
	// LastError, when not nil, replaces the last error.
	LastError *string
	// Upsert writes pending rows (new events, new attempts); Delete removes
	// pending rows of events that are done.
	Upsert []PendingEvent
	Delete []int64
	// Park adds (or updates) parked rows; Unpark deletes parked rows of
	// replayed events that were delivered.
	Park   []ParkedEvent
	Unpark []int64
	// Disable sets the state to disabled (a 410).
	Disable bool
}

const flushSubscriptionSQL = `
WITH lease AS (
  UPDATE fossil_subscription_leases SET expires_at = now() + make_interval(secs => $3)
  WHERE id = $1 AND holder = $2 AND expires_at > now()
  RETURNING id)
UPDATE fossil_subscriptions s
SET position = greatest(s.position, $4), scanned = greatest(s.scanned, $5), delivered = s.delivered + $6,
    lasterror = CASE WHEN $7::boolean THEN $8 ELSE s.lasterror END,
    state = CASE WHEN $9::boolean THEN 'disabled' ELSE s.state END
FROM lease WHERE s.id = lease.id
RETURNING s.generation`

// FlushDispatch applies p in one transaction, renews the lease, and returns
// the subscription's current generation (a change means its definition was
// replaced). Errors: [ErrLeaseLost] when holder no longer holds the lease;
// nothing is written then.
func (s *Store) FlushDispatch(ctx context.Context, p FlushParams) (int64, error) {
	var gen int64
	err := WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var lastErr *string
		if p.LastError != nil {
			lastErr = p.LastError
		}
		err := tx.QueryRow(ctx, flushSubscriptionSQL, p.ID, p.Holder, p.LeaseTTL.Seconds(), p.Position, p.Scanned,
			p.Delivered, p.LastError != nil, lastErr, p.Disable).Scan(&gen)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrLeaseLost
		}
		if err != nil {
			return err
		}
		batch := &pgx.Batch{}
		if len(p.Delete) > 0 {
			batch.Queue(`DELETE FROM fossil_subscription_pending WHERE id = $1 AND number = ANY($2::bigint[])`, p.ID, p.Delete)
		}
		if len(p.Upsert) > 0 {
			n := len(p.Upsert)
			numbers, streams, attempts := make([]int64, n), make([]string, n), make([]int32, n)
			nexts, errs := make([]*time.Time, n), make([]*string, n)
			for i, u := range p.Upsert {
				numbers[i], streams[i], attempts[i] = u.Number, u.Stream, int32(u.Attempts)
				if !u.NextTry.IsZero() {
					t := u.NextTry
					nexts[i] = &t
				}
				if u.LastError != "" {
					e := u.LastError
					errs[i] = &e
				}
			}
			batch.Queue(`INSERT INTO fossil_subscription_pending (id, number, stream, attempts, next_try, lasterror)
SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::int[], $5::timestamptz[], $6::text[])
ON CONFLICT (id, number) DO UPDATE SET attempts = excluded.attempts, next_try = excluded.next_try, lasterror = excluded.lasterror`,
				p.ID, numbers, streams, attempts, nexts, errs)
		}
		for _, pk := range p.Park {
			batch.Queue(`INSERT INTO fossil_subscription_parked (id, number, attempts, lasterror, parkedat, replay)
VALUES ($1, $2, $3, $4, $5, false)
ON CONFLICT (id, number) DO UPDATE SET attempts = excluded.attempts, lasterror = excluded.lasterror, parkedat = excluded.parkedat, replay = false`,
				p.ID, pk.Number, pk.Attempts, pk.LastError, pk.ParkedAt)
		}
		if len(p.Unpark) > 0 {
			batch.Queue(`DELETE FROM fossil_subscription_parked WHERE id = $1 AND number = ANY($2::bigint[])`, p.ID, p.Unpark)
		}
		if batch.Len() == 0 {
			return nil
		}
		return tx.SendBatch(ctx, batch).Close()
	})
	if err != nil {
		if errors.Is(err, ErrLeaseLost) {
			return 0, err
		}
		return 0, interpretError(fmt.Errorf("flush subscription %q: %w", p.ID, err))
	}
	return gen, nil
}
