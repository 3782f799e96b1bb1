package store

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestSubmitKeepsOrder: requests submitted one after another are committed
// in that order, many of them per group, while Append calls of other
// writers interleave; each submitted request still gets its own outcome (a
// failed expected sequence fails that request only).
func TestSubmitKeepsOrder(t *testing.T) {
	b := setupAppend(t, AppenderConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var others sync.WaitGroup
	for w := range 4 {
		others.Add(1)
		go func() {
			defer others.Done()
			for i := range 50 {
				if _, err := b.appender.Append(ctx, &AppendRequest{Stream: "s", Events: events(testEvent(fmt.Sprintf("o-%d-%d", w, i), "x"))}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	const n = 400
	pending := make([]*Pending, n)
	for i := range pending {
		req := &AppendRequest{Stream: "s", Events: events(testEvent(fmt.Sprintf("p-%d", i), "x"))}
		if i%2 == 1 {
			req.Stream, req.ExpectedSequence = "own", int64(i/2+1)
		}
		if i == 100 {
			req.ExpectedSequence = 1 // conflicts
		}
		pending[i] = b.appender.Submit(ctx, req)
	}
	var lastNumber, lastS, lastOwn int64
	for i, p := range pending {
		res, err := p.Wait(ctx)
		if i == 100 {
			if err == nil {
				t.Fatalf("request 100: %v, want a sequence conflict", res)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		pos := res.Events[0]
		last := &lastS
		if i%2 == 1 {
			last = &lastOwn
		}
		if pos.Number <= lastNumber || pos.Sequence <= *last {
			t.Fatalf("request %d at %d/%d after %d/%d", i, pos.Number, pos.Sequence, lastNumber, *last)
		}
		lastNumber, *last = pos.Number, pos.Sequence
	}
	others.Wait()
	b.requireDense(t, n-1+4*50)
	// Requests after the conflict went on.
	if lastOwn != 200 {
		t.Fatalf("own stream ends at %d, want 200", lastOwn)
	}
}
