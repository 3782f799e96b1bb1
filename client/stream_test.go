package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/client"
)

func TestSubscribeResumesAfterKilledConnection(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	direct := newClient(t, srv.URL)
	c := newClient(t, p.URL())
	collectN(t, direct, "orders/1", "first", 10, 0)
	collectN(t, direct, "other/1", "skip", 3, 0) // does not match

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	atFive := make(chan struct{})
	resume := make(chan struct{})
	var got []int64
	done := make(chan error, 1)
	go func() {
		done <- c.Subscribe(ctx, []string{"orders/{id}"}, 0, func(ctx context.Context, ev *client.Event) error {
			got = append(got, ev.Number)
			if ev.Number == 5 {
				close(atFive)
				<-resume
			}
			if ev.Number == 20 {
				cancel()
			}
			return nil
		})
	}()
	<-atFive
	p.kill() // what is still in flight is lost with the connection
	collectN(t, direct, "orders/2", "second", 7, 0)
	close(resume)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Subscribe returned %v, want context.Canceled", err)
	}
	want := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16, 17, 18, 19, 20}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("handled %v, want %v", got, want)
	}
	reqs := p.seen("/sse")
	if len(reqs) < 2 {
		t.Fatalf("%d connections, want a reconnect", len(reqs))
	}
	if h := reqs[0].header.Get("Last-Event-Id"); h != "" {
		t.Fatalf("first connection sent Last-Event-Id %q", h)
	}
	// What was read before the kill is handled; the reconnect resumes
	// after the last handled event.
	if h, _ := strconv.Atoi(reqs[1].header.Get("Last-Event-Id")); h < 5 || h > 10 {
		t.Fatalf("reconnect sent Last-Event-Id %d, want 5…10", h)
	}
}

func TestSubscribeBackpressure(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	p.track = "/sse"
	direct := newClient(t, srv.URL)
	c := newClient(t, p.URL(), client.WithHTTPClient(smallBuffers(t)))
	const batches, perBatch, size = 3, 100, 8 << 10 // 2.4 MB of events
	for i := range batches {
		collectN(t, direct, "big/1", fmt.Sprint("b", i), perBatch, size)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hold := make(chan struct{})
	first := make(chan struct{})
	n := 0
	done := make(chan error, 1)
	go func() {
		done <- c.Subscribe(ctx, []string{"big/1"}, 0, func(ctx context.Context, ev *client.Event) error {
			n++
			if n == 1 {
				close(first)
				<-hold // a handler that is very slow
			}
			if n == batches*perBatch {
				cancel()
			}
			return nil
		})
	}()
	<-first
	// Give the server time to push all it can: what it pushes ends in
	// socket buffers, not in the client, whose handler is blocked.
	var sent int64
	for range 20 {
		time.Sleep(50 * time.Millisecond)
		sent = p.written.Load()
	}
	total := int64(batches * perBatch * size)
	if sent > total/4 {
		t.Fatalf("%d of %d bytes reached the client while its handler was blocked: the read does not wait for the handler", sent, total)
	}
	close(hold)
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if n != batches*perBatch {
		t.Fatalf("handled %d events, want %d", n, batches*perBatch)
	}
	t.Logf("%d of %d bytes delivered while the handler was blocked", sent, total)
}

func TestSubscribeErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c := newClient(t, srv.URL)
	err := c.Subscribe(context.Background(), []string{"{bad"}, 0, func(context.Context, *client.Event) error { return nil })
	var pe *client.Error
	if !errors.As(err, &pe) || pe.Status != http.StatusBadRequest {
		t.Fatalf("err = %v, want a 400", err)
	}
	collectN(t, c, "s", "e", 3, 0)
	stop := errors.New("stop")
	var mu sync.Mutex
	seen := 0
	err = c.Subscribe(context.Background(), []string{"s"}, 1, func(_ context.Context, ev *client.Event) error {
		mu.Lock()
		defer mu.Unlock()
		seen++
		if ev.Number != 2 || ev.Sequence != 2 || ev.Stream != "s" || ev.ID() != "e-2" {
			t.Errorf("first event %+v, want number 2 (after 1)", ev)
		}
		return stop
	})
	if !errors.Is(err, stop) || seen != 1 {
		t.Fatalf("err = %v after %d events, want the handler's error after 1", err, seen)
	}
}

func TestSubscribeReconnectsAfterServerErrors(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	c := newClient(t, p.URL())
	collectN(t, newClient(t, srv.URL), "s", "e", 2, 0)
	p.inject("/sse", answer503, dropBefore, answer500)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []int64
	err := c.Subscribe(ctx, []string{"s"}, 0, func(_ context.Context, ev *client.Event) error {
		got = append(got, ev.Number)
		if len(got) == 2 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || fmt.Sprint(got) != "[1 2]" || len(p.seen("/sse")) != 4 {
		t.Fatalf("err %v, got %v after %d connections; want [1 2] after 4", err, got, len(p.seen("/sse")))
	}
}
