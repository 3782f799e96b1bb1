package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/fossil-events/fossil/fossil"
)

// AppenderConfig tunes group commit.
type AppenderConfig struct {
	// MaxGroupEvents caps the events in one transaction; 0 means 2000.
	MaxGroupEvents int
	// TxTimeout bounds one group transaction; 0 means 10s.
	TxTimeout time.Duration
	// QueueSize bounds requests waiting for the appender; 0 means 8192.
	QueueSize int
	// ObserveFunc, when set, is called after each group transaction with
	// its size and duration (for metrics).
	ObserveFunc func(requests, events int, took time.Duration, err error)
	// CommittedFunc, when set, is called after each committed group that
	// wrote something, before any of its requests is answered, with the new
	// head, the inserted events in number order (fully set: number,
	// sequence, stream, document; the callee must not modify them) and
	// whether stored events were replaced, so the process can serve its own
	// readers without waiting for the database notification (and in
	// poll-only mode).
	CommittedFunc func(head int64, inserted []*fossil.Event, replaced bool)
	// TreeFunc, when set, is called after each committed group that
	// hashed its events into the log's Merkle tree, with the new tree size
	// and the time hashing took.
	TreeFunc func(size int64, hashing time.Duration)
	// minPipelined is minPipelinedEvents, unless a test sets it.
	minPipelined int
	// Tracer, when set, gives each group commit a span: the child of the
	// first request's span, linked to every request's span, and the
	// parent of the group's statements. nil (tracing off) costs nothing.
	Tracer trace.Tracer
}

// Appender is the single writer of a process. Concurrent [Appender.Append]
// calls are queued and drained by one goroutine into group transactions
// ("group commit"): one transaction, one fsync and one notification serve
// every request that arrived while the previous group was committing.
//
// A request that finds the appender idle (nothing queued, nothing being
// written) is a group of one: the caller runs it itself, at once, without
// the hand-off to the appender goroutine and back. Requests that arrive
// meanwhile queue up and form the next group, committed by the appender
// goroutine as soon as the lone one has committed.
//
// Guarantees: an Append returns success only after its events are durably
// committed; event numbers are dense and assigned in commit order, also
// across processes (the head row lock serialises appenders); a request that
// fails a check consumes no number; concurrent appends to one stream without
// an expected sequence never conflict.
type Appender struct {
	store  *Store
	cfg    AppenderConfig
	logger *slog.Logger

	queue chan *pendingAppend
	// kick wakes the appender goroutine after a request was queued.
	kick chan struct{}
	// inflight counts the requests between their Append and their answer;
	// a request that makes it 1 runs alone in its caller's goroutine.
	inflight atomic.Int64
	// writer is held while a group runs, by the appender goroutine or by
	// a caller running a lone request; it guards lookups and cache.
	writer sync.Mutex
	// lookups counts the next groups that read their stored events up
	// front (see [Store.appendGroup]).
	lookups cooldown
	// cache lets groups commit in one round trip (see headCache).
	cache *headCache
	// launched counts the groups sent without waiting (see
	// [Appender.launch]); guarded by writer.
	launched int

	mu      sync.RWMutex // guards closed against sends on queue; held by lone requests
	closed  bool
	stopped chan struct{}
}

type pendingAppend struct {
	ctx  context.Context
	req  *AppendRequest
	done chan appendOutcome // capacity 1: the appender never blocks on it
}

// NewAppender starts the appender goroutine. Call [Appender.Close] to stop it.
func NewAppender(s *Store, cfg AppenderConfig) *Appender {
	if cfg.MaxGroupEvents <= 0 {
		cfg.MaxGroupEvents = 2000
	}
	if cfg.TxTimeout <= 0 {
		cfg.TxTimeout = 10 * time.Second
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.minPipelined <= 0 {
		cfg.minPipelined = minPipelinedEvents
	}
	a := &Appender{
		store:   s,
		cfg:     cfg,
		logger:  s.logger.With("component", "appender"),
		queue:   make(chan *pendingAppend, cfg.QueueSize),
		kick:    make(chan struct{}, 1),
		cache:   newHeadCache(),
		stopped: make(chan struct{}),
	}
	go a.run()
	return a
}

// errAppenderClosed is returned once Close has been called.
var errAppenderClosed = fmt.Errorf("%w: the server is shutting down", fossil.ErrUnavailable)

// Append stores req's events atomically and returns their positions.
//
// Errors: an [*fossil.SequenceConflictError] when the expected sequence does
// not hold; [fossil.ErrConflict] for an id reused with other content or a
// replacement aimed at another stream; [fossil.ErrNotFound] when a
// replacement has no target; [fossil.ErrUnavailable] when the database is
// down, too slow or the appender is closed. When ctx ends first, ctx's error
// is returned and the request may or may not have been committed; a retry
// is safe because appends are idempotent.
func (a *Appender) Append(ctx context.Context, req *AppendRequest) (*AppendResult, error) {
	// One read of the random source for the salts of the whole request,
	// unless the caller salted every event (the collector does, with the
	// leaf tails it builds while encoding the documents).
	var salts [][]byte
	for i, e := range req.Events {
		if e.Salt == nil {
			if salts == nil {
				salts = fossil.NewSalts(len(req.Events))
			}
			e.Salt = salts[i]
		}
		if err := prepareLeaf(e); err != nil {
			return nil, err
		}
	}
	p := &pendingAppend{ctx: ctx, req: req, done: make(chan appendOutcome, 1)}
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return nil, errAppenderClosed
	}
	if a.inflight.Add(1) == 1 {
		// Nothing is queued or being written: a group of one, run here.
		// The read lock keeps Close waiting until it has committed.
		a.writer.Lock()
		a.commit([]*pendingAppend{p}, len(req.Events))
		a.writer.Unlock()
		a.inflight.Add(-1)
		a.mu.RUnlock()
		out := <-p.done
		return out.res, out.err
	}
	select {
	case a.queue <- p:
		select {
		case a.kick <- struct{}{}:
		default: // a wake-up is pending already
		}
		a.mu.RUnlock()
	case <-ctx.Done():
		a.inflight.Add(-1)
		a.mu.RUnlock()
		return nil, ctx.Err()
	}
	select {
	case out := <-p.done:
		return out.res, out.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close stops accepting appends, finishes every request already queued and
// waits for the appender goroutine to exit.
func (a *Appender) Close() {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.queue)
		close(a.kick)
	}
	a.mu.Unlock()
	<-a.stopped
}

// run is the appender goroutine: woken after requests were queued, it
// takes the writer (waiting for a lone request to commit first) and
// commits the queue group by group until it is empty. Requests stay in
// the queue until then, so that every one that arrives in the meantime
// joins the next group.
func (a *Appender) run() {
	defer close(a.stopped)
	group := make([]*pendingAppend, 0, 256)
	for range a.kick {
		a.drain(group)
	}
	// Close closed the queue after the last request was queued.
	a.drain(group)
}

// drain commits the queued requests, group by group, until the queue is
// empty.
//
// Groups of several events planned from the head cache are pipelined: the
// next one is taken from the queue, planned on the outcome the cache
// expects of the one being committed and decided while that one commits,
// and sent on another connection as soon as its answer arrives (see
// [Appender.launch]). Other groups wait for the one in flight and run
// alone.
func (a *Appender) drain(group []*pendingAppend) {
	a.writer.Lock()
	defer a.writer.Unlock()
	var prev *flight
	for {
		if prev != nil {
			// group's backing array belongs to the group in flight.
			group = make([]*pendingAppend, 0, cap(group))
		}
		group, events := a.take(group[:0], 0)
		if len(group) == 0 {
			if prev == nil {
				return
			}
			a.land(prev, nil)
			prev = nil
			continue
		}
		var f *flight
		if events >= a.cfg.minPipelined {
			f = a.launch(group, events, prev)
		}
		if prev != nil {
			a.land(prev, f)
			prev = nil
			if f == nil {
				// The requests that came while prev committed join
				// this group, as they would have without prev in
				// flight.
				group, events = a.take(group, events)
			}
		}
		switch {
		case f == nil:
			a.commit(group, events)
			a.inflight.Add(-int64(len(group)))
		case f.landed && f.err != nil:
			// Its predecessor failed, so it did too (see land): run it
			// again, alone.
			a.commit(f.group, f.events)
			a.inflight.Add(-int64(len(f.group)))
		case !f.landed:
			prev = f
		}
	}
}

// take adds queued requests to group until the queue is empty or the
// group holds MaxGroupEvents events.
func (a *Appender) take(group []*pendingAppend, events int) ([]*pendingAppend, int) {
	for events < a.cfg.MaxGroupEvents {
		select {
		case p, ok := <-a.queue:
			if !ok {
				return group, events
			}
			group = append(group, p)
			events += len(p.req.Events)
		default:
			return group, events
		}
	}
	return group, events
}

// minPipelinedEvents is the smallest group that is sent while the one
// before it commits (see [Appender.launch]); smaller groups wait for it
// and take in the requests that come meanwhile. Pipelining hides the
// taking, planning and deciding of a group behind the commit of the one
// before, which pays for large groups; it also splits the waiting
// requests into two groups, and each group pays the commit's fixed costs,
// which small groups cannot afford (docs/PERFORMANCE.md, "Batches of
// 100" and "What the pipelined groups overlap").
const minPipelinedEvents = 100

// serialGroups turns pipelining off (for benchmarks that compare).
var serialGroups = false

// flight is a group sent but not yet answered (see [Appender.launch]).
type flight struct {
	group    []*pendingAppend
	events   int
	reqs     []*AppendRequest
	outcomes []appendOutcome
	st       *groupState
	conn     *pgxpool.Conn
	results  pgx.BatchResults
	ctx      context.Context
	cancel   context.CancelFunc
	span     trace.Span
	start    time.Time
	// landed is set once the group committed or failed; err, when it
	// failed (by land, as the group after a failed one), and its requests
	// are not answered yet.
	landed bool
	err    error
}

// launch plans a group from the head cache, decides it and sends it
// without waiting for the answer, or returns nil when the group must run
// alone, after the one in flight: the cache cannot plan it (not valid,
// cooling down, a stream it does not know), it reads stored events
// (retries, replacements), it writes fewer than two events (a group of one
// is [appendOneSQL]), or every request of it is gone.
//
// When prev, the group in flight, has not committed yet, the group is
// planned on the state prev will leave (the cache records it when prev is
// sent) and its head check also requires prev's group token: if prev
// rolls back, the check fails, nothing of this group is written, and both
// run again (see [Appender.land]). The group is sent once prev's first
// statement has answered. PostgreSQL keeps the answers of a pipeline in
// its output buffer until the pipeline's Sync, so that answer arrives
// with the rest of prev's, after its commit: the group's check then reads
// the head prev left. (Sent while prev is still running, its check would
// meet prev's uncommitted head and fail; see advanceHeadSQL.) What
// overlaps prev's commit is this group's planning and deciding; its
// hashing, encoding and PostgreSQL's work follow the commit.
func (a *Appender) launch(group []*pendingAppend, events int, prev *flight) *flight {
	if serialGroups || a.lookups != 0 || !a.cache.valid || a.cache.skip != 0 {
		return nil
	}
	for _, p := range group {
		if p.req.Replace || p.ctx.Err() != nil {
			return nil
		}
	}
	if events < 2 {
		return nil
	}
	if prev != nil {
		if ps := a.store.writePool.Stat(); ps.AcquiredConns() >= ps.MaxConns() {
			return nil // no connection for it until prev lands
		}
	}
	reqs := make([]*AppendRequest, len(group))
	for i, p := range group {
		reqs[i] = p.req
	}
	st := a.cache.plan(reqs, false)
	if st == nil || st.unknown != nil {
		return nil
	}
	outcomes, err := st.decide(reqs)
	if err != nil || len(st.inserts) < 2 {
		return nil
	}
	if prev != nil {
		// A copy: a pointer into prev's state would keep prev, and through
		// its own after every group before it, alive for as long as
		// groups follow each other in flight (their events and
		// documents: hundreds of MB under a steady batch load).
		token := prev.st.token
		st.after = &token
	}
	f := &flight{group: group, events: events, reqs: reqs, outcomes: outcomes, st: st, start: time.Now()}
	ctx := context.Background()
	if a.cfg.Tracer != nil {
		ctx, f.span = a.startGroupSpan(group, events)
	}
	f.ctx, f.cancel = context.WithTimeout(ctx, a.cfg.TxTimeout)
	if prev != nil {
		// prev's first answer comes with the rest of its pipeline's,
		// after its commit (see above): this group's check then reads
		// the head prev left.
		if _, err := prev.results.Exec(); err != nil {
			f.end()
			return nil // prev failed: land will see it
		}
	}
	conn, err := a.store.writePool.Acquire(f.ctx)
	if err != nil {
		f.end()
		return nil
	}
	f.conn = conn
	br, err := st.send(f.ctx, conn.Conn())
	if err != nil || br == nil {
		conn.Release()
		f.end()
		return nil
	}
	f.results = br
	a.launched++
	// The next group is planned on this one's outcome.
	a.cache.committed(st)
	return f
}

// end ends the flight's context and span.
func (f *flight) end() {
	f.cancel()
	if f.span != nil {
		f.span.End()
	}
}

// land waits for the group in flight f and answers its requests. next is
// the group sent after f, if any: when f fails, next's head check fails
// too (it requires f's token), so land forgets the cache, waits for next
// as well (which then commits only if f did after all, its answer lost)
// and runs f's requests again alone; next is landed then, answered or
// with next.err set for the caller to run it again.
func (a *Appender) land(f, next *flight) {
	if err := a.settle(f); err == nil {
		a.answer(f)
		return
	} else if errors.Is(err, errNeedLookup) {
		a.lookups.start()
	}
	a.cache.reset()
	if next != nil {
		if next.err = a.settle(next); next.err == nil {
			a.answer(next)
		}
	}
	a.commit(f.group, f.events)
	a.inflight.Add(-int64(len(f.group)))
}

// settle waits for the group in flight f to commit or fail, and ends it.
func (a *Appender) settle(f *flight) error {
	defer f.end()
	f.landed = true
	err := f.st.wait(f.results)
	if err != nil {
		if _, ok := errors.AsType[*pgconn.PgError](err); !ok {
			// Not a statement error, which would have ended the implicit
			// transaction: the connection's state is unknown.
			rollback(f.ctx, f.conn)
		}
	}
	f.conn.Release()
	return err
}

// answer reports a committed group in flight and answers its requests.
func (a *Appender) answer(f *flight) {
	st := f.st
	if a.cfg.ObserveFunc != nil {
		a.cfg.ObserveFunc(len(f.reqs), f.events, time.Since(f.start), nil)
	}
	if a.cfg.TreeFunc != nil && st.hashed > 0 {
		a.cfg.TreeFunc(st.treeSize, st.hashed)
	}
	if a.cfg.CommittedFunc != nil {
		a.cfg.CommittedFunc(st.head, st.inserts, false)
	}
	for i, p := range f.group {
		p.done <- f.outcomes[i]
	}
	a.inflight.Add(-int64(len(f.group)))
}

// commit runs one group. Requests whose caller has already gone are dropped
// before the transaction starts. When the group transaction fails on a
// statement error, each request is retried alone so that one bad request
// cannot fail its neighbours.
func (a *Appender) commit(group []*pendingAppend, events int) {
	live := group[:0]
	for _, p := range group {
		if p.ctx.Err() != nil {
			p.done <- appendOutcome{err: p.ctx.Err()}
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	reqs := make([]*AppendRequest, len(live))
	for i, p := range live {
		reqs[i] = p.req
	}
	start := time.Now()
	ctx := context.Background()
	if a.cfg.Tracer != nil {
		var span trace.Span
		ctx, span = a.startGroupSpan(live, events)
		defer span.End()
	}
	outcomes, err := a.runGroup(ctx, reqs)
	if err != nil && a.cfg.Tracer != nil {
		span := trace.SpanFromContext(ctx)
		span.RecordError(err)
		span.SetStatus(codes.Error, "group commit failed")
	}
	if a.cfg.ObserveFunc != nil {
		a.cfg.ObserveFunc(len(reqs), events, time.Since(start), err)
	}
	if err != nil && len(live) > 1 && isStatementError(err) {
		a.logger.Warn("group append failed; retrying requests one by one", "requests", len(live), "error", err)
		for _, p := range live {
			out, err := a.runGroup(ctx, []*AppendRequest{p.req})
			if err != nil {
				p.done <- appendOutcome{err: err}
				continue
			}
			p.done <- out[0]
		}
		return
	}
	if err != nil {
		a.logger.Error("group append failed", "requests", len(live), "error", err)
		for _, p := range live {
			p.done <- appendOutcome{err: err}
		}
		return
	}
	for i, p := range live {
		p.done <- outcomes[i]
	}
}

// startGroupSpan starts the span of a group commit (see
// AppenderConfig.Tracer). Its context carries the span only: the group
// does not end with any request's context.
func (a *Appender) startGroupSpan(group []*pendingAppend, events int) (context.Context, trace.Span) {
	links := make([]trace.Link, 0, len(group))
	for _, p := range group {
		if l := trace.LinkFromContext(p.ctx); l.SpanContext.IsValid() {
			links = append(links, l)
		}
	}
	parent := trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(group[0].ctx))
	return a.cfg.Tracer.Start(parent, "fossil.append.group",
		trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("fossil.group.requests", len(group)), attribute.Int("fossil.group.events", events)))
}

func (a *Appender) runGroup(parent context.Context, reqs []*AppendRequest) ([]appendOutcome, error) {
	ctx, cancel := context.WithTimeout(parent, a.cfg.TxTimeout)
	defer cancel()
	optimistic := !a.lookups.next()
	outcomes, st, err := a.store.appendGroup(ctx, reqs, optimistic, a.cache)
	if err == nil && st.retried {
		// Clients are retrying: read stored events up front for a while
		// rather than fail and rerun groups.
		a.lookups.start()
	}
	if err == nil && a.cfg.TreeFunc != nil && st.hashed > 0 {
		a.cfg.TreeFunc(st.treeSize, st.hashed)
	}
	if err == nil && a.cfg.CommittedFunc != nil && (len(st.inserts) > 0 || len(st.replaced) > 0) {
		a.cfg.CommittedFunc(st.head, st.inserts, len(st.replaced) > 0)
	}
	return outcomes, err
}
