package store

import (
	"context"

	"github.com/fossil-events/fossil/fossil"
)

// Pending is a request handed to the appender by [Appender.Submit].
type Pending struct {
	p   *pendingAppend
	err error
}

// Wait returns the request's outcome once its group has committed, with
// the errors of [Appender.Append]. When ctx ends first it returns ctx's
// error, and the request may or may not be committed.
func (w *Pending) Wait(ctx context.Context) (*AppendResult, error) {
	if w.err != nil {
		return nil, w.err
	}
	select {
	case out := <-w.p.done:
		return out.res, out.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Submit queues req for a group commit and returns without waiting for
// it, so that a caller can pipeline requests: requests submitted one after
// another by one goroutine are committed in that order (in one group, or
// in consecutive groups), each with the guarantees of [Appender.Append].
// It waits only while the queue is full. ctx bounds the request's life:
// a request whose ctx has ended when its group starts is dropped.
func (a *Appender) Submit(ctx context.Context, req *AppendRequest) *Pending {
	salts := fossil.NewSalts(len(req.Events))
	for i, e := range req.Events {
		if e.Salt == nil {
			e.Salt = salts[i]
		}
		if err := prepareLeaf(e); err != nil {
			return &Pending{err: err}
		}
	}
	p := &pendingAppend{ctx: ctx, req: req, done: make(chan appendOutcome, 1)}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.closed {
		return &Pending{err: errAppenderClosed}
	}
	// Always through the queue, even when the appender is idle: the
	// appender goroutine keeps submission order, which a group of one run
	// in this goroutine would not with the next submission.
	a.inflight.Add(1)
	select {
	case a.queue <- p:
	case <-ctx.Done():
		a.inflight.Add(-1)
		return &Pending{err: ctx.Err()}
	}
	select {
	case a.kick <- struct{}{}:
	default: // a wake-up is pending already
	}
	return &Pending{p: p}
}
