package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
)

// AppendRequest is one /collect request: events for one stream that are
// stored together or not at all.
type AppendRequest struct {
	Stream string
	// Events carry ID, Source, Type, Subject, Time, ExpectAck and Doc; the
	// store assigns Number, Sequence and CommittedAt.
	Events []*fossil.Event
	// ExpectedSequence, when > 0, is the sequence the first new event must
	// get: the stream must hold exactly ExpectedSequence-1 events.
	ExpectedSequence int64
	// Replace overwrites the stored events with the same source and id in
	// place instead of appending.
	Replace bool
}

// Position is where an event landed.
type Position struct {
	ID       string `json:"id"`
	Source   string `json:"source"`
	Number   int64  `json:"fossileventnumber"`
	Sequence int64  `json:"fossilsequenceinstream"`
}

// AppendResult reports the positions of a request's events, in request order.
type AppendResult struct {
	Events []Position
	// Duplicate is true when every event was already stored with identical
	// content, so nothing was written.
	Duplicate bool
}

// appendOutcome is the answer to one request of a group.
type appendOutcome struct {
	res *AppendResult
	err error
}

type eventKey struct{ id, source string }

// known is an event the group has seen: stored before, or added by an
// earlier request of the same group.
type known struct {
	number   int64
	stream   string
	sequence int64
	doc      []byte
	pending  *fossil.Event // non-nil when inserted by this group
}

// groupState is what one group transaction knows while it decides which
// requests succeed. Decisions are made in Go under the head row lock, so a
// request that fails a check never consumes an event number.
type groupState struct {
	// lookedUp is set when the group read which of its events were already
	// stored; otherwise events only knows the group's own, and the unique
	// index catches a stored duplicate (see [Store.appendGroup]).
	lookedUp bool
	// retried is set when the group ran again, reading its stored events,
	// because a first run met a stored duplicate or a failed expected
	// sequence.
	retried bool
	// fromCache is set when the group was planned from a head cache: its
	// write batch then begins the transaction, takes the lock and checks
	// that the head is still loadedHead.
	fromCache bool
	// loadedHead is the head before the group: as read under the lock, or
	// as the cache knows it.
	loadedHead int64
	head       int64
	// unknown, in a group planned from a cache, lists the streams the
	// cache took for new; the write batch reads their heads.
	unknown  *unknownStreams
	streams  map[string]int64 // stream -> last sequence
	events   map[eventKey]*known
	inserts  []*fossil.Event
	replaced map[int64]*fossil.Event // number -> replacement (stored before this group)

	// The log's Merkle tree as the group found it: treeSize events are
	// hashed; when that is all of them (loadedHead), tree is its right
	// edge and the group hashes its own events into it (see
	// [groupState.hashTree]). Otherwise the tree builder is still at work
	// and the group leaves its events to it.
	treeSize int64
	tree     fossil.TreeEdge
	// treeHashes[i] are the stored hashes that inserts[i] adds to the
	// tree (see [groupState.hashTree]); nil when the group is not hashed.
	treeHashes [][]byte
	// The head of the replacement chain (read under the lock; groups with
	// a replacement always take the long way).
	replacements int64
	chain        tlog.Hash
	// hashed is how long hashing the group's events took (0: not hashed).
	hashed time.Duration

	// token is what a group of several events planned from the cache
	// writes into fossil_head.group_token; after, when set, is the token
	// its head check requires: the token of the group sent before it,
	// whose commit was still unknown when this one was planned.
	token int64
	after *int64
	// commitTag is the answer to the COMMIT of a group that took the long
	// way.
	commitTag pgconn.CommandTag
}

// treeComplete reports whether the group hashes its events into the tree.
func (st *groupState) treeComplete() bool { return st.treeSize == st.loadedHead }

const lockHeadSQL = `SELECT last_number, tree_size, tree_edge, replacements, replacement_chain FROM fossil_head FOR UPDATE`

// advanceHeadSQL is the first statement of a group of several events
// planned from the head cache: it takes the head row lock, checks that the
// head is still $2, the tree size $3 and, unless $4 is NULL, the group
// token $4 (the token of the group sent before this one committed, see
// [Appender.launch]), and moves the head to $1 and the token to $5, or
// fails with division_by_zero when any has moved. The check never passes
// on a stale head, but it can fail on a current one: PostgreSQL computes
// the new row from the version of the head row in the statement's
// snapshot before it takes the row lock, so a check that met another
// transaction's uncommitted update fails at once instead of waiting for
// it (had it passed, the UPDATE would wait and compute it again on the
// committed version, EvalPlanQual). A group is therefore sent only after
// the one before it has committed (see [Appender.launch]).
const advanceHeadSQL = `UPDATE fossil_head SET last_number = $1 / (last_number = $2 AND tree_size = $3 AND group_token = coalesce($4, group_token))::int, group_token = $5`

// advanceHeadTreeSQL is advanceHeadSQL for a group that hashed its events
// into the tree: it also moves the tree to the new edge $6. The new stored
// hashes travel in the event rows.
const advanceHeadTreeSQL = `UPDATE fossil_head SET last_number = $1 / (last_number = $2 AND tree_size = $3 AND group_token = coalesce($4, group_token))::int, group_token = $5, tree_size = $1, tree_edge = $6`

// appendOneSQL is a group of one event planned from the head cache, as one
// statement: advanceHeadSQL (with the tree: tree_size $4, and tree_edge
// $5 unless NULL), then, joined to the locked and checked head row so
// that they run only after it, the event row and the notification. One
// statement instead of four is a quarter of the executor start-ups, and
// scalar parameters instead of one-element arrays spare decoding twelve
// arrays (docs/PERFORMANCE.md, "One writer"). The stream's row is not
// touched: its newest sequence is read from its events (streamHeadsSQL).
const appendOneSQL = appendOneHead + appendOneEvent + `
SELECT pg_notify($17, last_number::text) FROM h`

// appendOneNewStreamSQL is appendOneSQL for the first event of a stream
// (sequence 1), which also adds the stream's row.
const appendOneNewStreamSQL = appendOneHead + appendOneEvent + `, s AS (
  INSERT INTO fossil_streams (name) SELECT $6::text FROM h ON CONFLICT (name) DO NOTHING
)
SELECT pg_notify($17, last_number::text) FROM h`

const appendOneHead = `
WITH h AS (
  UPDATE fossil_head SET last_number = $1 / (last_number = $2 AND tree_size = $3)::int,
    tree_size = $4, tree_edge = coalesce($5, tree_edge)
  RETURNING last_number
)`

const appendOneEvent = `, e AS (
  INSERT INTO fossil_events (number, stream, sequence, id, source, type, subject, time, expect_ack, doc, salt, tree_hashes)
  SELECT last_number, $6::text, $7::bigint, $8::text, $9::text, $10::text, $11::text, $12::timestamptz, $13::text, $14::text::json, $15::bytea, $16::bytea FROM h
)`

// The appender's connections keep generic plans and never scan a table
// (see [Open]): its reads are probes by key, phrased so that a probe of
// the unique index is their only plan (the LIMIT keeps the lateral
// subquery from being flattened into a join, which could hash the table).
// A stream's head is the last entry of its events in the (stream,
// sequence) index; a stream without events has none and is not listed.
const streamHeadsSQL = `
SELECT k.name, e.sequence FROM unnest($1::text[]) AS k(name)
CROSS JOIN LATERAL (
  SELECT sequence FROM fossil_events WHERE stream = k.name ORDER BY sequence DESC LIMIT 1
) e`

const existingEventsSQL = `
SELECT e.id, e.source, e.number, e.stream, e.sequence, e.doc
FROM unnest($1::text[], $2::text[]) AS k(id, source)
CROSS JOIN LATERAL (
  SELECT id, source, number, stream, sequence, doc FROM fossil_events
  WHERE id = k.id AND source = k.source LIMIT 1
) e`

// appendGroup runs one group commit: it locks the head row (so processes take
// turns and commit order equals number order), decides every request against
// the current state, writes the accepted events with one statement per
// table, publishes one notification and commits. It returns one outcome per
// request; a non-nil error means the whole transaction failed and nothing
// was written.
//
// With optimistic set (and no replacement in the group), the group does not
// read which of its events are already stored: the unique index on (id,
// source) finds a stored one instead, the INSERT fails and nothing is
// written, and the group runs again reading them (st.retried reports it).
// A failed expected sequence reruns the group the same way, before anything
// is written, since the request may be the retry of a stored one.
// Stored duplicates are rare (client retries), the read is not: for a batch
// of 100 events it is 100 index probes before any decision.
//
// With a cache that can plan the group (see [headCache.plan]), the group is
// decided before anything is sent and commits in one round trip; when that
// fails, nothing was written and the group takes the long way, which
// refreshes the cache. A nil cache always takes the long way.
func (s *Store) appendGroup(ctx context.Context, reqs []*AppendRequest, optimistic bool, cache *headCache) ([]appendOutcome, *groupState, error) {
	conn, err := s.writePool.Acquire(ctx) // the appender's own pool: readers cannot starve it
	if err != nil {
		return nil, nil, interpretError(fmt.Errorf("acquire: %w", err))
	}
	defer conn.Release()
	lookup := !optimistic
	for _, r := range reqs {
		lookup = lookup || r.Replace
	}
	retried := false
	if st := cache.plan(reqs, lookup); st != nil {
		outcomes, err := cachedGroupTx(ctx, conn, reqs, st)
		if errors.Is(err, errStaleCache) && cache.stale(st) {
			// A stream taken for new exists: its head, read in the same
			// round trip, is now cached; plan again.
			if st = cache.plan(reqs, lookup); st != nil {
				outcomes, err = cachedGroupTx(ctx, conn, reqs, st)
			}
		}
		switch {
		case st == nil:
		case err == nil:
			cache.committed(st)
			return outcomes, st, nil
		case errors.Is(err, errNeedLookup):
			lookup, retried = true, true
		case errors.Is(err, errStaleCache):
			cache.stale(st)
		default:
			cache.reset()
			return nil, nil, interpretError(err)
		}
	}
	outcomes, st, err := groupTxOrRollback(ctx, conn, reqs, lookup)
	if !lookup && errors.Is(err, errNeedLookup) {
		outcomes, st, err = groupTxOrRollback(ctx, conn, reqs, true)
		retried = true
	}
	if err != nil {
		cache.reset()
		return nil, nil, interpretError(err)
	}
	st.retried = retried
	cache.refresh(st)
	return outcomes, st, nil
}

// cachedGroupTx runs a group planned from the head cache in one round trip
// and one implicit transaction: the head lock with a check that the head
// is still the one the cache knows (so no other process has written since
// this one's last commit, and the cached stream heads are exact), the
// writes, and the commit at the end of the pipeline. Nothing is sent
// when a decision needs stored events ([errNeedLookup]); a stale cache fails
// the check, or the unique index on (stream, sequence) when a stream the
// cache took for new exists, and the transaction rolls back
// ([errStaleCache]).
func cachedGroupTx(ctx context.Context, conn *pgxpool.Conn, reqs []*AppendRequest, st *groupState) ([]appendOutcome, error) {
	outcomes, err := st.decide(reqs)
	if err != nil {
		return nil, err
	}
	if err := st.write(ctx, conn.Conn()); err != nil {
		if _, ok := errors.AsType[*pgconn.PgError](err); !ok {
			// Not a statement error, which would have ended the implicit
			// transaction: the connection's state is unknown.
			rollback(ctx, conn)
		}
		return nil, err
	}
	return outcomes, nil
}

// groupTxOrRollback runs groupTx and, when it fails, ends the transaction.
func groupTxOrRollback(ctx context.Context, conn *pgxpool.Conn, reqs []*AppendRequest, lookup bool) ([]appendOutcome, *groupState, error) {
	outcomes, st, err := groupTx(ctx, conn.Conn(), reqs, lookup)
	if err != nil {
		rollback(ctx, conn)
	}
	return outcomes, st, err
}

// rollback ends a transaction that may still be open (aborted) on conn; if
// even that fails, the connection is dropped.
func rollback(ctx context.Context, conn *pgxpool.Conn) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := conn.Exec(rctx, "ROLLBACK"); err != nil {
		_ = conn.Conn().Close(rctx)
	}
}

// errNeedLookup fails a group that did not read its stored events when
// they could change its outcome: one of them is stored already, or an
// expected sequence failed, which a retry of a stored request answers with
// its stored positions instead.
var errNeedLookup = errors.New("the group must read its stored events")

// errStaleCache fails a group planned from a head cache that turned out
// stale (see [cachedGroupTx]).
var errStaleCache = errors.New("the head cache is stale")

// groupTx is one group transaction in two round trips: BEGIN travels with
// the reads (head lock, stream heads and, with lookup, the group's events
// already stored) and COMMIT with the writes. Round trips, not statements,
// are what a group waits for.
func groupTx(ctx context.Context, conn *pgx.Conn, reqs []*AppendRequest, lookup bool) ([]appendOutcome, *groupState, error) {
	st, err := loadGroupState(ctx, conn, reqs, lookup)
	if err != nil {
		return nil, nil, err
	}
	outcomes, err := st.decide(reqs)
	if err != nil {
		return nil, nil, err
	}
	if err := st.write(ctx, conn); err != nil {
		return nil, nil, err
	}
	return outcomes, st, nil
}

func loadGroupState(ctx context.Context, conn *pgx.Conn, reqs []*AppendRequest, lookup bool) (*groupState, error) {
	var streams, ids, sources []string
	seen := map[string]bool{}
	for _, r := range reqs {
		if !seen[r.Stream] {
			seen[r.Stream] = true
			streams = append(streams, r.Stream)
		}
		if !lookup {
			continue
		}
		for _, e := range r.Events {
			ids = append(ids, e.ID)
			sources = append(sources, e.Source)
		}
	}
	st := newGroupState(len(streams))
	st.lookedUp = lookup
	batch := &pgx.Batch{}
	batch.Queue("BEGIN")
	var edge, chain []byte
	batch.Queue(lockHeadSQL).QueryRow(func(row pgx.Row) error {
		return row.Scan(&st.head, &st.treeSize, &edge, &st.replacements, &chain)
	})
	batch.Queue(streamHeadsSQL, streams).Query(scanStreamHeads(st.streams))
	if lookup {
		batch.Queue(existingEventsSQL, ids, sources).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var k eventKey
				kn := &known{}
				if err := rows.Scan(&k.id, &k.source, &kn.number, &kn.stream, &kn.sequence, &kn.doc); err != nil {
					return err
				}
				st.events[k] = kn
			}
			return rows.Err()
		})
	}
	if err := conn.SendBatch(ctx, batch).Close(); err != nil {
		return nil, fmt.Errorf("load append state: %w", err)
	}
	st.loadedHead = st.head
	copy(st.chain[:], chain)
	if st.treeComplete() {
		tree, err := fossil.ParseTreeEdge(st.treeSize, edge)
		if err != nil {
			return nil, fmt.Errorf("load append state: %w", err)
		}
		st.tree = *tree
	}
	return st, nil
}

func newGroupState(streams int) *groupState {
	return &groupState{
		streams:  make(map[string]int64, streams),
		events:   make(map[eventKey]*known),
		replaced: map[int64]*fossil.Event{},
	}
}

// decide applies every request of the group in order. A group that did not
// read its stored events stops at a failed expected sequence with
// [errNeedLookup]: the request may be the retry of a stored one.
func (st *groupState) decide(reqs []*AppendRequest) ([]appendOutcome, error) {
	outcomes := make([]appendOutcome, len(reqs))
	for i, req := range reqs {
		res, err := st.apply(req)
		if _, ok := errors.AsType[*fossil.SequenceConflictError](err); ok && !st.lookedUp {
			return nil, errNeedLookup
		}
		outcomes[i] = appendOutcome{res: res, err: err}
	}
	return outcomes, nil
}

// apply decides one request and, when it succeeds, records its effects in
// the group state. A failing request leaves the state untouched.
func (st *groupState) apply(req *AppendRequest) (*AppendResult, error) {
	if req.Replace {
		return st.applyReplace(req)
	}
	res := &AppendResult{Events: make([]Position, len(req.Events))}
	var fresh []int // indexes of events to insert
	local := map[eventKey]int{}
	for i, e := range req.Events {
		k := eventKey{e.ID, e.Source}
		if j, ok := local[k]; ok {
			if !bytes.Equal(req.Events[j].Doc, e.Doc) {
				return nil, fossil.Invalid(fmt.Sprintf("body[%d].id", i), "the batch holds two different events with source %q and id %q", e.Source, e.ID)
			}
			return nil, fossil.Invalid(fmt.Sprintf("body[%d].id", i), "the batch holds the event with source %q and id %q twice", e.Source, e.ID)
		}
		local[k] = i
		if kn, ok := st.events[k]; ok {
			if kn.stream != req.Stream || !bytes.Equal(kn.doc, e.Doc) {
				return nil, &fossil.StoredConflictError{Source: e.Source, ID: e.ID, Number: kn.number, Stream: kn.stream}
			}
			res.Events[i] = Position{ID: e.ID, Source: e.Source, Number: kn.number, Sequence: kn.sequence}
			continue
		}
		fresh = append(fresh, i)
	}
	if len(fresh) == 0 {
		res.Duplicate = true
		return res, nil
	}
	cur := st.streams[req.Stream]
	if req.ExpectedSequence > 0 && req.ExpectedSequence != cur+1 {
		return nil, &fossil.SequenceConflictError{Stream: req.Stream, Expected: req.ExpectedSequence, Current: cur}
	}
	for _, i := range fresh {
		e := req.Events[i]
		st.head++
		cur++
		e.Number, e.Sequence, e.Stream = st.head, cur, req.Stream
		st.inserts = append(st.inserts, e)
		st.events[eventKey{e.ID, e.Source}] = &known{number: e.Number, stream: e.Stream, sequence: e.Sequence, doc: e.Doc, pending: e}
		res.Events[i] = Position{ID: e.ID, Source: e.Source, Number: e.Number, Sequence: e.Sequence}
	}
	st.streams[req.Stream] = cur
	return res, nil
}

func (st *groupState) applyReplace(req *AppendRequest) (*AppendResult, error) {
	res := &AppendResult{Events: make([]Position, len(req.Events))}
	targets := make([]*known, len(req.Events))
	for i, e := range req.Events {
		kn, ok := st.events[eventKey{e.ID, e.Source}]
		if !ok {
			return nil, fmt.Errorf("%w: no stored event has source %q and id %q, so there is nothing to replace", fossil.ErrNotFound, e.Source, e.ID)
		}
		if kn.stream != req.Stream {
			return nil, &fossil.StoredConflictError{Source: e.Source, ID: e.ID, Number: kn.number, Stream: kn.stream, Replace: true, Target: req.Stream}
		}
		targets[i] = kn
	}
	for i, e := range req.Events {
		kn := targets[i]
		e.Number, e.Sequence, e.Stream = kn.number, kn.sequence, kn.stream
		kn.doc = e.Doc
		if kn.pending != nil {
			// Replacing an event inserted earlier in this same group.
			e.CommittedAt = kn.pending.CommittedAt
			*kn.pending = *e
		} else {
			st.replaced[kn.number] = e
		}
		res.Events[i] = Position{ID: e.ID, Source: e.Source, Number: kn.number, Sequence: kn.sequence}
	}
	return res, nil
}

// insertEventsSQL inserts a group's events from one array per column.
// The arrays are unnested in the select list (a ProjectSet, which reads
// them element by element) rather than in FROM: a function in FROM
// materialises its rows in a tuplestore whose memory, blocks of 16 to
// 128 kB per group, glibc returned to the system after every
// statement (brk) and took back on the next with page faults and TLB
// shootdowns, a fifth of the writer backend's CPU in the single-event
// shape (docs/PERFORMANCE.md, "The writer's backend: memory churn"). The
// arrays all have the group's length, so the rows are the same.
const insertEventsSQL = `
INSERT INTO fossil_events (number, stream, sequence, id, source, type, subject, time, expect_ack, doc, salt, tree_hashes)
SELECT unnest($1::bigint[]), unnest($2::text[]), unnest($3::bigint[]), unnest($4::text[]), unnest($5::text[]), unnest($6::text[]),
  unnest($7::text[]), unnest($8::timestamptz[]), unnest($9::text[]), unnest($10::text[])::json, unnest($11::bytea[]), unnest($12::bytea[])`

const replaceEventsSQL = `
UPDATE fossil_events e
SET type = r.type, subject = r.subject, time = r.time, doc = r.doc::json, salt = r.salt
FROM unnest($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], $5::text[], $6::bytea[]) AS r(number, type, subject, time, doc, salt)
WHERE e.number = r.number`

// insertReplacementsSQL records replacements and moves the chain head.
const insertReplacementsSQL = `
WITH r AS (
  INSERT INTO fossil_replacements (index, number, leaf_hash, chain)
  SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[])
)
UPDATE fossil_head SET replacements = $5, replacement_chain = $6`

// insertStreamsSQL adds the rows of the streams a group began (whose
// first event it inserts); the streams' newest sequences are read from
// their events (streamHeadsSQL).
const insertStreamsSQL = `
INSERT INTO fossil_streams (name) SELECT unnest($1::text[])
ON CONFLICT (name) DO NOTHING`

const updateHeadSQL = `UPDATE fossil_head SET last_number = $1`

// updateHeadTreeSQL moves the head together with the tree (whose new
// stored hashes travel in the event rows).
const updateHeadTreeSQL = `UPDATE fossil_head SET last_number = $1, tree_size = $1, tree_edge = $2`

const notifySQL = `SELECT pg_notify($1, $2)`

// write sends every change of the group and the commit in one round trip.
// Statements of a batch run in one pipeline: after an error the server
// skips the rest.
//
// A group that took the long way is in the transaction its reads began:
// the batch ends with COMMIT, and after an error the caller rolls back.
// A group planned from the head cache is sent as one implicit transaction
// instead (everything up to the pipeline's Sync commits or rolls back as
// one, so it needs neither BEGIN nor COMMIT, and an error leaves nothing to
// roll back): advanceHeadSQL (or advanceHeadTreeSQL) first, which takes the
// lock, checks the head and moves it, then the reads of streams the cache
// did not know, then the writes. A group of one event is thus four
// statements in one round trip. A planned group with nothing to write (each
// request failed a check that needs no stored state) sends nothing.
func (st *groupState) write(ctx context.Context, conn *pgx.Conn) error {
	br, err := st.send(ctx, conn)
	if err != nil || br == nil {
		return err
	}
	return st.wait(br)
}

// send hashes the group's events, sends its statements (see
// [groupState.write]) and returns their results without reading them, or
// nil when there is nothing to send.
func (st *groupState) send(ctx context.Context, conn *pgx.Conn) (pgx.BatchResults, error) {
	if st.fromCache && len(st.inserts) == 0 {
		return nil, nil
	}
	// The group's rows are final once its events are hashed into the tree
	// (when the tree holds the whole log; otherwise the tree builder will).
	loadedTree := st.treeSize
	hashed := fossil.TreeWork && len(st.inserts) > 0 && st.treeComplete()
	if hashed {
		start := time.Now()
		err := st.hashTree()
		st.hashed = max(time.Since(start), time.Nanosecond)
		if err != nil {
			return nil, err
		}
	}
	batch := &pgx.Batch{}
	switch {
	case st.fromCache && len(st.inserts) == 1:
		st.unknown.queue(batch)
		e := st.inserts[0]
		var edge, hashes []byte
		if hashed {
			edge, hashes = st.tree.Bytes(), st.treeHashes[0]
		}
		var ack *string
		if len(e.ExpectAck) > 0 {
			s := strings.Join(e.ExpectAck, ",")
			ack = &s
		}
		sql := appendOneSQL
		if e.Sequence == 1 {
			sql = appendOneNewStreamSQL
		}
		batch.Queue(sql, st.head, st.loadedHead, loadedTree, st.treeSize, edge,
			e.Stream, e.Sequence, e.ID, e.Source, e.Type, optString(e.Subject), optTime(e.Time), ack, string(e.Doc), e.Salt, hashes,
			ChannelEvents)
	case st.fromCache:
		if st.token == 0 {
			st.token = newGroupToken()
		}
		if hashed {
			batch.Queue(advanceHeadTreeSQL, st.head, st.loadedHead, loadedTree, st.after, st.token, st.tree.Bytes())
		} else {
			batch.Queue(advanceHeadSQL, st.head, st.loadedHead, loadedTree, st.after, st.token)
		}
		st.unknown.queue(batch)
	}
	if n := len(st.inserts); n > 0 && !(st.fromCache && n == 1) {
		// Values, not pointers, and the documents as they are (pgx sends
		// a []byte as text): no allocation per event.
		var (
			numbers, seqs                = make([]int64, n), make([]int64, n)
			streams, ids, sources, types = make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			subjects, acks               = make([]pgtype.Text, n), make([]pgtype.Text, n)
			times                        = make([]pgtype.Timestamptz, n)
			docs, salts                  = make([][]byte, n), make([][]byte, n)
			hashes                       = st.treeHashes
		)
		for i, e := range st.inserts {
			numbers[i], seqs[i] = e.Number, e.Sequence
			streams[i], ids[i], sources[i], types[i], docs[i] = e.Stream, e.ID, e.Source, e.Type, e.Doc
			subjects[i], times[i] = optText(e.Subject), optTimestamptz(e.Time)
			salts[i] = e.Salt
			if len(e.ExpectAck) > 0 {
				acks[i] = pgtype.Text{String: strings.Join(e.ExpectAck, ","), Valid: true}
			}
		}
		if hashes == nil {
			hashes = make([][]byte, n) // NULLs: the tree builder will hash them
		}
		batch.Queue(insertEventsSQL, numbers, streams, seqs, ids, sources, types, subjects, times, acks, docs, salts, hashes)
		var began []string
		for _, e := range st.inserts {
			if e.Sequence == 1 {
				began = append(began, e.Stream)
			}
		}
		if len(began) > 0 {
			batch.Queue(insertStreamsSQL, began)
		}
		switch {
		case st.fromCache:
		case hashed:
			batch.Queue(updateHeadTreeSQL, st.head, st.tree.Bytes())
		default:
			batch.Queue(updateHeadSQL, st.head)
		}
		batch.Queue(notifySQL, ChannelEvents, strconv.FormatInt(st.head, 10))
	}
	if n := len(st.replaced); n > 0 {
		numbers := make([]int64, 0, n)
		types, docs := make([]string, 0, n), make([]string, 0, n)
		subjects, times := make([]*string, 0, n), make([]*time.Time, 0, n)
		salts := make([][]byte, 0, n)
		list := make([]string, 0, n)
		for num := range st.replaced {
			numbers = append(numbers, num)
		}
		slices.Sort(numbers)
		var indexes []int64
		var leaves, chains [][]byte
		for _, num := range numbers {
			e := st.replaced[num]
			if err := prepareLeaf(e); err != nil {
				return nil, err
			}
			types, docs = append(types, e.Type), append(docs, string(e.Doc))
			subjects, times = append(subjects, optString(e.Subject)), append(times, optTime(e.Time))
			salts = append(salts, e.Salt)
			list = append(list, strconv.FormatInt(num, 10))
			st.replacements++
			leaf := fossil.LeafHash(e.Number, e.Stream, e.Sequence, e.LeafTail)
			st.chain = fossil.NextChain(st.chain, fossil.ReplacementRecord(st.replacements, e.Number, leaf))
			indexes = append(indexes, st.replacements)
			leaves, chains = append(leaves, leaf[:]), append(chains, bytes.Clone(st.chain[:]))
		}
		batch.Queue(replaceEventsSQL, numbers, types, subjects, times, docs, salts)
		batch.Queue(insertReplacementsSQL, indexes, numbers, leaves, chains, st.replacements, st.chain[:])
		batch.Queue(notifySQL, ChannelReplaced, strings.Join(list, ","))
	}
	if !st.fromCache {
		batch.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
			st.commitTag = ct
			return nil
		})
	}
	return conn.SendBatch(ctx, batch), nil
}

// wait reads the results of the statements [groupState.send] sent:
// nil once the group has committed.
func (st *groupState) wait(br pgx.BatchResults) error {
	if err := br.Close(); err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			switch {
			case st.fromCache && pgErr.Code == "22012": // division_by_zero: advanceHeadSQL found the head moved
				return fmt.Errorf("write events: %w: the head moved: %w", errStaleCache, err)
			case st.fromCache && pgErr.Code == "23505" && pgErr.ConstraintName == "fossil_events_stream_sequence_key":
				return fmt.Errorf("write events: %w: %w", errStaleCache, err)
			case !st.lookedUp && pgErr.Code == "23505" && pgErr.ConstraintName == "fossil_events_id_source_key":
				return fmt.Errorf("write events: %w: %w", errNeedLookup, err)
			}
		}
		return fmt.Errorf("write events: %w", err)
	}
	if !st.fromCache && st.commitTag.String() != "COMMIT" {
		// COMMIT of a transaction that failed answers ROLLBACK.
		return fmt.Errorf("write events: transaction rolled back (%s)", st.commitTag.String())
	}
	return nil
}

// newGroupToken returns a random non-zero group token.
func newGroupToken() int64 {
	for {
		if t := rand.Int64(); t != 0 {
			return t
		}
	}
}

// hashTree adds the group's events to the tree and sets treeHashes: for
// each event, the stored hashes it adds (migration 0007), which its
// row carries. It runs inside the group's critical section, so the leaf
// hashes (one SHA-256 of each leaf, independent of each other) of a large
// group are computed on all CPUs (see [leafHashes]); only adding them to
// the tree is sequential.
func (st *groupState) hashTree() error {
	for _, e := range st.inserts {
		if err := prepareLeaf(e); err != nil {
			return err
		}
	}
	leaves := leafHashes(st.inserts)
	st.treeHashes = make([][]byte, len(st.inserts))
	// One allocation for the group's hashes (on average two per event):
	// leaf n adds one hash per trailing zero bit of n, and its own.
	count := 0
	for i := range st.inserts {
		count += 1 + bits.TrailingZeros64(uint64(st.tree.Size+int64(i)+1))
	}
	buf := make([]byte, 0, count*tlog.HashSize)
	for i, leaf := range leaves {
		hashes, err := st.tree.Add(leaf)
		if err != nil {
			return err
		}
		start := len(buf)
		for _, h := range hashes {
			buf = append(buf, h[:]...)
		}
		st.treeHashes[i] = buf[start:len(buf):len(buf)]
	}
	st.treeSize = st.tree.Size
	return nil
}

// parallelLeaves is the group size from which [leafHashes] spreads the
// work over the CPUs: below it, starting goroutines costs more than it
// saves.
const parallelLeaves = 64

// leafHashes returns the leaf hashes of numbered events, computed on up
// to GOMAXPROCS goroutines for a large group.
func leafHashes(events []*fossil.Event) []tlog.Hash {
	leaves := make([]tlog.Hash, len(events))
	hash := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			e := events[i]
			leaves[i] = fossil.LeafHash(e.Number, e.Stream, e.Sequence, e.LeafTail)
		}
	}
	workers := min(runtime.GOMAXPROCS(0), len(events)/parallelLeaves)
	if workers <= 1 {
		hash(0, len(events))
		return leaves
	}
	var wg sync.WaitGroup
	chunk := (len(events) + workers - 1) / workers
	for lo := chunk; lo < len(events); lo += chunk {
		wg.Go(func() { hash(lo, min(lo+chunk, len(events))) })
	}
	hash(0, chunk) // the first chunk in this goroutine
	wg.Wait()
	return leaves
}

// prepareLeaf gives an event its salt and leaf tail, unless it has them.
// [Appender.Append] calls it in the caller's goroutine so that the
// appender only adds the position and hashes.
func prepareLeaf(e *fossil.Event) error {
	if !fossil.TreeWork {
		return nil
	}
	if e.Salt != nil && e.LeafTail != nil {
		return nil
	}
	if e.Salt == nil {
		e.Salt = fossil.NewSalt()
	}
	tail, err := fossil.LeafTail(e.Doc, strings.Join(e.ExpectAck, ","), e.Salt)
	if err != nil {
		return fmt.Errorf("%w: %w", fossil.ErrInvalid, err)
	}
	e.LeafTail = tail
	return nil
}

func optString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// optText is s as a nullable text value: NULL when empty.
func optText(s string) pgtype.Text { return pgtype.Text{String: s, Valid: s != ""} }

// optTimestamptz is t as a nullable timestamptz value: NULL when zero.
func optTimestamptz(t time.Time) pgtype.Timestamptz {
	return pgtype.Timestamptz{Time: t.UTC(), Valid: !t.IsZero()}
}

// isStatementError reports whether err was raised by PostgreSQL for a
// statement (bad data, a constraint), as opposed to a lost connection: only
// then is it worth retrying a group's requests one by one.
func isStatementError(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code[:2] {
	case "08", "53", "57", "40":
		return false
	}
	return true
}
