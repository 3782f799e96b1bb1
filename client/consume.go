package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// ConsumeOptions configures [Client.Consume].
type ConsumeOptions struct {
	// Streams are the stream templates the consumer follows (default
	// "{+all}": every stream).
	Streams []string
	// CommitEvery commits the offset after that many handled events
	// (default 100), and CommitInterval at the latest that long after an
	// event was handled (default 1s). A commit is one request; handled
	// but uncommitted events are handled again only if the process dies.
	CommitEvery    int
	CommitInterval time.Duration
}

// Consume runs the named consumer: it follows the stream templates from the
// consumer's committed offset, calls h for each event in event-number
// order, acknowledges every event a writer waits on this consumer for
// (Fossil-Wait-Consumer) once h returned, and commits the offset in
// batches (ConsumeOptions).
//
// A name is held by one connection at a time across all servers: while
// another process holds it, Consume waits and retries, so a second
// instance is a hot standby. Broken connections are resumed as in
// [Client.Subscribe], after committing what was handled.
//
// Consume stops when h returns an error or ctx is done. Either way it first
// commits every event h handled, then returns h's error or ctx.Err()
// (joined with a failed final commit, if any).
func (c *Client) Consume(ctx context.Context, name string, opts ConsumeOptions, h Handler) error {
	if opts.CommitEvery <= 0 {
		opts.CommitEvery = 100
	}
	if opts.CommitInterval <= 0 {
		opts.CommitInterval = time.Second
	}
	if len(opts.Streams) == 0 {
		opts.Streams = []string{"{+all}"}
	}
	ticker := time.NewTicker(opts.CommitInterval)
	defer ticker.Stop()

	var committed int64 = -1 // unknown: the first commit is always sent
	f := &follower{
		c:         c,
		path:      "/consumer/" + url.PathEscape(name) + "/sse",
		query:     url.Values{"stream": opts.Streams},
		busyRetry: true,
		tick:      ticker.C,
	}
	pending := 0
	commit := func(ctx context.Context) error {
		if pending == 0 || f.cursor <= committed {
			return nil
		}
		if err := c.Commit(ctx, name, f.cursor, false); err != nil {
			return fmt.Errorf("commit offset %d of consumer %q: %w", f.cursor, name, err)
		}
		committed, pending = f.cursor, 0
		return nil
	}
	f.handle = func(ctx context.Context, ev *Event) error {
		if err := h(ctx, ev); err != nil {
			return err
		}
		if ev.NeedsAck(name) {
			// The event is handled: acknowledge it even when ctx ends
			// meanwhile (a writer waiting for this ack may be what stops
			// the consumer), so a graceful stop commits it too.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err := c.Ack(actx, name, ev.ID(), ev.Source())
			cancel()
			if err != nil {
				return fmt.Errorf("ack event %d for consumer %q: %w", ev.Number, name, err)
			}
		}
		f.cursor = ev.Number // serve sets it too; commit needs it now
		pending++
		if pending >= opts.CommitEvery {
			return commit(ctx)
		}
		return nil
	}
	f.onTick = func(ctx context.Context) error { return commit(ctx) }
	f.onBreak = func(ctx context.Context) { _ = commit(ctx) } // best effort: the cursor skips redeliveries

	err := f.run(ctx)
	// Commit what was handled, even when ctx is done.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return errors.Join(err, commit(cctx))
}
