package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/fossil-events/fossil/fossil"
)

// MaxSelectiveStreams is the most streams a [Reader] reads one by one; a
// predicate that matches more reads the log by number instead.
const MaxSelectiveStreams = 1024

// Reader reads, page by page and in number order, the events of the
// streams a predicate accepts (a subscriber's templates and its token's
// read grant). Its cost follows what it returns, not the size of the log:
//
//   - the predicate runs on stream names from the catalogue, once per name,
//     never on events;
//   - the matching streams are read from the cursor through the (stream,
//     number) index and merged in number order by one statement per page,
//     whose plan does not depend on statistics (see [selectivePageSQL]);
//   - a predicate that matches every known stream, or more than
//     [MaxSelectiveStreams], reads the log by number and filters in Go,
//     since most of what it reads is then returned anyway.
//
// A Reader keeps what it has resolved between calls; it is not safe for
// concurrent use (one per subscriber).
type Reader struct {
	s     *Store
	match func(stream string) bool
	// names are the matching streams among the first seen catalogue
	// entries.
	names []string
	seen  int
	// global is set once the predicate is not selective.
	global bool
	// window is the span of numbers a page reads; 0 until estimated.
	window int64
	// longest is the longest document the reader has read (0 before its
	// first page); see [Reader.pageRows].
	longest int
	// MaxBytes bounds the documents of a page, as ReadLogParams.MaxBytes
	// does; 0 means DefaultPageBytes.
	MaxBytes int64
}

// NewReader returns a Reader of the streams match accepts; a nil match
// accepts every stream.
func (s *Store) NewReader(match func(stream string) bool) *Reader {
	return &Reader{s: s, match: match, global: match == nil}
}

// Read returns up to limit matching events numbered in (after, through],
// in number order, and scanned: every matching event numbered in (after,
// scanned] is among them, so the next page starts after scanned. scanned
// is greater than after whenever through is. through must be at most a
// head read earlier (every event up to it committed).
func (r *Reader) Read(ctx context.Context, after, through int64, limit int) (events []*fossil.Event, scanned int64, err error) {
	if limit <= 0 {
		limit = 100
	}
	if through <= after {
		return nil, after, nil
	}
	if !r.global {
		if err := r.resolve(ctx, through); err != nil {
			return nil, after, err
		}
	}
	if r.global || r.everything() {
		return r.readGlobal(ctx, after, through, limit)
	}
	if len(r.names) == 0 {
		return nil, through, nil
	}
	end := through
	if len(r.names) > 1 {
		// One stream reads at most a page whatever the window; several
		// read up to a page each, so the window keeps the page near what
		// it returns.
		if r.window == 0 {
			if err := r.estimateWindow(ctx, through, limit); err != nil {
				return nil, after, err
			}
		}
		if r.window < through-after {
			end = after + r.window
		}
	}
	rows, cut := r.pageRows(limit)
	events, err = r.s.readStreams(ctx, r.names, after, end, rows, cut, r.maxBytes())
	if err != nil {
		return nil, after, err
	}
	var size int64
	for _, e := range events {
		size += int64(len(e.Doc))
		r.longest = max(r.longest, len(e.Doc))
	}
	if len(events) >= rows || size >= r.maxBytes() {
		// Full (by count or by bytes): the page ends at its last event.
		// Aim the next window at about two pages of matches.
		scanned = events[len(events)-1].Number
		r.window = max(1, 2*(scanned-after))
		return events, scanned, nil
	}
	if end < through {
		r.window = min(2*r.window, unbounded) // sparser than estimated
	}
	return events, end, nil
}

// minUncutRows is the fewest rows a page must be allowed for
// [Reader.pageRows] to leave out the byte cut in SQL.
const minUncutRows = 64

// pageRows returns how many rows the next page asks PostgreSQL for, and
// whether the statement must cut the page by the stored sizes of its
// documents (see [pageCut]).
//
// The cut is a window over the page's rows, which PostgreSQL evaluates
// on a copy of every row, documents included: it costs several times the
// index scan of the page (about 2 ms against 0.25 ms for a page of 430
// events of 600 bytes), and made the replay of a busy stream twice as
// expensive for the database as the reading itself. So the first page is
// cut, and once the reader knows how long the stream's documents run,
// later pages ask for as many rows as fit in MaxBytes at the longest
// document read so far, without the cut: a page then holds at most
// MaxBytes unless documents grow past anything read before. When they do,
// that one page costs PostgreSQL at most rows × the largest event, which
// collectEvents drops past MaxBytes as it reads (the memory stays
// bounded), and the longer documents put the next pages back on the cut.
// Documents long enough that fewer than minUncutRows fit are always cut.
func (r *Reader) pageRows(limit int) (rows int, cut bool) {
	if r.longest == 0 {
		return limit, true
	}
	n := r.maxBytes()/int64(r.longest) + 1
	if n < minUncutRows {
		return limit, true
	}
	return int(min(int64(limit), n)), false
}

// resolve matches the catalogue entries not seen yet.
func (r *Reader) resolve(ctx context.Context, through int64) error {
	names, err := r.s.cat.upTo(ctx, r.s, through)
	if err != nil {
		return err
	}
	for _, name := range names[r.seen:] {
		if r.match(name) {
			r.names = append(r.names, name)
		}
	}
	r.seen = len(names)
	if len(r.names) > MaxSelectiveStreams {
		r.global, r.names = true, nil // for good: the catalogue only grows
	}
	return nil
}

// everything reports whether the predicate matches every known stream,
// when a read by number costs no more and needs no merge.
func (r *Reader) everything() bool { return len(r.names) > 0 && len(r.names) == r.seen }

// unbounded is a window that reaches any head.
const unbounded = int64(1) << 62

// matchingEventsSQL sums the newest sequences of the named streams: how
// many events they hold (one probe of the (stream, sequence) index each).
const matchingEventsSQL = `SELECT coalesce(sum(e.sequence), 0)::bigint FROM unnest($1::text[]) AS k(name)
CROSS JOIN LATERAL (SELECT sequence FROM fossil_events WHERE stream = k.name ORDER BY sequence DESC LIMIT 1) e`

// estimateWindow sets the first window from the matching streams' share
// of the log: about two pages of their events, or everything when they
// hold at most a page.
func (r *Reader) estimateWindow(ctx context.Context, through int64, limit int) error {
	var total int64
	if err := r.s.pool.QueryRow(ctx, matchingEventsSQL, r.names).Scan(&total); err != nil {
		return interpretError(fmt.Errorf("count matching events: %w", err))
	}
	if total <= int64(limit) {
		r.window = unbounded
		return nil
	}
	r.window = max(1, int64(float64(through)*2*float64(limit)/float64(total)))
	return nil
}

func (r *Reader) readGlobal(ctx context.Context, after, through int64, limit int) ([]*fossil.Event, int64, error) {
	rows, cut := r.pageRows(limit)
	var page []*fossil.Event
	var err error
	if cut {
		page, err = r.s.ReadLog(ctx, ReadLogParams{After: after, Through: through, Limit: limit, MaxBytes: r.maxBytes()})
	} else {
		page, err = r.s.routePage(ctx, after, through, rows, r.maxBytes(), readLogUncut)
	}
	if err != nil {
		return nil, after, err
	}
	var size int64
	for _, e := range page {
		size += int64(len(e.Doc))
		r.longest = max(r.longest, len(e.Doc))
	}
	scanned := through
	if len(page) >= rows || size >= r.maxBytes() {
		scanned = page[len(page)-1].Number
	}
	if r.match == nil {
		return page, scanned, nil
	}
	out := page[:0]
	for _, e := range page {
		if r.match(e.Stream) {
			out = append(out, e)
		}
	}
	return out, scanned, nil
}

// readLogUncutSQL is a page of the log in (after, through] without the
// byte cut (see [Reader.pageRows]).
// The log is dense, so the page lies in (after, after+limit]: bounding it
// so keeps any plan to a page (see readLogSQL).
const readLogUncutSQL = `SELECT ` + eventColumns + ` FROM fossil_events WHERE number > $1 AND number <= least($2, $1 + $3) ORDER BY number LIMIT $3`

// readLogUncut reads a page of the log with readLogUncutSQL; through is
// never 0 here (a Reader reads up to a known head).
func readLogUncut(ctx context.Context, db pageDB, after, through int64, limit int, maxBytes int64) ([]*fossil.Event, error) {
	rows, err := db.query(ctx, readLogUncutSQL, after, through, limit)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read log: %w", err))
	}
	events, err := collectEvents(rows, limit, maxBytes)
	if err != nil {
		return nil, interpretError(fmt.Errorf("read log: %w", err))
	}
	return events, nil
}

// selectivePageSQL reads the next page of a set of streams: for each name,
// at most a page of its events in (after, end] from the (stream, number)
// index, then the first page of all of them in number order.
//
// The stream is bounded by row comparisons, not by stream = name: with an
// equality PostgreSQL treats the stream as a constant, and the primary
// key, ordered by number, becomes a candidate that it takes when its
// statistics promise many matches early (then it reads the log from the
// cursor, filtering). Ordered by (stream, number) and bounded by row
// comparisons, the subquery can be served only by the (stream, number)
// index, or by sorting the whole table: the plan cannot flip.
var selectivePageSQL = `SELECT ` + prefixColumns("e.", eventColumns) + `
FROM unnest($1::text[]) AS s(name)
CROSS JOIN LATERAL (
  SELECT ` + eventColumns + ` FROM fossil_events
  WHERE (stream COLLATE "C", number) > (s.name, $2::bigint)
    AND (stream COLLATE "C", number) <= (s.name, $3::bigint)
  ORDER BY stream COLLATE "C", number
  LIMIT $4) AS e
ORDER BY e.number
LIMIT $4`

// streamPageSQL is selectivePageSQL for one stream: the index order is
// the page order, so nothing is sorted.
const streamPageSQL = `SELECT ` + eventColumns + ` FROM fossil_events
WHERE (stream COLLATE "C", number) > ($1, $2::bigint)
  AND (stream COLLATE "C", number) <= ($1, $3::bigint)
ORDER BY stream COLLATE "C", number
LIMIT $4`

// streamPageCutSQL and selectivePageCutSQL are the pages bounded by bytes
// (see pageCut); a page of one stream keeps its index order, so that
// nothing is sorted.
var (
	streamPageCutSQL    = pageCutOrdered(streamPageSQL, `stream COLLATE "C", number`, `$5`)
	selectivePageCutSQL = pageCut(selectivePageSQL, `$5`)
)

// readStreams reads a page of names in (after, end]: at most limit events
// and maxBytes of documents (plus the event that crosses the line); see
// [PageFull]. With cut, PostgreSQL stops the page by the stored sizes of
// the documents; without, it sends limit rows and collectEvents stops
// reading at maxBytes. A read replica serves it up to what it holds
// ([Store.routePage]).
func (s *Store) readStreams(ctx context.Context, names []string, after, end int64, limit int, cut bool, maxBytes int64) ([]*fossil.Event, error) {
	return s.routePage(ctx, after, end, limit, maxBytes, func(ctx context.Context, db pageDB, after, end int64, limit int, maxBytes int64) ([]*fossil.Event, error) {
		var args []any
		var query string
		switch {
		case len(names) == 1 && cut:
			query, args = streamPageCutSQL, []any{names[0], after, end, limit, pageCutBound(limit, maxBytes)}
		case len(names) == 1:
			query, args = streamPageSQL, []any{names[0], after, end, limit}
		case cut:
			query, args = selectivePageCutSQL, []any{names, after, end, limit, pageCutBound(limit, maxBytes)}
		default:
			query, args = selectivePageSQL, []any{names, after, end, limit}
		}
		rows, err := db.query(ctx, query, args...)
		if err != nil {
			return nil, interpretError(fmt.Errorf("read streams: %w", err))
		}
		events, err := collectEvents(rows, limit, maxBytes)
		if err != nil {
			return nil, interpretError(fmt.Errorf("read streams: %w", err))
		}
		return events, nil
	})
}

// The pages without the cut run on replicas too (see replicaGuard).
func init() {
	replicaSQL[streamPageSQL] = replicaGuard(streamPageSQL, `stream COLLATE "C", number`, `$3`)
	replicaSQL[selectivePageSQL] = replicaGuard(selectivePageSQL, `number`, `$3`)
	replicaSQL[readLogUncutSQL] = replicaGuard(readLogUncutSQL, `number`, `$2`)
}

func (r *Reader) maxBytes() int64 {
	if r.MaxBytes > 0 {
		return r.MaxBytes
	}
	return DefaultPageBytes
}

// prefixColumns qualifies a comma-separated column list.
func prefixColumns(prefix, cols string) string {
	parts := strings.Split(cols, ", ")
	for i, p := range parts {
		parts[i] = prefix + p
	}
	return strings.Join(parts, ", ")
}
