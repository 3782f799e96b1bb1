package client_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"

	"github.com/fossil-events/fossil/client"
	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/testserver"
)

// TestPipeline: requests sent without waiting are committed and answered
// in order; a failed request fails its Pending only; results are those of
// Collect (positions, duplicates); Close waits for every answer.
func TestPipeline(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Pipeline(ctx, 32)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	pending := make([]*client.Pending, n)
	for i := range n {
		var opts []client.CollectOption
		if i == 100 {
			opts = append(opts, client.ExpectSequence(1)) // conflicts
		}
		ev := newEvent(t, fmt.Sprintf("p-%d", i), "order.placed", map[string]int{"i": i})
		if pending[i], err = p.Collect("orders/1", []event.Event{ev}, opts...); err != nil {
			t.Fatalf("collect %d: %v", i, err)
		}
	}
	// A retry of the first request, and a batch with binary data.
	retry, err := p.Collect("orders/1", []event.Event{newEvent(t, "p-0", "order.placed", map[string]int{"i": 0})})
	if err != nil {
		t.Fatal(err)
	}
	bin := event.New()
	bin.SetSource("/test")
	bin.SetType("blob")
	_ = bin.SetData("application/octet-stream", []byte{0, 1, 2})
	batch, err := p.Collect("blobs/1", []event.Event{bin, newEvent(t, "b-2", "x", nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	seq := int64(0)
	for i, pd := range pending {
		res, err := pd.Wait(ctx)
		if i == 100 {
			var fe *client.Error
			if !errors.As(err, &fe) || !errors.Is(err, fossil.ErrSequenceConflict) || fe.ExpectedSequence != 1 || fe.CurrentSequence != 100 {
				t.Fatalf("request 100: %v %+v", err, fe)
			}
			continue
		}
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		seq++
		if got := res.Last(); got.ID != fmt.Sprintf("p-%d", i) || got.Sequence != seq || got.Number != seq {
			t.Fatalf("request %d: %+v, want sequence and number %d", i, got, seq)
		}
	}
	if res, err := retry.Wait(ctx); err != nil || !res.Duplicate || res.Last().Number != 1 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	res, err := batch.Wait(ctx)
	if err != nil || len(res.Events) != 2 || res.Events[0].ID == "" {
		t.Fatalf("batch: %+v %v", res, err)
	}
	got, err := c.ReadEvent(ctx, res.Events[0].Number)
	if err != nil || string(got.Data()) != "\x00\x01\x02" {
		t.Fatalf("binary event read back: %v %v", got, err)
	}
	if _, err := p.Collect("orders/1", []event.Event{newEvent(t, "late", "x", nil)}); err == nil {
		t.Fatal("collect after Close succeeded")
	}
}

// TestPipelineConcurrentAndBroken: goroutines share a pipeline; when the
// server goes away, the requests not yet answered fail and Close reports it.
func TestPipelineConcurrentAndBroken(t *testing.T) {
	srv := testserver.Start(t)
	c := newClient(t, srv.URL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := c.Pipeline(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			last := int64(0)
			for i := range 50 {
				pd, err := p.Collect(fmt.Sprintf("w/%d", w), []event.Event{newEvent(t, fmt.Sprintf("%d-%d", w, i), "x", nil)})
				if err != nil {
					t.Error(err)
					return
				}
				res, err := pd.Wait(ctx)
				if err != nil || res.Last().Sequence != last+1 {
					t.Errorf("writer %d request %d: %+v %v", w, i, res, err)
					return
				}
				last++
			}
		}()
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// A call whose context ends: pending requests fail, Close says why.
	cctx, ccancel := context.WithCancel(ctx)
	p, err = c.Pipeline(cctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	pd, err := p.Collect("w/0", []event.Event{newEvent(t, "c-1", "x", nil)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pd.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	ccancel()
	if err := p.Close(); err == nil {
		t.Log("the call ended cleanly before its context was cancelled")
	}
}
