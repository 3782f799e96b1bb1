package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
)

// TreeState is the log's Merkle tree as committed: Size events are hashed
// (all of them once Size == Head), Edge is the tree's right edge, and the
// replacement chain holds Replacements records ending in Chain.
type TreeState struct {
	Head         int64
	Size         int64
	Edge         *fossil.TreeEdge
	Replacements int64
	Chain        tlog.Hash
}

// Complete reports whether every event is in the tree.
func (t *TreeState) Complete() bool { return t.Size == t.Head }

const treeStateSQL = `SELECT last_number, tree_size, tree_edge, replacements, replacement_chain FROM fossil_head`

// TreeState reads the tree as of the latest commit, in one row.
func (s *Store) TreeState(ctx context.Context) (*TreeState, error) {
	return scanTreeState(s.pool.QueryRow(ctx, treeStateSQL))
}

const treeStateWithStreamSQL = `SELECT last_number, tree_size, tree_edge, replacements, replacement_chain,
  (SELECT stream FROM fossil_events WHERE number = $1) FROM fossil_head`

// TreeStateWithStream is [Store.TreeState] and the stream of event number
// (ok false when there is no such event), in one query: an inclusion
// proof's first read.
func (s *Store) TreeStateWithStream(ctx context.Context, number int64) (ts *TreeState, stream string, ok bool, err error) {
	var st *string
	ts, err = scanTreeState(scanWith(s.pool.QueryRow(ctx, treeStateWithStreamSQL, number), &st))
	if err != nil || st == nil {
		return ts, "", false, err
	}
	return ts, *st, true, nil
}

func scanTreeState(row pgx.Row) (*TreeState, error) {
	var (
		t           TreeState
		edge, chain []byte
	)
	if err := row.Scan(&t.Head, &t.Size, &edge, &t.Replacements, &chain); err != nil {
		return nil, interpretError(fmt.Errorf("read tree state: %w", err))
	}
	e, err := fossil.ParseTreeEdge(t.Size, edge)
	if err != nil {
		return nil, err
	}
	t.Edge = e
	copy(t.Chain[:], chain)
	return &t, nil
}

// readHashesSQL reads each stored hash i, at level l of node k
// (tlog.SplitStoredHashIndex), from the row of the event that added it,
// number (k+1) << l, at offset l * 32 (migration 0007); for the events
// whose row holds none (hashed before that migration, by the tree builder
// or by an import), from the run of fossil_tree_hashes that holds it (the
// run with the greatest first index at or below it). Both are probes of a
// primary key.
const readHashesSQL = `
SELECT k.i, coalesce(
  (SELECT nullif(substring(e.tree_hashes FROM k.level * 32 + 1 FOR 32), '') FROM fossil_events e WHERE e.number = k.number),
  (SELECT substring(h.hashes FROM (k.i - h.first_index)::int * 32 + 1 FOR 32) FROM fossil_tree_hashes h
   WHERE h.first_index <= k.i ORDER BY h.first_index DESC LIMIT 1))
FROM unnest($1::bigint[], $2::bigint[], $3::int[]) AS k(i, number, level)`

// ReadTreeHashes returns the stored hashes at indexes (tlog's
// StoredHashIndex order), in one query. A hash that is not stored is an
// error wrapping [fossil.ErrNotFound].
func (s *Store) ReadTreeHashes(ctx context.Context, indexes []int64) ([]tlog.Hash, error) {
	return readTreeHashes(ctx, s.pool, indexes)
}

func readTreeHashes(ctx context.Context, db DBTX, indexes []int64) ([]tlog.Hash, error) {
	if len(indexes) == 0 {
		return nil, nil
	}
	numbers, levels := make([]int64, len(indexes)), make([]int32, len(indexes))
	for j, i := range indexes {
		l, k := tlog.SplitStoredHashIndex(i)
		numbers[j], levels[j] = (k+1)<<l, int32(l)
	}
	rows, err := db.Query(ctx, readHashesSQL, indexes, numbers, levels)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read tree hashes: %w", err))
	}
	defer rows.Close()
	found := make(map[int64]tlog.Hash, len(indexes))
	for rows.Next() {
		var (
			i int64
			b []byte
		)
		if err := rows.Scan(&i, &b); err != nil {
			return nil, interpretError(fmt.Errorf("read tree hashes: %w", err))
		}
		if len(b) == tlog.HashSize {
			var h tlog.Hash
			copy(h[:], b)
			found[i] = h
		}
	}
	if err := rows.Err(); err != nil {
		return nil, interpretError(fmt.Errorf("read tree hashes: %w", err))
	}
	out := make([]tlog.Hash, len(indexes))
	for k, i := range indexes {
		h, ok := found[i]
		if !ok {
			return nil, fmt.Errorf("%w: stored tree hash %d", fossil.ErrNotFound, i)
		}
		out[k] = h
	}
	return out, nil
}

// HashReader returns a tlog.HashReader over the stored hashes.
func (s *Store) HashReader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		return s.ReadTreeHashes(ctx, indexes)
	})
}

// Leaf is an event as the tree commits to it: the event, its salt (nil for
// an event the tree builder has not reached) and the hash the tree holds
// for it.
type Leaf struct {
	Event *fossil.Event
	Salt  []byte
	Hash  tlog.Hash
}

const leavesSQL = `SELECT ` + eventColumns + `, salt, substring(tree_hashes FROM 1 FOR 32) FROM fossil_events WHERE number > $1 AND number <= $2 ORDER BY number`

// Leaves returns the events numbered after `after`, up to limit of them
// and never beyond the tree's size `size`, with their salts and the leaf
// hashes the tree holds. A number missing from the log is simply absent
// from the result (verifiers notice the hole).
func (s *Store) Leaves(ctx context.Context, after, size int64, limit int) ([]Leaf, error) {
	hi := min(after+int64(limit), size)
	if hi <= after {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, leavesSQL, after, hi)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read leaves: %w", err))
	}
	var (
		out    []Leaf
		legacy []int   // leaves whose hash is in fossil_tree_hashes
		idx    []int64 // their stored hash indexes
	)
	for rows.Next() {
		var salt, leaf []byte
		e, err := scanEvent(scanWith(rows, &salt, &leaf))
		if err != nil {
			rows.Close()
			return nil, interpretError(fmt.Errorf("read leaves: %w", err))
		}
		l := Leaf{Event: e, Salt: salt}
		if len(leaf) == tlog.HashSize {
			copy(l.Hash[:], leaf)
		} else {
			legacy, idx = append(legacy, len(out)), append(idx, tlog.StoredHashIndex(0, e.Number-1))
		}
		out = append(out, l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, interpretError(fmt.Errorf("read leaves: %w", err))
	}
	if len(legacy) > 0 {
		hashes, err := s.ReadTreeHashes(ctx, idx)
		if err != nil {
			return nil, err
		}
		for j, i := range legacy {
			out[i].Hash = hashes[j]
		}
	}
	return out, nil
}

// scanWith scans a row's event columns followed by extra destinations.
type extraScanner struct {
	pgx.Row
	extra []any
}

func scanWith(row pgx.Row, extra ...any) pgx.Row { return extraScanner{row, extra} }

func (r extraScanner) Scan(dest ...any) error { return r.Row.Scan(append(dest, r.extra...)...) }

// Replacement is one record of the replacement chain.
type Replacement struct {
	Index      int64
	Number     int64
	LeafHash   tlog.Hash
	Chain      tlog.Hash
	ReplacedAt time.Time
}

const replacementsSQL = `SELECT index, number, leaf_hash, chain, replaced_at FROM fossil_replacements WHERE index > $1 ORDER BY index LIMIT $2`

// Replacements returns the replacement records after index `after`.
func (s *Store) Replacements(ctx context.Context, after int64, limit int) ([]Replacement, error) {
	rows, err := s.pool.Query(ctx, replacementsSQL, after, limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read replacements: %w", err))
	}
	defer rows.Close()
	var out []Replacement
	for rows.Next() {
		var (
			r           Replacement
			leaf, chain []byte
		)
		if err := rows.Scan(&r.Index, &r.Number, &leaf, &chain, &r.ReplacedAt); err != nil {
			return nil, interpretError(fmt.Errorf("read replacements: %w", err))
		}
		copy(r.LeafHash[:], leaf)
		copy(r.Chain[:], chain)
		r.ReplacedAt = r.ReplacedAt.UTC()
		out = append(out, r)
	}
	return out, interpretError(rows.Err())
}

const (
	signingKeySQL       = `SELECT skey FROM fossil_signing_key`
	insertSigningKeySQL = `INSERT INTO fossil_signing_key (skey) VALUES ($1) ON CONFLICT DO NOTHING`
)

// SigningKey returns the checkpoint signing key kept in the database,
// creating it with generate on first use (when several processes start
// at once, one key wins and all use it). created reports that this call
// stored it.
func (s *Store) SigningKey(ctx context.Context, generate func() (string, error)) (skey string, created bool, err error) {
	err = s.pool.QueryRow(ctx, signingKeySQL).Scan(&skey)
	if err == nil {
		return skey, false, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return "", false, interpretError(fmt.Errorf("read signing key: %w", err))
	}
	fresh, err := generate()
	if err != nil {
		return "", false, err
	}
	tag, err := s.pool.Exec(ctx, insertSigningKeySQL, fresh)
	if err != nil {
		return "", false, interpretError(fmt.Errorf("store signing key: %w", err))
	}
	if err := s.pool.QueryRow(ctx, signingKeySQL).Scan(&skey); err != nil {
		return "", false, interpretError(fmt.Errorf("read signing key: %w", err))
	}
	return skey, tag.RowsAffected() == 1, nil
}

const (
	lockTreeSQL      = `SELECT last_number, tree_size, tree_edge FROM fossil_head FOR UPDATE`
	builderEventsSQL = `SELECT ` + eventColumns + `, salt FROM fossil_events WHERE number > $1 AND number <= $2 ORDER BY number`
	setSaltsSQL      = `UPDATE fossil_events e SET salt = s.salt FROM unnest($1::bigint[], $2::bytea[]) AS s(number, salt) WHERE e.number = s.number`
	advanceTreeSQL   = `
WITH t AS (INSERT INTO fossil_tree_hashes (first_index, hashes) SELECT * FROM unnest($3::bigint[], $4::bytea[]))
UPDATE fossil_head SET tree_size = $1, tree_edge = $2`
)

// BuildTree hashes up to max events that the tree does not hold yet (a
// log written before the tree existed), giving those without one a salt.
// It holds the head lock for the step, so appenders wait for it and then
// continue the tree themselves once it is complete. It returns the tree
// size and the head after the step.
func (s *Store) BuildTree(ctx context.Context, max int) (size, head int64, err error) {
	err = WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var edgeBytes []byte
		if err := tx.QueryRow(ctx, lockTreeSQL).Scan(&head, &size, &edgeBytes); err != nil {
			return fmt.Errorf("lock head: %w", err)
		}
		if size >= head {
			return nil
		}
		edge, err := fossil.ParseTreeEdge(size, edgeBytes)
		if err != nil {
			return err
		}
		hi := min(size+int64(max), head)
		rows, err := tx.Query(ctx, builderEventsSQL, size, hi)
		if err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		var (
			events      []*fossil.Event
			saltNumbers []int64
			newSalts    [][]byte
		)
		for rows.Next() {
			var salt []byte
			e, err := scanEvent(scanWith(rows, &salt))
			if err != nil {
				rows.Close()
				return fmt.Errorf("read events: %w", err)
			}
			if salt == nil {
				salt = fossil.NewSalt()
				saltNumbers, newSalts = append(saltNumbers, e.Number), append(newSalts, salt)
			}
			e.Salt = salt
			events = append(events, e)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("read events: %w", err)
		}
		first := tlog.StoredHashIndex(0, size)
		var run []byte
		for _, e := range events {
			if err := ctx.Err(); err != nil {
				return err
			}
			if e.Number != edge.Size+1 {
				return fmt.Errorf("build tree: event %d is missing from the log", edge.Size+1)
			}
			tail, err := fossil.LeafTail(e.Doc, strings.Join(e.ExpectAck, ","), e.Salt)
			if err != nil {
				return fmt.Errorf("build tree: event %d: %w", e.Number, err)
			}
			hashes, err := edge.Add(fossil.LeafHash(e.Number, e.Stream, e.Sequence, tail))
			if err != nil {
				return err
			}
			for _, h := range hashes {
				run = append(run, h[:]...)
			}
		}
		if edge.Size != hi {
			return fmt.Errorf("build tree: event %d is missing from the log", edge.Size+1)
		}
		if len(saltNumbers) > 0 {
			if _, err := tx.Exec(ctx, setSaltsSQL, saltNumbers, newSalts); err != nil {
				return fmt.Errorf("store salts: %w", err)
			}
		}
		firsts, runs := splitRun(first, run)
		if _, err := tx.Exec(ctx, advanceTreeSQL, hi, edge.Bytes(), firsts, runs); err != nil {
			return fmt.Errorf("store tree hashes: %w", err)
		}
		size = hi
		return nil
	})
	return size, head, interpretError(err)
}

// runHashes is the most hashes one row of fossil_tree_hashes holds: 1,792
// bytes keep the row below PostgreSQL's TOAST threshold (about 2 kB), so
// it is stored inline, and never run through compression, which random
// hashes defeat anyway.
const runHashes = 56

// splitRun cuts a run of stored hashes starting at index first into rows
// of at most runHashes hashes.
func splitRun(first int64, run []byte) (firsts []int64, runs [][]byte) {
	const size = runHashes * tlog.HashSize
	for len(run) > 0 {
		n := min(len(run), size)
		firsts, runs = append(firsts, first), append(runs, run[:n])
		first += int64(n / tlog.HashSize)
		run = run[n:]
	}
	return firsts, runs
}
