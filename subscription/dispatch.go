package subscription

import (
	"container/heap"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/store"
	"github.com/fossil-events/fossil/subscription/sink"
)

// Backoff is the retry delay policy, a value: attempt n (from 1) waits
// Initial·Factor^(n-1), plus up to Jitter of that, capped at Max.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	Jitter  float64 // fraction added at random, 0.2 = up to +20 %
}

// DefaultBackoff starts at 1 s and is capped at 5 min (api.md).
var DefaultBackoff = Backoff{Initial: time.Second, Max: 5 * time.Minute, Factor: 2, Jitter: 0.2}

// Delay returns the wait after the attempt-th failed attempt.
func (b Backoff) Delay(attempt int) time.Duration {
	d := float64(b.Initial)
	for i := 1; i < attempt && d < float64(b.Max); i++ {
		d *= b.Factor
	}
	d += d * b.Jitter * rand.Float64()
	return min(time.Duration(d), b.Max)
}

// item is a matching event above the position that is not done.
type item struct {
	cand      *Candidate
	number    int64
	stream    string
	key       string // the queue it waits in
	attempts  int
	nextTry   time.Time
	lastErr   string
	replay    bool // a parked event being replayed
	persisted bool // has a pending row
	added     time.Time
	dirty     bool // its row must be written at the next flush
	sending   bool
	heapIndex int
}

// queue holds the pending events of one stream in number order; only its
// head may be sent.
type queue struct{ items []*item }

type result struct {
	it      *item
	out     sink.Outcome
	started time.Time
}

// dispatcher delivers one subscription while its process holds the lease.
// One goroutine (run) owns all fields; sends run in their own goroutines
// and report on results.
type dispatcher struct {
	m      *Manager
	id     string
	holder string
	gen    int64
	c      *Compiled
	sink   sink.Sink
	logger *slog.Logger

	wake    chan struct{} // new events may exist
	changed chan struct{} // the definition or parked list changed
	stop    chan struct{} // leave (pull group emptied)
	done    chan struct{}

	position, scanned int64
	caughtUp          bool
	pending           map[int64]*item
	queues            map[string]*queue
	ready             []*item
	delayed           delayHeap
	inflight          int
	results           chan result
	replaying         map[int64]bool
	reader            *store.Reader

	// Changes not yet written.
	deletes   []int64
	parks     []store.ParkedEvent
	unparks   []int64
	delivered int64
	lastErr   *string
	disable   bool
	dirty     bool
	lastFlush time.Time
}

// run delivers until ctx ends, the lease is lost, the definition changes,
// the subscription is disabled or deleted, or stop is closed.
func (d *dispatcher) run(ctx context.Context) {
	defer close(d.done)
	defer func() {
		if d.sink != nil {
			_ = d.sink.Close()
		}
	}()
	sendCtx, cancelSends := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSends()
	err := d.loop(ctx, sendCtx)
	// Let sends in progress finish or be cut short; an interrupted send
	// leaves its event pending without counting an attempt.
	cancelSends()
	for d.inflight > 0 {
		r := <-d.results
		d.inflight--
		if r.out.Kind == sink.Retry && sendCtx.Err() != nil {
			r.it.sending = false
			continue
		}
		d.settle(r)
	}
	bg, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if !errors.Is(err, store.ErrLeaseLost) {
		if ferr := d.flush(bg); ferr != nil && !errors.Is(ferr, store.ErrLeaseLost) {
			d.logger.WarnContext(bg, "final subscription flush failed", "error", ferr)
		}
		if rerr := d.m.cfg.Store.ReleaseSubscriptionLease(bg, d.id, d.holder); rerr != nil {
			d.logger.DebugContext(bg, "release subscription lease", "error", rerr)
		}
	}
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, errStop):
	case errors.Is(err, store.ErrLeaseLost):
		if _, gerr := d.m.cfg.Store.GetSubscription(bg, d.id); errors.Is(gerr, fossil.ErrNotFound) {
			d.logger.InfoContext(bg, "subscription deleted; delivery stopped")
		} else {
			d.logger.WarnContext(bg, "subscription lease lost; another process delivers it now")
		}
	case errors.Is(err, errReload), errors.Is(err, errDisabled):
	default:
		d.logger.WarnContext(bg, "subscription dispatcher stopped", "error", err)
	}
}

var (
	errReload   = errors.New("subscription definition changed")
	errDisabled = errors.New("subscription disabled")
	errStop     = errors.New("dispatcher stopped")
)

func (d *dispatcher) loop(ctx, sendCtx context.Context) error {
	if err := d.load(ctx); err != nil {
		return err
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if !d.caughtUp && len(d.pending) < d.m.cfg.MaxPending {
			if err := d.read(ctx); err != nil {
				return err
			}
		}
		d.promote(time.Now())
		d.dispatch(sendCtx)
		now := time.Now()
		renewAt := d.lastFlush.Add(d.m.cfg.LeaseTTL / 3)
		if d.disable || (d.dirty && now.Sub(d.lastFlush) >= d.m.cfg.FlushInterval) || !now.Before(renewAt) {
			gen, err := d.flushGen(ctx)
			if err != nil {
				return err
			}
			if gen != d.gen {
				return errReload
			}
			if d.disable {
				// Written: the final flush must not write it again, since
				// a PUT may re-enable the subscription in between.
				d.disable = false
				d.logger.WarnContext(ctx, "subscription disabled: the sink answered 410 Gone")
				return errDisabled
			}
			continue
		}
		if !d.caughtUp && len(d.pending) < d.m.cfg.MaxPending {
			continue
		}
		// Sleep until something happens.
		next := renewAt
		if d.dirty {
			next = d.lastFlush.Add(d.m.cfg.FlushInterval)
		}
		if len(d.delayed) > 0 && d.delayed[0].nextTry.Before(next) {
			next = d.delayed[0].nextTry
		}
		timer.Reset(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-d.stop:
			return errStop
		case <-d.wake:
			d.caughtUp = false
		case <-d.changed:
			gen, err := d.flushGen(ctx)
			if err != nil {
				return err
			}
			if gen != d.gen {
				return errReload
			}
			if err := d.loadReplays(ctx); err != nil {
				return err
			}
		case r := <-d.results:
			d.inflight--
			d.settle(r)
			// Settle whatever else finished, without blocking.
			for drained := false; !drained; {
				select {
				case r := <-d.results:
					d.inflight--
					d.settle(r)
				default:
					drained = true
				}
			}
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// load restores the position, the pending events and the replays.
func (d *dispatcher) load(ctx context.Context) error {
	st, err := d.m.cfg.Store.LoadDispatch(ctx, d.id, d.holder)
	if err != nil {
		return err
	}
	d.position, d.scanned = st.Subscription.Position, st.Subscription.Scanned
	d.lastFlush = time.Now()
	byNumber := make(map[int64]store.PendingEvent, len(st.Pending))
	numbers := make([]int64, 0, len(st.Pending))
	for _, p := range st.Pending {
		byNumber[p.Number] = p
		numbers = append(numbers, p.Number)
	}
	cands, err := d.candidates(ctx, numbers)
	if err != nil {
		return err
	}
	for _, c := range cands {
		p := byNumber[c.Event.Number]
		it := &item{cand: c, number: p.Number, stream: p.Stream, key: p.Stream, attempts: p.Attempts, nextTry: p.NextTry, lastErr: p.LastError, persisted: true}
		d.add(it)
	}
	for _, n := range numbers {
		if _, ok := d.pending[n]; !ok {
			// The event no longer exists (it cannot: events are kept
			// forever); drop its row rather than stall the subscription.
			d.deletes = append(d.deletes, n)
			d.dirty = true
		}
	}
	return d.loadReplays(ctx)
}

// loadReplays picks up parked events a replay asked to deliver again.
func (d *dispatcher) loadReplays(ctx context.Context) error {
	rows, err := d.m.cfg.Store.ReplayingParked(ctx, d.id)
	if err != nil {
		return err
	}
	var numbers []int64
	for _, r := range rows {
		if !d.replaying[r.Number] {
			numbers = append(numbers, r.Number)
		}
	}
	cands, err := d.candidates(ctx, numbers)
	if err != nil {
		return err
	}
	for _, c := range cands {
		d.replaying[c.Event.Number] = true
		d.add(&item{cand: c, number: c.Event.Number, stream: c.Event.Stream, key: "\x00replay\x00" + c.Event.Stream, replay: true, persisted: true})
	}
	return nil
}

func (d *dispatcher) candidates(ctx context.Context, numbers []int64) ([]*Candidate, error) {
	var out []*Candidate
	for len(numbers) > 0 {
		chunk := numbers[:min(len(numbers), 1000)]
		numbers = numbers[len(chunk):]
		events, err := d.m.cfg.Store.EventsByNumbers(ctx, chunk)
		if err != nil {
			return nil, err
		}
		for _, e := range events {
			c, err := NewCandidate(e)
			if err != nil {
				return nil, err
			}
			out = append(out, c)
		}
	}
	return out, nil
}

// read takes the next page of the log after scanned and queues the
// matching events.
func (d *dispatcher) read(ctx context.Context) error {
	head, err := d.m.cfg.Store.Head(ctx)
	if err != nil {
		return err
	}
	if head <= d.scanned {
		d.caughtUp = true
		return nil
	}
	if d.reader == nil {
		var match func(string) bool
		if d.c.Templates != nil {
			match = d.c.Templates.Match
		}
		d.reader = d.m.cfg.Store.NewReader(match)
	}
	// The reader resolves the stream templates against the stream
	// catalogue and reads only the matching streams; every candidate is
	// still checked here.
	events, scanned, err := d.reader.Read(ctx, d.scanned, head, d.m.cfg.PageSize)
	if err != nil {
		return err
	}
	for _, e := range events {
		if d.c.Templates != nil && !d.c.Templates.Match(e.Stream) {
			continue
		}
		c, err := NewCandidate(e)
		if err != nil {
			d.logger.ErrorContext(ctx, "unreadable stored event skipped", "number", e.Number, "error", err)
			continue
		}
		if !d.c.Filter.Match(c) {
			continue
		}
		if _, ok := d.pending[e.Number]; ok {
			continue // restored from its pending row
		}
		d.add(&item{cand: c, number: e.Number, stream: e.Stream, key: e.Stream, dirty: true, added: time.Now()})
	}
	d.scanned = max(d.scanned, scanned)
	if d.scanned >= head {
		d.caughtUp = true
	}
	d.dirty = true
	return nil
}

// add queues an item; it becomes sendable when it heads its queue.
func (d *dispatcher) add(it *item) {
	d.pending[it.number] = it
	q := d.queues[it.key]
	if q == nil {
		q = &queue{}
		d.queues[it.key] = q
	}
	q.items = append(q.items, it)
	if len(q.items) == 1 {
		d.schedule(it)
	}
}

// schedule puts a queue head in the ready list or the delay heap.
func (d *dispatcher) schedule(it *item) {
	if it.nextTry.IsZero() || !it.nextTry.After(time.Now()) {
		d.ready = append(d.ready, it)
		return
	}
	heap.Push(&d.delayed, it)
}

// promote moves delayed heads whose time has come to the ready list.
func (d *dispatcher) promote(now time.Time) {
	for len(d.delayed) > 0 && !d.delayed[0].nextTry.After(now) {
		it := heap.Pop(&d.delayed).(*item)
		d.ready = append(d.ready, it)
	}
}

// dispatch starts sends for ready heads, up to maxinflight.
func (d *dispatcher) dispatch(ctx context.Context) {
	if d.disable {
		return
	}
	for d.inflight < d.c.MaxInFlight && len(d.ready) > 0 {
		it := d.ready[0]
		d.ready[0] = nil
		d.ready = d.ready[1:]
		it.sending = true
		d.inflight++
		go func() {
			started := time.Now()
			sctx, cancel := context.WithTimeout(ctx, d.c.AckTimeout)
			out := d.sink.Send(sctx, &sink.Message{
				Event:  &it.cand.CE,
				Source: it.cand.Event.Source,
				Stream: it.stream,
				ID:     d.id + ":" + strconv.FormatInt(it.number, 10),
				Number: it.number,
				JSON:   func() []byte { return it.cand.Event.AppendJSON(nil) },
			})
			cancel()
			d.results <- result{it: it, out: out, started: started}
		}()
	}
	if len(d.ready) == 0 {
		d.ready = nil // let the backing array go
	}
}

// settle turns one outcome into state: done, retry later, park or disable.
func (d *dispatcher) settle(r result) {
	it := r.it
	it.sending = false
	now := time.Now()
	obs := d.m.cfg.Observer
	if r.out.Kind != sink.Delivered && obs.FailureFunc != nil {
		obs.FailureFunc(d.id, r.out.Reason())
	}
	switch r.out.Kind {
	case sink.Delivered:
		d.delivered++
		if obs.DeliveredFunc != nil {
			obs.DeliveredFunc(d.id, now.Sub(it.cand.Event.CommittedAt), now.Sub(r.started))
		}
		d.finish(it)
		if it.replay {
			d.unparks = append(d.unparks, it.number)
		}
		return
	case sink.Disable:
		it.attempts++
		d.fail(it, r.out.Err)
		d.disable = true
		it.nextTry = time.Time{}
		// Not scheduled: it stays the head of its queue and pending, and
		// delivery resumes with it when the subscription is re-enabled.
		return
	case sink.RetryAfter:
		d.fail(it, r.out.Err)
		wait := r.out.After
		if wait <= 0 {
			wait = d.m.cfg.Backoff.Delay(max(it.attempts, 1))
		}
		it.nextTry = now.Add(wait)
	case sink.Retry:
		it.attempts++
		d.fail(it, r.out.Err)
		if it.attempts >= d.c.MaxAttempts {
			d.park(it, now)
			return
		}
		it.nextTry = now.Add(d.m.cfg.Backoff.Delay(it.attempts))
	case sink.Reject:
		it.attempts++
		d.fail(it, r.out.Err)
		d.park(it, now)
		return
	}
	d.schedule(it)
}

func (d *dispatcher) fail(it *item, msg string) {
	it.lastErr = msg
	it.dirty = true
	d.lastErr = &msg
	d.dirty = true
}

// finish removes a done item and lets the next one of its stream go.
func (d *dispatcher) finish(it *item) {
	delete(d.pending, it.number)
	if it.replay {
		delete(d.replaying, it.number)
	} else if it.persisted {
		d.deletes = append(d.deletes, it.number)
	}
	it.dirty = false
	d.dirty = true
	q := d.queues[it.key]
	if q != nil && len(q.items) > 0 && q.items[0] == it {
		q.items[0] = nil
		q.items = q.items[1:]
		if len(q.items) == 0 {
			delete(d.queues, it.key)
		} else {
			d.schedule(q.items[0])
		}
	}
}

func (d *dispatcher) park(it *item, now time.Time) {
	d.parks = append(d.parks, store.ParkedEvent{Number: it.number, Attempts: it.attempts, LastError: it.lastErr, ParkedAt: now.UTC()})
	d.logger.Warn("event parked", "number", it.number, "stream", it.stream, "attempts", it.attempts, "lasterror", it.lastErr)
	if obs := d.m.cfg.Observer; obs.ParkedFunc != nil {
		obs.ParkedFunc(d.id)
	}
	d.finish(it)
}

// flush writes the changes since the last flush and renews the lease.
func (d *dispatcher) flush(ctx context.Context) error {
	_, err := d.flushState(ctx, true)
	return err
}

// persistAfter is how long a pending event on its first attempt goes
// without a pending row. Until it has one, the durable scan position stays
// below it, so a crash re-reads it from the log (and may repeat deliveries
// made after it, at most about this long's worth). In the common case an
// event is delivered well within it and never touches the pending table.
const persistAfter = time.Second

func (d *dispatcher) flushGen(ctx context.Context) (int64, error) {
	return d.flushState(ctx, false)
}

// flushState writes the state; all writes a row for every pending event
// (a clean stop), so the next holder repeats nothing.
func (d *dispatcher) flushState(ctx context.Context, all bool) (int64, error) {
	now := time.Now()
	pos, durable := d.scanned, d.scanned
	var upserts []store.PendingEvent
	for _, it := range d.pending {
		if it.replay {
			continue
		}
		pos = min(pos, it.number-1)
		if !all && !it.persisted && it.attempts == 0 && it.nextTry.IsZero() && now.Sub(it.added) < persistAfter {
			durable = min(durable, it.number-1)
			continue
		}
		if it.dirty || !it.persisted {
			upserts = append(upserts, store.PendingEvent{Number: it.number, Stream: it.stream, Attempts: it.attempts, NextTry: it.nextTry, LastError: it.lastErr})
		}
	}
	gen, err := d.m.cfg.Store.FlushDispatch(ctx, store.FlushParams{
		ID: d.id, Holder: d.holder, LeaseTTL: d.m.cfg.LeaseTTL,
		Position: pos, Scanned: durable, Delivered: d.delivered, LastError: d.lastErr,
		Upsert: upserts, Delete: d.deletes, Park: d.parks, Unpark: d.unparks, Disable: d.disable,
	})
	if err != nil {
		return 0, err
	}
	for _, u := range upserts {
		if it := d.pending[u.Number]; it != nil {
			it.persisted, it.dirty = true, false
		}
	}
	d.position = pos
	d.deletes, d.parks, d.unparks = nil, nil, nil
	d.delivered, d.lastErr, d.dirty = 0, nil, false
	d.lastFlush = time.Now()
	return gen, nil
}

// delayHeap orders waiting queue heads by their next try.
type delayHeap []*item

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].nextTry.Before(h[j].nextTry) }
func (h delayHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIndex, h[j].heapIndex = i, j
}
func (h *delayHeap) Push(x any) {
	it := x.(*item)
	it.heapIndex = len(*h)
	*h = append(*h, it)
}
func (h *delayHeap) Pop() any {
	old := *h
	n := len(old)
	it := old[n-1]
	old[n-1] = nil
	*h = old[:n-1]
	return it
}
