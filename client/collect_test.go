package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/client"
	"github.com/fossil-events/fossil/fossil"
)

// logLen reads the whole log straight from the server.
func logLen(t *testing.T, c *client.Client) int {
	t.Helper()
	n := 0
	for _, err := range c.Log(context.Background(), 0) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	return n
}

func TestCollectRetryRules(t *testing.T) {
	srv := startServer(t)
	direct := newClient(t, srv.URL)
	cases := []struct {
		name      string
		faults    []fault
		attempts  int
		duplicate bool
	}{
		{"503 is retried", []fault{answer503, answer503}, 3, false},
		{"500 is retried", []fault{answer500}, 2, false},
		{"a network error before the server is retried", []fault{dropBefore, dropBefore}, 3, false},
		{"a lost answer is retried and finds the stored event", []fault{dropAfter}, 2, true},
		{"every fault at once", []fault{dropBefore, answer503, dropAfter, answer500}, 5, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, srv.URL)
			c := newClient(t, p.URL())
			p.inject("/collect", tc.faults...)
			stream := "retry/" + string(rune('a'+i))
			before := logLen(t, direct)
			// With an expected sequence too: the retry of a committed
			// request must get its stored positions, not a 409.
			res, err := c.CollectEvent(context.Background(), stream, newEvent(t, stream, "t", map[string]int{"n": i}), client.ExpectSequence(1))
			if err != nil {
				t.Fatalf("collect: %v", err)
			}
			if res.Attempts != tc.attempts || len(p.seen("/collect")) != tc.attempts {
				t.Fatalf("attempts = %d, proxy saw %d, want %d", res.Attempts, len(p.seen("/collect")), tc.attempts)
			}
			if res.Duplicate != tc.duplicate {
				t.Fatalf("duplicate = %v, want %v", res.Duplicate, tc.duplicate)
			}
			if got := logLen(t, direct); got != before+1 {
				t.Fatalf("log has %d events, want %d: a retry stored a copy or lost the event", got, before+1)
			}
			if pos := res.Last(); pos.Sequence != 1 || pos.Number != int64(before+1) || pos.ID != stream {
				t.Fatalf("position %+v, want sequence 1, number %d", pos, before+1)
			}
			// Every attempt sent the same body, so the same id and source.
			ids := map[string]bool{}
			for _, s := range p.seen("/collect") {
				ids[s.header.Get("Fossil-Stream")] = true
			}
			if len(ids) != 1 {
				t.Fatalf("attempts went to different streams: %v", ids)
			}
		})
	}
}

func TestCollectGeneratedIDIsKeptAcrossRetries(t *testing.T) {
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	c := newClient(t, p.URL())
	p.inject("/collect", dropAfter, dropAfter)
	ev := event.New()
	ev.SetSource("/test")
	ev.SetType("t")
	res, err := c.CollectEvent(context.Background(), "s", ev)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID() == "" || res.Last().ID != ev.ID() || !res.Duplicate || res.Attempts != 3 {
		t.Fatalf("id %q, result %+v: want the generated id on the caller's event, 3 attempts, a duplicate", ev.ID(), res)
	}
	if n := logLen(t, newClient(t, srv.URL)); n != 1 {
		t.Fatalf("log has %d events, want 1", n)
	}
}

func TestCollectNeverRetries4xx(t *testing.T) {
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	c := newClient(t, p.URL())
	ctx := context.Background()
	if _, err := c.CollectEvent(ctx, "acct", newEvent(t, "a1", "t", nil)); err != nil {
		t.Fatal(err)
	}

	t.Run("400", func(t *testing.T) {
		before := len(p.seen("/collect"))
		ev := newEvent(t, "bad", "t", nil)
		ev.SetExtension("fossilnumber", "1") // reserved name
		_, err := c.CollectEvent(ctx, "acct", ev)
		var pe *client.Error
		if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest || !errors.Is(err, fossil.ErrInvalid) {
			t.Fatalf("err = %v, want a 400 *client.Error matching fossil.ErrInvalid", err)
		}
		if pe.Type != "urn:fossil:problem:invalid-input" || pe.Detail == "" || len(pe.Errors) == 0 {
			t.Fatalf("problem %+v: want type, detail and errors", pe)
		}
		if n := len(p.seen("/collect")) - before; n != 1 {
			t.Fatalf("%d requests for a 400, want 1", n)
		}
	})
	t.Run("409 sequence", func(t *testing.T) {
		before := len(p.seen("/collect"))
		_, err := c.CollectEvent(ctx, "acct", newEvent(t, "a2", "t", nil), client.ExpectSequence(1))
		var pe *client.Error
		if !errors.As(err, &pe) || pe.Status != http.StatusConflict || !errors.Is(err, fossil.ErrSequenceConflict) {
			t.Fatalf("err = %v, want a 409 matching fossil.ErrSequenceConflict", err)
		}
		if pe.ExpectedSequence != 1 || pe.CurrentSequence != 1 {
			t.Fatalf("expected/current = %d/%d, want 1/1", pe.ExpectedSequence, pe.CurrentSequence)
		}
		if n := len(p.seen("/collect")) - before; n != 1 {
			t.Fatalf("%d requests for a 409, want 1", n)
		}
	})
	t.Run("409 id reused", func(t *testing.T) {
		before := len(p.seen("/collect"))
		_, err := c.CollectEvent(ctx, "acct", newEvent(t, "a1", "t", map[string]int{"other": 1}))
		if !errors.Is(err, fossil.ErrConflict) || errors.Is(err, fossil.ErrSequenceConflict) {
			t.Fatalf("err = %v, want a plain conflict", err)
		}
		if n := len(p.seen("/collect")) - before; n != 1 {
			t.Fatalf("%d requests for a 409, want 1", n)
		}
	})
	t.Run("404 replace", func(t *testing.T) {
		_, err := c.CollectEvent(ctx, "acct", newEvent(t, "nope", "t", nil), client.Replace())
		if !errors.Is(err, fossil.ErrNotFound) {
			t.Fatalf("err = %v, want not found", err)
		}
	})
}

func TestCollectGivesUp(t *testing.T) {
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	c := newClient(t, p.URL(), client.WithRetry(client.Retry{Attempts: 3}))
	p.inject("/collect", answer503, answer503, answer503, answer503)
	_, err := c.CollectEvent(context.Background(), "s", newEvent(t, "x", "t", nil))
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusServiceUnavailable || !errors.Is(err, fossil.ErrUnavailable) {
		t.Fatalf("err = %v, want the last 503", err)
	}
	if n := len(p.seen("/collect")); n != 3 {
		t.Fatalf("%d requests, want 3", n)
	}
	if n := logLen(t, newClient(t, srv.URL)); n != 0 {
		t.Fatalf("log has %d events, want 0", n)
	}
}

func TestCollectStopsRetryingWhenContextEnds(t *testing.T) {
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	c := newClient(t, p.URL(), client.WithRetry(client.Retry{Attempts: 100, Initial: time.Hour, Max: time.Hour}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p.onSeen = func(seen) { cancel() }
	p.inject("/collect", answer503)
	_, err := c.CollectEvent(ctx, "s", newEvent(t, "x", "t", nil))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if n := len(p.seen("/collect")); n != 1 {
		t.Fatalf("%d requests, want 1", n)
	}
}

func TestCollectBatchAndWait(t *testing.T) {
	srv := startServer(t)
	c := newClient(t, srv.URL)
	ctx := context.Background()
	events := []event.Event{newEvent(t, "b1", "t", nil), newEvent(t, "b2", "t", "text"), newEvent(t, "b3", "t", nil)}
	res, err := c.Collect(ctx, "orders/1", events)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Events) != 3 || res.Events[0].ID != "b1" || res.Events[2].Sequence != 3 || res.Last().Number != 3 {
		t.Fatalf("result %+v", res)
	}
	// Nobody acknowledges: 202, named in TimedOut, stored anyway.
	res, err = c.CollectEvent(ctx, "orders/1", newEvent(t, "b4", "t", nil), client.WaitFor("billing", 50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TimedOut) != 1 || res.TimedOut[0] != "billing" || res.Last().Sequence != 4 {
		t.Fatalf("result %+v, want billing timed out and sequence 4", res)
	}
	ev, err := c.ReadEvent(ctx, 4)
	if err != nil {
		t.Fatal(err)
	}
	if !ev.NeedsAck("billing") || ev.Stream != "orders/1" || ev.ID() != "b4" || len(ev.Extensions()) != 0 {
		t.Fatalf("event %+v: want fossilexpectack billing and no fossil extensions left on the CloudEvent", ev)
	}
}
