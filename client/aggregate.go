package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/fossil"
)

// Aggregate is the event-sourcing loop over one stream: load the stream,
// fold its events into a state, decide what happens, and append the
// decision with the expected sequence, so that it is stored only if no
// other writer appended in between. When one did, the decision is taken
// again on the new state.
//
//	account := client.Aggregate[int]{Client: c, Stream: "accounts/42", Apply: applyBalance}
//	_, err := account.Execute(ctx, func(balance int) ([]event.Event, error) { … })
type Aggregate[S any] struct {
	Client *Client
	Stream string
	// Initial returns the state of an empty stream (nil: S's zero value).
	Initial func() S
	// Apply folds one event into the state and returns the new state. It
	// must not keep or change state it was given when it returns an error.
	Apply func(state S, ev *Event) (S, error)
	// MaxAttempts bounds how often Execute decides (default 1000): each
	// conflict with another writer costs one more attempt.
	MaxAttempts int
}

// Load reads the stream and folds it: the current state and its version
// (the sequence of the stream's last event, 0 when empty).
func (a *Aggregate[S]) Load(ctx context.Context) (S, int64, error) {
	var state S
	if a.Initial != nil {
		state = a.Initial()
	}
	return a.catchUp(ctx, state, 0)
}

// catchUp folds the events after version into state.
func (a *Aggregate[S]) catchUp(ctx context.Context, state S, version int64) (S, int64, error) {
	for ev, err := range a.Client.Stream(ctx, a.Stream, version+1) {
		if err != nil {
			return state, version, err
		}
		if ev.Sequence != version+1 {
			return state, version, fmt.Errorf("fossil client: stream %q: event %d has sequence %d, want %d", a.Stream, ev.Number, ev.Sequence, version+1)
		}
		if state, err = a.Apply(state, ev); err != nil {
			return state, version, fmt.Errorf("apply event %d of %q: %w", ev.Number, a.Stream, err)
		}
		version = ev.Sequence
	}
	return state, version, nil
}

// Execute loads the stream, calls decide with the current state, and
// appends the events it returns, expecting the stream not to have moved.
// When another writer appended first (409), it reads the new events,
// folds them into the state and calls decide again. decide must not have
// side effects beyond building events: it may run several times. An error
// from decide stops Execute and is returned as is; no events (nil, nil)
// means nothing to do, and Execute returns a nil Result.
//
// Events without an id get a fresh random id on every attempt. opts apply
// to the append (WaitFor, for example).
func (a *Aggregate[S]) Execute(ctx context.Context, decide func(state S) ([]event.Event, error), opts ...CollectOption) (*Result, error) {
	limit := a.MaxAttempts
	if limit <= 0 {
		limit = 1000
	}
	state, version, err := a.Load(ctx)
	if err != nil {
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		events, err := decide(state)
		if err != nil || len(events) == 0 {
			return nil, err
		}
		res, err := a.Client.Collect(ctx, a.Stream, events, append(opts[:len(opts):len(opts)], ExpectSequence(version+1))...)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, fossil.ErrSequenceConflict) {
			return nil, err
		}
		if attempt >= limit {
			return nil, fmt.Errorf("fossil client: stream %q: still in conflict after %d attempts: %w", a.Stream, attempt, err)
		}
		// Let the winners through before trying again: a random pause in a
		// window that doubles with each conflict spreads racing writers out.
		window := min(time.Millisecond<<min(attempt, 7), 100*time.Millisecond)
		if err := sleep(ctx, rand.N(window)); err != nil {
			return nil, err
		}
		if state, version, err = a.catchUp(ctx, state, version); err != nil {
			return nil, err
		}
	}
}
