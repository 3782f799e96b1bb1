package client_test

import (
	"context"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fossil-events/fossil/client"
	"github.com/fossil-events/fossil/fossil"
)

// commitCounter counts the commit requests a client sends.
type commitCounter struct {
	rt      http.RoundTripper
	commits atomic.Int64
	acks    atomic.Int64
}

func (c *commitCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	switch {
	case r.Method == http.MethodPut:
		c.commits.Add(1)
	case r.Method == http.MethodPost && r.URL.Path != "/collect":
		c.acks.Add(1)
	}
	return c.rt.RoundTrip(r)
}

func countingClient(t *testing.T, url string) (*client.Client, *commitCounter) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	cc := &commitCounter{rt: tr}
	return newClient(t, url, client.WithHTTPClient(&http.Client{Transport: cc})), cc
}

func offset(t *testing.T, c *client.Client, name string) int64 {
	t.Helper()
	info, err := c.Consumer(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return info.Offset
}

func TestConsumeCommitsInBatches(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	direct := newClient(t, srv.URL)
	c, counter := countingClient(t, srv.URL)
	collectN(t, direct, "jobs/1", "j", 25, 0)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	handled := make(chan int64, 100)
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(ctx, "worker", client.ConsumeOptions{Streams: []string{"jobs/{id}"}, CommitEvery: 10, CommitInterval: time.Hour},
			func(_ context.Context, ev *client.Event) error {
				handled <- ev.Number
				return nil
			})
	}()
	for i := int64(1); i <= 25; i++ {
		if n := <-handled; n != i {
			t.Fatalf("handled %d, want %d", n, i)
		}
	}
	// The commit after the 20th event is sent before the 21st is handled.
	if got := offset(t, direct, "worker"); got != 20 {
		t.Fatalf("offset %d after 25 handled events, want 20 (batches of 10)", got)
	}
	if n := counter.commits.Load(); n != 2 {
		t.Fatalf("%d commits, want 2", n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Consume returned %v, want context.Canceled", err)
	}
	if got := offset(t, direct, "worker"); got != 25 {
		t.Fatalf("offset %d after a graceful stop, want 25", got)
	}
	if n := counter.commits.Load(); n != 3 {
		t.Fatalf("%d commits, want 3", n)
	}

	// A restart resumes after the offset.
	collectN(t, direct, "jobs/2", "k", 2, 0)
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	var got []int64
	err := c.Consume(ctx2, "worker", client.ConsumeOptions{Streams: []string{"jobs/{id}"}}, func(_ context.Context, ev *client.Event) error {
		got = append(got, ev.Number)
		if ev.Number == 27 {
			cancel2()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || len(got) != 2 || got[0] != 26 {
		t.Fatalf("restart: err %v, handled %v; want 26, 27", err, got)
	}
	if got := offset(t, direct, "worker"); got != 27 {
		t.Fatalf("offset %d, want 27", got)
	}
}

func TestConsumeCommitsByTime(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	direct := newClient(t, srv.URL)
	c, counter := countingClient(t, srv.URL)
	collectN(t, direct, "jobs/1", "j", 5, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(ctx, "slow", client.ConsumeOptions{CommitEvery: 1000, CommitInterval: 20 * time.Millisecond},
			func(context.Context, *client.Event) error { return nil })
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := direct.Consumer(context.Background(), "slow")
		if err == nil && info.Offset == 5 {
			break
		}
		if err != nil && !errors.Is(err, fossil.ErrNotFound) {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatal("offset never reached 5 without a count-based commit")
		}
		time.Sleep(10 * time.Millisecond)
	}
	commits := counter.commits.Load()
	time.Sleep(100 * time.Millisecond) // several ticks with nothing new
	if n := counter.commits.Load(); n != commits {
		t.Fatalf("%d commits then %d: idle ticks must not commit", commits, n)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
}

func TestConsumeAcksAndHandlerError(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	c, counter := countingClient(t, srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	boom := errors.New("boom")
	done := make(chan error, 1)
	go func() {
		done <- c.Consume(ctx, "billing", client.ConsumeOptions{Streams: []string{"orders/{id}"}}, func(_ context.Context, ev *client.Event) error {
			if ev.ID() == "poison" {
				return boom
			}
			return nil
		})
	}()
	// The writer waits for billing: the consumer acks after handling.
	res, err := c.CollectEvent(ctx, "orders/1", newEvent(t, "o1", "order.placed", nil), client.WaitFor("billing", 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(res.TimedOut) != 0 {
		t.Fatalf("timed out: %v", res.TimedOut)
	}
	if n := counter.acks.Load(); n != 1 {
		t.Fatalf("%d acks, want 1", n)
	}
	if _, err := c.CollectEvent(ctx, "orders/2", newEvent(t, "poison", "order.placed", nil)); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, boom) {
		t.Fatalf("Consume returned %v, want the handler's error", err)
	}
	// The handled event was committed on the way out; the failed one was not.
	if got := offset(t, c, "billing"); got != 1 {
		t.Fatalf("offset %d, want 1", got)
	}
}

func TestConsumeResumesAfterKilledConnection(t *testing.T) {
	t.Parallel()
	srv := startServer(t)
	p := newProxy(t, srv.URL)
	direct := newClient(t, srv.URL)
	c := newClient(t, p.URL())
	collectN(t, direct, "jobs/1", "j", 5, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []int64
	killed := false
	err := c.Consume(ctx, "w", client.ConsumeOptions{CommitEvery: 1000, CommitInterval: time.Hour}, func(_ context.Context, ev *client.Event) error {
		got = append(got, ev.Number)
		if ev.Number == 3 && !killed {
			killed = true
			p.kill()
			collectN(t, direct, "jobs/2", "k", 2, 0)
		}
		if ev.Number == 7 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatal(err)
	}
	if len(got) != 7 {
		t.Fatalf("handled %v, want 1…7 once each", got)
	}
	for i, n := range got {
		if n != int64(i+1) {
			t.Fatalf("handled %v, want 1…7 once each", got)
		}
	}
	if len(p.seen("/consumer/w/sse")) < 2 {
		t.Fatal("no reconnect")
	}
	if got := offset(t, direct, "w"); got != 7 {
		t.Fatalf("offset %d, want 7", got)
	}
}
