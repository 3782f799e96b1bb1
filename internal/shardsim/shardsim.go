// Package shardsim simulates the write and read paths of docs/SCALING.md:
// a log spread over several PostgreSQL databases standing in for the
// shards of a distributed PostgreSQL (Citus), each stream on one shard by
// the hash of its name, each shard numbering its events densely in commit
// order with Fossil's own discipline (a head row locked from the first
// statement to the commit, numbers assigned under the lock, several
// requests per commit), and readers that follow the whole log with a
// vector cursor: one event number per shard.
//
// It is a model for the tests, not part of the product: nothing outside
// this package imports it, and its tables (sim_*) live in databases of
// their own. What it leaves out is in docs/SCALING.md, "What the
// simulation does not show".
package shardsim

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Schema creates one shard's tables: the head row, the streams and the
// events, as Fossil's fossil_head, fossil_streams and fossil_events
// (reduced to what the simulation checks).
const Schema = `
CREATE TABLE IF NOT EXISTS sim_head (
	id bool PRIMARY KEY DEFAULT true CHECK (id),
	last_number bigint NOT NULL
);
INSERT INTO sim_head (last_number) VALUES (0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS sim_streams (
	name text COLLATE "C" PRIMARY KEY,
	last_sequence bigint NOT NULL
);
CREATE TABLE IF NOT EXISTS sim_events (
	number bigint PRIMARY KEY,
	stream text COLLATE "C" NOT NULL,
	sequence bigint NOT NULL,
	id text COLLATE "C" NOT NULL,
	UNIQUE (stream, sequence),
	UNIQUE (id, stream)
);
`

// Event is one stored event: its shard and number there are its position.
type Event struct {
	Shard    int
	Number   int64
	Stream   string
	Sequence int64
	ID       string
}

// ShardOf returns the shard of a stream: the hash of its name, as a
// distributed table's distribution column decides where a row lives.
func ShardOf(stream string, shards int) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(stream))
	return int(h.Sum32() % uint32(shards))
}

// ErrSequence is the answer to an expected sequence that does not hold.
var ErrSequence = errors.New("expected sequence does not match")

// request is one append: events for one stream, atomically.
type request struct {
	stream   string
	ids      []string
	expected int64 // 0: any
	done     chan result
}

type result struct {
	numbers []int64
	err     error
}

// Appender is one process's writer on one shard: a goroutine that takes
// the queued requests in groups and commits each group in one
// transaction, as Fossil's store.Appender does. Several appenders (one
// per process) may write to the same shard.
type Appender struct {
	pool  *pgxpool.Pool
	queue chan *request
	stop  chan struct{}
	wg    sync.WaitGroup
}

// NewAppender starts an appender on a shard's database.
func NewAppender(pool *pgxpool.Pool) *Appender {
	a := &Appender{pool: pool, queue: make(chan *request, 1024), stop: make(chan struct{})}
	a.wg.Add(1)
	go a.run()
	return a
}

// Close stops the appender after the queued requests.
func (a *Appender) Close() {
	close(a.stop)
	a.wg.Wait()
}

// Append stores ids (a batch) in stream and returns their numbers on the
// shard, once committed.
func (a *Appender) Append(ctx context.Context, stream string, ids []string, expected int64) ([]int64, error) {
	r := &request{stream: stream, ids: ids, expected: expected, done: make(chan result, 1)}
	select {
	case a.queue <- r:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.done:
		return res.numbers, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

const maxGroup = 256

func (a *Appender) run() {
	defer a.wg.Done()
	for {
		var group []*request
		select {
		case r := <-a.queue:
			group = append(group, r)
		case <-a.stop:
			for {
				select {
				case r := <-a.queue:
					a.commit([]*request{r})
				default:
					return
				}
			}
		}
	drain:
		for len(group) < maxGroup {
			select {
			case r := <-a.queue:
				group = append(group, r)
			default:
				break drain
			}
		}
		a.commit(group)
	}
}

// commit writes one group: lock the head, read the streams' heads, decide
// each request in order, insert, move the head, commit. A request that
// fails its check consumes no number and does not fail the others.
func (a *Appender) commit(group []*request) {
	answers := make([]result, len(group))
	err := pgx.BeginFunc(context.Background(), a.pool, func(tx pgx.Tx) error {
		ctx := context.Background()
		var head int64
		if err := tx.QueryRow(ctx, `SELECT last_number FROM sim_head FOR UPDATE`).Scan(&head); err != nil {
			return err
		}
		names := make([]string, 0, len(group))
		for _, r := range group {
			names = append(names, r.stream)
		}
		seqs := map[string]int64{}
		rows, err := tx.Query(ctx, `SELECT name, last_sequence FROM sim_streams WHERE name = ANY($1)`, names)
		if err != nil {
			return err
		}
		for rows.Next() {
			var n string
			var s int64
			if err := rows.Scan(&n, &s); err != nil {
				return err
			}
			seqs[n] = s
		}
		if err := rows.Err(); err != nil {
			return err
		}
		var numbers, sequences []int64
		var streams, ids []string
		for i, r := range group {
			if r.expected > 0 && seqs[r.stream]+1 != r.expected {
				answers[i].err = fmt.Errorf("%w: stream %s holds %d events, expected sequence %d", ErrSequence, r.stream, seqs[r.stream], r.expected)
				continue
			}
			for _, id := range r.ids {
				head++
				seqs[r.stream]++
				answers[i].numbers = append(answers[i].numbers, head)
				numbers, sequences = append(numbers, head), append(sequences, seqs[r.stream])
				streams, ids = append(streams, r.stream), append(ids, id)
			}
		}
		if len(numbers) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sim_events (number, stream, sequence, id)
			SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[])`, numbers, streams, sequences, ids); err != nil {
			return err
		}
		var touched []string
		var lasts []int64
		for n, s := range seqs {
			touched, lasts = append(touched, n), append(lasts, s)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO sim_streams (name, last_sequence)
			SELECT * FROM unnest($1::text[], $2::bigint[])
			ON CONFLICT (name) DO UPDATE SET last_sequence = excluded.last_sequence`, touched, lasts); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `UPDATE sim_head SET last_number = $1`, head)
		return err
	})
	for i, r := range group {
		if err != nil {
			r.done <- result{err: err}
			continue
		}
		r.done <- answers[i]
	}
}

// Cluster is the log over every shard, as one process sees it: an
// appender per shard and a pool per shard for reads.
type Cluster struct {
	Pools     []*pgxpool.Pool
	appenders []*Appender
}

// NewCluster starts one appender per shard.
func NewCluster(pools []*pgxpool.Pool) *Cluster {
	c := &Cluster{Pools: pools}
	for _, p := range pools {
		c.appenders = append(c.appenders, NewAppender(p))
	}
	return c
}

// Close stops the appenders.
func (c *Cluster) Close() {
	for _, a := range c.appenders {
		a.Close()
	}
}

// Append routes a batch to its stream's shard and returns the shard and
// the events' numbers there.
func (c *Cluster) Append(ctx context.Context, stream string, ids []string, expected int64) (int, []int64, error) {
	s := ShardOf(stream, len(c.Pools))
	nums, err := c.appenders[s].Append(ctx, stream, ids, expected)
	return s, nums, err
}

// Vector is a cursor over the whole log: for each shard, the number of
// the last event read there. Every shard holds a dense, commit-ordered
// prefix, so "after Vector" is exact on every shard, whatever order the
// shards were read in.
type Vector []int64

// String encodes the cursor for an SSE id: "v1:" and the numbers joined by
// dots ("v1:12.0.7"). The version names the shard map (how many shards);
// a reader resuming with another map's cursor must be refused.
func (v Vector) String() string {
	parts := make([]string, len(v))
	for i, n := range v {
		parts[i] = strconv.FormatInt(n, 10)
	}
	return "v" + strconv.Itoa(len(v)) + ":" + strings.Join(parts, ".")
}

// ParseVector reads a cursor written by String for a log of shards.
func ParseVector(s string, shards int) (Vector, error) {
	head, body, ok := strings.Cut(s, ":")
	if !ok || head != "v"+strconv.Itoa(shards) {
		return nil, fmt.Errorf("cursor %q is not one of a log of %d shards", s, shards)
	}
	parts := strings.Split(body, ".")
	if len(parts) != shards {
		return nil, fmt.Errorf("cursor %q has %d positions, want %d", s, len(parts), shards)
	}
	v := make(Vector, shards)
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("cursor %q: position %d is not a non-negative integer", s, i)
		}
		v[i] = n
	}
	return v, nil
}

// Read returns up to limit events after v on each shard, merged shard by
// shard in round-robin (there is no global order to follow; each shard's
// and so each stream's order is kept), and the cursor after them.
func (c *Cluster) Read(ctx context.Context, v Vector, limit int) ([]Event, Vector, error) {
	pages := make([][]Event, len(c.Pools))
	errs := make([]error, len(c.Pools))
	var wg sync.WaitGroup
	for s, p := range c.Pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, err := p.Query(ctx, `SELECT number, stream, sequence, id FROM sim_events WHERE number > $1 ORDER BY number LIMIT $2`, v[s], limit)
			if err != nil {
				errs[s] = err
				return
			}
			pages[s], errs[s] = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Event, error) {
				e := Event{Shard: s}
				err := r.Scan(&e.Number, &e.Stream, &e.Sequence, &e.ID)
				return e, err
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, v, err
	}
	next := slices.Clone(v)
	var out []Event
	for i := 0; ; i++ {
		took := false
		for s := range pages {
			if i < len(pages[s]) {
				e := pages[s][i]
				out = append(out, e)
				next[s] = e.Number
				took = true
			}
		}
		if !took {
			return out, next, nil
		}
	}
}

// Heads returns every shard's newest number.
func (c *Cluster) Heads(ctx context.Context) (Vector, error) {
	v := make(Vector, len(c.Pools))
	for s, p := range c.Pools {
		if err := p.QueryRow(ctx, `SELECT last_number FROM sim_head`).Scan(&v[s]); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// ConsumerSchema is the named consumers' offsets on the coordinator: one
// vector per name, moved forward component by component.
const ConsumerSchema = `
CREATE TABLE IF NOT EXISTS sim_consumers (
	name text PRIMARY KEY,
	offsets bigint[] NOT NULL
);
`

// ErrBackwards is the answer to a commit that would move an offset back.
var ErrBackwards = errors.New("offset would move backwards")

// Commit stores a consumer's vector offset on the coordinator. As with
// Fossil's offsets, no component may move backwards (409 there).
func Commit(ctx context.Context, coord *pgxpool.Pool, name string, v Vector) error {
	return pgx.BeginFunc(ctx, coord, func(tx pgx.Tx) error {
		var stored []int64
		err := tx.QueryRow(ctx, `SELECT offsets FROM sim_consumers WHERE name = $1 FOR UPDATE`, name).Scan(&stored)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			_, err = tx.Exec(ctx, `INSERT INTO sim_consumers (name, offsets) VALUES ($1, $2)`, name, []int64(v))
			return err
		case err != nil:
			return err
		}
		for i := range stored {
			if v[i] < stored[i] {
				return fmt.Errorf("%w: shard %d: %d < %d", ErrBackwards, i, v[i], stored[i])
			}
		}
		_, err = tx.Exec(ctx, `UPDATE sim_consumers SET offsets = $2 WHERE name = $1`, name, []int64(v))
		return err
	})
}

// Offset returns a consumer's stored vector (zeros when it has none).
func Offset(ctx context.Context, coord *pgxpool.Pool, name string, shards int) (Vector, error) {
	var stored []int64
	err := coord.QueryRow(ctx, `SELECT offsets FROM sim_consumers WHERE name = $1`, name).Scan(&stored)
	if errors.Is(err, pgx.ErrNoRows) {
		return make(Vector, shards), nil
	}
	if err != nil {
		return nil, err
	}
	if len(stored) != shards {
		return nil, fmt.Errorf("consumer %s has an offset of %d shards, want %d", name, len(stored), shards)
	}
	return Vector(stored), nil
}
