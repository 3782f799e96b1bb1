package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/fossil-events/fossil/fossil"
)

// ImportResult says what [Store.Import] restored.
type ImportResult struct {
	Events       int64 `json:"events"`       // events imported; the newest is number Events
	Streams      int64 `json:"streams"`      // distinct streams
	Replacements int64 `json:"replacements"` // replacement records of the tree
}

// ImportItem is one element of an import: an event, with its salt
// (Event.Salt) and the leaf hash the tree held for it when the export
// carried the tree, or a replacement record, which follow every event.
type ImportItem struct {
	Event       *fossil.Event
	Leaf        *tlog.Hash
	Replacement *Replacement
}

// ErrNotEmpty is wrapped by the error of an import into a store that
// already holds events.
var ErrNotEmpty = errors.New("the store is not empty")

const importLockSQL = `SELECT last_number, EXISTS (SELECT 1 FROM fossil_events) OR EXISTS (SELECT 1 FROM fossil_streams) FROM fossil_head FOR UPDATE`

const importStreamsSQL = `
INSERT INTO fossil_streams (name, last_sequence)
SELECT * FROM unnest($1::text[], $2::bigint[])`

const importHeadSQL = `UPDATE fossil_head SET last_number = $1, tree_size = $2, tree_edge = $3, replacements = $4, replacement_chain = $5`

const importTreeSQL = `INSERT INTO fossil_tree_hashes (first_index, hashes) SELECT * FROM unnest($1::bigint[], $2::bytea[])`

const importReplacementsSQL = `
INSERT INTO fossil_replacements (index, number, leaf_hash, chain, replaced_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::timestamptz[])`

// Import restores a log into an empty store in one transaction: next
// yields the events in number order, then the replacement records
// (io.EOF ends them). Each event is stored as given: number, stream,
// sequence, attributes, document and salt. Numbers must run 1, 2, 3… and
// each stream's sequences 1, 2, 3…; (source, id) must be unique.
//
// When the events carry their salt and leaf hash (an export of a log with
// a Merkle tree), Import rebuilds the same tree from those leaves, so the
// restored log has the same checkpoint root: every leaf must match the
// event's content, except for a replaced event, whose content must match
// its newest replacement record, and the records must form their chain.
// Without them, the tree is left for the tree builder, which gives the
// events new salts.
//
// Any failure — a bad event, a broken input, a store that already holds
// events — rolls everything back, so the store is left as it was. The
// head row stays locked for the whole import, so appends wait for it and
// then follow the imported events.
//
// Errors: an [*fossil.InvalidError] for input that breaks these rules,
// [ErrNotEmpty] wrapped in fossil.ErrConflict, fossil.ErrUnavailable when
// the database fails.
func (s *Store) Import(ctx context.Context, next func() (ImportItem, error)) (ImportResult, error) {
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
		src := &importSource{next: next, streams: map[string]int64{}, edge: &fossil.TreeEdge{}, mismatched: map[int64]tlog.Hash{}}
		n, err := tx.CopyFrom(ctx, pgx.Identifier{"fossil_events"},
			[]string{"number", "stream", "sequence", "id", "source", "type", "subject", "time", "expect_ack", "doc", "salt"}, src)
		if src.err != nil {
			return src.err
		}
		if err != nil {
			return importError(err)
		}
		if err := src.readReplacements(); err != nil {
			return err
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
		treeSize, edge, chain := int64(0), []byte{}, tlog.Hash{}
		if src.withTree {
			src.flushRun()
			if _, err := tx.Exec(ctx, importTreeSQL, src.runFirst, src.runs); err != nil {
				return err
			}
			treeSize, edge = src.edge.Size, src.edge.Bytes()
			if k := len(src.reps); k > 0 {
				chain = src.reps[k-1].Chain
				idx, nums, leaves, chains, ats := make([]int64, k), make([]int64, k), make([][]byte, k), make([][]byte, k), make([]time.Time, k)
				for i, r := range src.reps {
					idx[i], nums[i], leaves[i], chains[i], ats[i] = r.Index, r.Number, bytes.Clone(r.LeafHash[:]), bytes.Clone(r.Chain[:]), r.ReplacedAt
				}
				if _, err := tx.Exec(ctx, importReplacementsSQL, idx, nums, leaves, chains, ats); err != nil {
					return err
				}
			}
		}
		if _, err := tx.Exec(ctx, importHeadSQL, n, treeSize, edge, int64(len(src.reps)), chain[:]); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, notifySQL, ChannelEvents, strconv.FormatInt(n, 10)); err != nil {
			return err
		}
		res = ImportResult{Events: n, Streams: int64(len(names)), Replacements: int64(len(src.reps))}
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

// importError explains a COPY or index failure on a unique index.
func importError(err error) error {
	err = interpretError(err)
	if errors.Is(err, fossil.ErrConflict) {
		return fossil.Invalid("body", "two events have the same source and id: %s", err.Error())
	}
	return err
}

// importRun is how many events' stored hashes go in one fossil_tree_hashes row.
const importRun = 1024

// importSource feeds COPY from the caller's events, checking that numbers
// and sequences are dense and rebuilding the tree from their leaves.
type importSource struct {
	next    func() (ImportItem, error)
	streams map[string]int64 // last sequence per stream
	last    int64
	row     []any
	err     error

	withTree   bool // the events carry salts and leaves
	edge       *fossil.TreeEdge
	run        []byte // stored hashes since runStart
	runStart   int64  // tree size when run began
	runFirst   []int64
	runs       [][]byte
	mismatched map[int64]tlog.Hash // replaced events: number → leaf of the current content
	reps       []Replacement
	pending    *Replacement // the first replacement, read by Next
}

func (s *importSource) Next() bool {
	item, err := s.next()
	if err != nil {
		if !errors.Is(err, io.EOF) {
			s.err = err
		}
		return false
	}
	if item.Replacement != nil {
		s.pending = item.Replacement
		return false
	}
	e := item.Event
	loc := "event " + strconv.FormatInt(s.last+1, 10)
	switch {
	case e.Number != s.last+1:
		s.err = fossil.Invalid(loc, "event number %d where %d was expected: numbers must run 1, 2, 3… in order", e.Number, s.last+1)
		return false
	case e.Sequence != s.streams[e.Stream]+1:
		s.err = fossil.Invalid(loc, "stream %q: sequence %d where %d was expected", e.Stream, e.Sequence, s.streams[e.Stream]+1)
		return false
	case e.Number == 1:
		s.withTree = item.Leaf != nil
	case s.withTree != (item.Leaf != nil):
		s.err = fossil.Invalid(loc, "some events carry their salt and leaf hash and others do not")
		return false
	}
	if s.withTree {
		if err := s.addLeaf(e, *item.Leaf); err != nil {
			s.err = err
			return false
		}
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
	s.row = []any{e.Number, e.Stream, e.Sequence, e.ID, e.Source, e.Type, subject, t, acks, e.Doc, e.Salt}
	return true
}

func (s *importSource) Values() ([]any, error) { return s.row, nil }

func (s *importSource) Err() error { return s.err }

// addLeaf checks the event against its leaf and adds the leaf to the tree.
func (s *importSource) addLeaf(e *fossil.Event, leaf tlog.Hash) error {
	loc := "event " + strconv.FormatInt(e.Number, 10)
	if len(e.Salt) != 32 {
		return fossil.Invalid(loc, "fossilsalt must be 32 bytes")
	}
	content, err := e.LeafHash(e.Salt)
	if err != nil {
		return fossil.Invalid(loc, "%s", err.Error())
	}
	if content != leaf {
		s.mismatched[e.Number] = content // must be a replaced event
	}
	hashes, err := s.edge.Add(leaf)
	if err != nil {
		return err
	}
	for _, h := range hashes {
		s.run = append(s.run, h[:]...)
	}
	if s.edge.Size-s.runStart == importRun {
		s.flushRun()
	}
	return nil
}

func (s *importSource) flushRun() {
	if len(s.run) == 0 {
		return
	}
	s.runFirst = append(s.runFirst, tlog.StoredHashIndex(0, s.runStart))
	s.runs = append(s.runs, s.run)
	s.run, s.runStart = nil, s.edge.Size
}

// readReplacements reads the replacement records after the events and
// checks them: dense indexes, the chain, and each replaced event's
// content against its newest record.
func (s *importSource) readReplacements() error {
	r := s.pending
	for r != nil {
		k := int64(len(s.reps)) + 1
		loc := "replacement " + strconv.FormatInt(k, 10)
		if !s.withTree {
			return fossil.Invalid(loc, "replacement records need events with their salts and leaf hashes")
		}
		var prev tlog.Hash
		if k > 1 {
			prev = s.reps[k-2].Chain
		}
		switch {
		case r.Index != k:
			return fossil.Invalid(loc, "index %d where %d was expected", r.Index, k)
		case r.Number < 1 || r.Number > s.last:
			return fossil.Invalid(loc, "event %d is not in the log", r.Number)
		case fossil.NextChain(prev, fossil.ReplacementRecord(r.Index, r.Number, r.LeafHash)) != r.Chain:
			return fossil.Invalid(loc, "the chain does not match the records")
		}
		s.reps = append(s.reps, *r)
		item, err := s.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if item.Replacement == nil {
			return fossil.Invalid(loc, "an event after the replacement records")
		}
		r = item.Replacement
	}
	newest := map[int64]tlog.Hash{}
	for _, r := range s.reps {
		newest[r.Number] = r.LeafHash
	}
	for n, content := range s.mismatched {
		if leaf, ok := newest[n]; !ok || leaf != content {
			return fossil.Invalid("event "+strconv.FormatInt(n, 10), "its content does not match its leaf hash, nor a replacement record")
		}
	}
	return nil
}
