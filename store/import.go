package store

import (
	"bytes"
	"context"
	"encoding/binary"
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
	Event *fossil.Event
	Leaf  *tlog.Hash
	// Content is optional: the leaf hash of the event's content and salt
	// (Event.LeafHash), when the caller computed it already, in parallel;
	// Import computes it otherwise. It differs from Leaf only for an event
	// replaced after it was appended.
	Content     *tlog.Hash
	Replacement *Replacement
}

// ErrNotEmpty is wrapped by the error of an import into a store whose
// newest event is not the one just before the first imported event.
var ErrNotEmpty = errors.New("the store is not empty")

const importLockSQL = `
SELECT last_number, tree_size, tree_edge, replacements, replacement_chain,
       EXISTS (SELECT 1 FROM fossil_events) OR EXISTS (SELECT 1 FROM fossil_streams)
FROM fossil_head FOR UPDATE`

// importStreamsSQL adds the rows of the streams the import began (their
// newest sequences are read from their events, see streamHeadsSQL).
const importStreamsSQL = `
INSERT INTO fossil_streams (name) SELECT unnest($1::text[])
ON CONFLICT (name) DO NOTHING`

const importHeadSQL = `UPDATE fossil_head SET last_number = $1, tree_size = $2, tree_edge = $3, replacements = $4, replacement_chain = $5`

const importTreeSQL = `INSERT INTO fossil_tree_hashes (first_index, hashes) SELECT * FROM unnest($1::bigint[], $2::bytea[])`

const importReplacementsSQL = `
INSERT INTO fossil_replacements (index, number, leaf_hash, chain, replaced_at)
SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bytea[], $5::timestamptz[])`

const importCopySQL = `COPY fossil_events (number, stream, sequence, id, source, type, subject, time, expect_ack, doc, salt) FROM STDIN (FORMAT binary)`

// Import restores a log in one transaction: next yields the events in
// number order, then the replacement records (io.EOF ends them). Each
// event is stored as given: number, stream, sequence, attributes,
// document and salt. Numbers must run on from the store's newest event
// (1, 2, 3… into an empty store) and each stream's sequences from its
// newest; (source, id) must be unique.
//
// Into an empty store this is a restore of a whole export. Into a store
// whose newest event is number H, the first event must be H+1: the store
// is continued by an incremental export (`fossil export --after H` of the
// same log), so a copy can be kept up to date.
//
// When the events carry their salt and leaf hash (an export of a log with
// a Merkle tree), Import extends the tree with those leaves, so the
// restored log has the same checkpoint root as the exported one: every
// leaf must match the event's content, except for a replaced event, whose
// content must match its newest replacement record, and the records must
// form their chain (records the store holds already must be the same;
// a new record may not name an event that was imported earlier: take a
// whole export then). Without them, the tree is left for the tree
// builder, which gives the events new salts.
//
// Any failure — a bad event, a broken input, a store whose newest event
// is not the one before the first imported — rolls everything back, so
// the store is left as it was. The head row stays locked for the whole
// import, so appends wait for it and then follow the imported events.
//
// Errors: an [*fossil.InvalidError] for input that breaks these rules,
// [ErrNotEmpty] wrapped in fossil.ErrConflict, fossil.ErrUnavailable when
// the database fails or the store's tree is still being built.
func (s *Store) Import(ctx context.Context, next func() (ImportItem, error)) (ImportResult, error) {
	// The first item decides the kind of import (where it starts, with
	// or without the tree) before anything is written. An import without
	// events (an incremental export when the source has nothing new, which
	// still carries the replacement chain) only checks the chain.
	first, err := next()
	if errors.Is(err, io.EOF) {
		return ImportResult{}, nil
	}
	if err != nil {
		return ImportResult{}, err
	}
	var res ImportResult
	err = WithTx(ctx, s.pool, func(ctx context.Context, tx pgx.Tx) error {
		var (
			head, treeSize, reps int64
			edgeBytes, chain     []byte
			rows                 bool
		)
		if err := tx.QueryRow(ctx, importLockSQL).Scan(&head, &treeSize, &edgeBytes, &reps, &chain, &rows); err != nil {
			return err
		}
		if first.Event != nil && first.Event.Number != head+1 && (head > 0 || rows) {
			n := first.Event.Number
			return fmt.Errorf("%w: %w (its newest event is number %d, the import starts at %d): import restores into an empty database, or continues one with an export after its newest event (fossil export --after %d)",
				fossil.ErrConflict, ErrNotEmpty, head, n, head)
		}
		src := &importSource{
			next: next, first: &first, streams: map[string]int64{}, touched: map[string]bool{},
			edge: &fossil.TreeEdge{}, mismatched: map[int64]tlog.Hash{},
			last: head, base: head, baseReps: reps, withTree: first.Leaf != nil || first.Event == nil,
		}
		noEvents := first.Event == nil
		if noEvents {
			src.first, src.pending = nil, first.Replacement
		}
		copy(src.baseChain[:], chain)
		empty := head == 0 && !rows
		var indexes []string
		if empty && !noEvents {
			// An index built once over the whole table is several times
			// cheaper than the same index updated row by row; the table is
			// empty and the transaction holds it, so drop the secondary
			// indexes (whatever migrations defined them) and build them
			// again after the copy. A duplicate (source, id) fails the
			// rebuild. Sorting in memory is what makes the rebuild fast.
			if _, err := tx.Exec(ctx, "SET LOCAL maintenance_work_mem = '256MB'"); err != nil {
				return err
			}
			if indexes, err = dropSecondaryIndexes(ctx, tx); err != nil {
				return err
			}
		} else {
			// Continuing a log: the sequences go on from the stored
			// streams, and the tree from the stored edge.
			if err := src.loadStreams(ctx, tx); err != nil {
				return err
			}
			if src.withTree && !noEvents {
				if treeSize != head {
					return fmt.Errorf("%w: the Merkle tree holds %d of the %d events; the tree builder is catching up, try again in a moment", fossil.ErrUnavailable, treeSize, head)
				}
				if src.edge, err = fossil.ParseTreeEdge(treeSize, edgeBytes); err != nil {
					return err
				}
				src.runStart = treeSize
			}
		}
		var n int64
		if !noEvents {
			tag, err := tx.Conn().PgConn().CopyFrom(ctx, &copyEncoder{src: src}, importCopySQL)
			if src.err != nil {
				return src.err
			}
			if err != nil {
				return importError(err)
			}
			n = tag.RowsAffected()
		}
		if err := src.readReplacements(); err != nil {
			return err
		}
		if noEvents {
			return nil // the chain is the stored one: nothing to add
		}
		for _, def := range indexes {
			if _, err := tx.Exec(ctx, def); err != nil {
				return importError(err)
			}
		}
		names := make([]string, 0, len(src.touched))
		for name := range src.touched {
			names = append(names, name)
		}
		if _, err := tx.Exec(ctx, importStreamsSQL, names); err != nil {
			return err
		}
		newSize, edge, newChain := treeSize, edgeBytes, src.baseChain
		if src.withTree {
			src.flushRun()
			if _, err := tx.Exec(ctx, importTreeSQL, src.runFirst, src.runs); err != nil {
				return err
			}
			newSize, edge = src.edge.Size, src.edge.Bytes()
			if k := len(src.reps); k > 0 {
				newChain = src.reps[k-1].Chain
				idx, nums, leaves, chains, ats := make([]int64, k), make([]int64, k), make([][]byte, k), make([][]byte, k), make([]time.Time, k)
				for i, r := range src.reps {
					idx[i], nums[i], leaves[i], chains[i], ats[i] = r.Index, r.Number, bytes.Clone(r.LeafHash[:]), bytes.Clone(r.Chain[:]), r.ReplacedAt
				}
				if _, err := tx.Exec(ctx, importReplacementsSQL, idx, nums, leaves, chains, ats); err != nil {
					return err
				}
			}
		}
		if _, err := tx.Exec(ctx, importHeadSQL, src.last, newSize, edge, reps+int64(len(src.reps)), newChain[:]); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, notifySQL, ChannelEvents, strconv.FormatInt(src.last, 10)); err != nil {
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

// importSource checks the caller's events (numbers and sequences dense,
// leaves matching) and extends the tree with their leaves; copyEncoder
// turns them into COPY rows.
type importSource struct {
	next    func() (ImportItem, error)
	first   *ImportItem      // the item Import read to decide; consumed first
	streams map[string]int64 // last sequence per stream
	touched map[string]bool  // streams the import added to
	last    int64            // newest number so far
	base    int64            // the store's newest event before the import
	err     error

	withTree   bool // the events carry salts and leaves
	edge       *fossil.TreeEdge
	run        []byte // stored hashes since runStart
	runStart   int64  // tree size when run began
	runFirst   []int64
	runs       [][]byte
	mismatched map[int64]tlog.Hash // replaced events: number → leaf of the current content
	baseReps   int64               // replacement records the store held
	baseChain  tlog.Hash           // and their chain
	reps       []Replacement       // the records to add
	pending    *Replacement        // the first replacement, read by nextEvent
}

// loadStreams reads the stored streams' newest sequences.
func (s *importSource) loadStreams(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT s.name, e.sequence FROM fossil_streams s
CROSS JOIN LATERAL (SELECT sequence FROM fossil_events WHERE stream = s.name ORDER BY sequence DESC LIMIT 1) e`)
	if err != nil {
		return err
	}
	var (
		name string
		seq  int64
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &seq}, func() error {
		s.streams[name] = seq
		return nil
	})
	return err
}

// nextEvent returns the next event, checked and added to the tree, or nil
// at the end of the events (s.err says whether that is a failure).
func (s *importSource) nextEvent() *fossil.Event {
	var item ImportItem
	if s.first != nil {
		item, s.first = *s.first, nil
	} else {
		var err error
		if item, err = s.next(); err != nil {
			if !errors.Is(err, io.EOF) {
				s.err = err
			}
			return nil
		}
	}
	if item.Replacement != nil {
		s.pending = item.Replacement
		return nil
	}
	e := item.Event
	loc := "event " + strconv.FormatInt(s.last+1, 10)
	switch {
	case e.Number != s.last+1:
		s.err = fossil.Invalid(loc, "event number %d where %d was expected: numbers must run 1, 2, 3… in order", e.Number, s.last+1)
		return nil
	case e.Sequence != s.streams[e.Stream]+1:
		s.err = fossil.Invalid(loc, "stream %q: sequence %d where %d was expected", e.Stream, e.Sequence, s.streams[e.Stream]+1)
		return nil
	case s.withTree != (item.Leaf != nil):
		s.err = fossil.Invalid(loc, "some events carry their salt and leaf hash and others do not")
		return nil
	}
	if s.withTree {
		if err := s.addLeaf(e, *item.Leaf, item.Content); err != nil {
			s.err = err
			return nil
		}
	}
	s.last = e.Number
	s.streams[e.Stream] = e.Sequence
	s.touched[e.Stream] = true
	return e
}

// importRun is how many events' stored hashes are collected before they
// are cut into rows (splitRun).
const importRun = 1024

// addLeaf checks the event against its leaf and adds the leaf to the tree.
func (s *importSource) addLeaf(e *fossil.Event, leaf tlog.Hash, content *tlog.Hash) error {
	loc := "event " + strconv.FormatInt(e.Number, 10)
	if len(e.Salt) != fossil.SaltSize {
		return fossil.Invalid(loc, "fossilsalt must be %d bytes", fossil.SaltSize)
	}
	if content == nil {
		h, err := e.LeafHash(e.Salt)
		if err != nil {
			return fossil.Invalid(loc, "%s", err.Error())
		}
		content = &h
	}
	if *content != leaf {
		s.mismatched[e.Number] = *content // must be a replaced event
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
	firsts, runs := splitRun(tlog.StoredHashIndex(0, s.runStart), s.run)
	s.runFirst = append(s.runFirst, firsts...)
	s.runs = append(s.runs, runs...)
	s.run, s.runStart = nil, s.edge.Size
}

// readReplacements reads the replacement records after the events and
// checks them: dense indexes, the chain, records the store holds already
// unchanged, and each replaced event's content against its newest record.
func (s *importSource) readReplacements() error {
	r := s.pending
	var prev tlog.Hash
	k := int64(0) // index of the previous record
	if r != nil && r.Index == s.baseReps+1 && s.baseReps > 0 {
		prev, k = s.baseChain, s.baseReps // the export starts after the stored records
	}
	newest := map[int64]tlog.Hash{}
	for r != nil {
		k++
		loc := "replacement " + strconv.FormatInt(k, 10)
		if !s.withTree {
			return fossil.Invalid(loc, "replacement records need events with their salts and leaf hashes")
		}
		switch {
		case r.Index != k:
			return fossil.Invalid(loc, "index %d where %d was expected", r.Index, k)
		case r.Number < 1 || r.Number > s.last:
			return fossil.Invalid(loc, "event %d is not in the log", r.Number)
		case fossil.NextChain(prev, fossil.ReplacementRecord(r.Index, r.Number, r.LeafHash)) != r.Chain:
			return fossil.Invalid(loc, "the chain does not match the records")
		case k == s.baseReps && r.Chain != s.baseChain:
			return fossil.Invalid(loc, "the store holds other replacement records: this export is not of the same log")
		case k > s.baseReps && r.Number <= s.base:
			return fossil.Invalid(loc, "event %d, which the store holds already, was replaced after the store was exported: restore a whole export into an empty store instead", r.Number)
		}
		prev = r.Chain
		newest[r.Number] = r.LeafHash
		if k > s.baseReps {
			s.reps = append(s.reps, *r)
		}
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
	if k > 0 && k < s.baseReps {
		return fossil.Invalid("replacement "+strconv.FormatInt(k, 10), "the store holds %d replacement records, the export %d: this export is not of the same log, or older than the store", s.baseReps, k)
	}
	for n, content := range s.mismatched {
		if leaf, ok := newest[n]; !ok || leaf != content {
			return fossil.Invalid("event "+strconv.FormatInt(n, 10), "its content does not match its leaf hash, nor a replacement record")
		}
	}
	return nil
}

// copyEncoder renders the events of src as PostgreSQL's binary COPY
// format, a buffer at a time (pgx's CopyFrom boxes every value and looks
// its codec up; this writes the eleven columns directly).
type copyEncoder struct {
	src    *importSource
	buf    []byte
	off    int
	header bool
	done   bool
}

// pgEpochMicros is 2000-01-01T00:00:00Z in microseconds since 1970, the
// epoch of PostgreSQL's binary timestamps.
const pgEpochMicros = 946_684_800 * 1_000_000

func (c *copyEncoder) Read(p []byte) (int, error) {
	if c.off == len(c.buf) {
		if c.done {
			return 0, io.EOF
		}
		c.fill()
		if c.src.err != nil {
			return 0, c.src.err
		}
	}
	n := copy(p, c.buf[c.off:])
	c.off += n
	return n, nil
}

// fill renders rows into c.buf until it holds about 256 KiB, or the
// events end (then the trailer).
func (c *copyEncoder) fill() {
	b := c.buf[:0]
	c.off = 0
	if !c.header {
		b = append(b, "PGCOPY\n\xff\r\n\x00"...)
		b = append(b, 0, 0, 0, 0, 0, 0, 0, 0) // flags, header extension length
		c.header = true
	}
	for len(b) < 256<<10 {
		e := c.src.nextEvent()
		if e == nil {
			c.done = true
			b = binary.BigEndian.AppendUint16(b, 0xffff) // trailer: -1
			break
		}
		b = binary.BigEndian.AppendUint16(b, 11)
		b = appendInt8(b, e.Number)
		b = appendField(b, e.Stream)
		b = appendInt8(b, e.Sequence)
		b = appendField(b, e.ID)
		b = appendField(b, e.Source)
		b = appendField(b, e.Type)
		if e.Subject == "" {
			b = appendNull(b)
		} else {
			b = appendField(b, e.Subject)
		}
		if e.Time.IsZero() {
			b = appendNull(b)
		} else {
			b = appendInt8(b, e.Time.Unix()*1_000_000+int64(e.Time.Nanosecond()/1000)-pgEpochMicros)
		}
		if len(e.ExpectAck) == 0 {
			b = appendNull(b)
		} else {
			b = appendField(b, strings.Join(e.ExpectAck, ","))
		}
		b = appendField(b, e.Doc) // json's binary form is its text
		if e.Salt == nil {
			b = appendNull(b)
		} else {
			b = appendField(b, e.Salt)
		}
	}
	c.buf = b
}

func appendInt8(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendField[T string | []byte](b []byte, v T) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

func appendNull(b []byte) []byte { return binary.BigEndian.AppendUint32(b, 0xffffffff) }
