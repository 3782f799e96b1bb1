package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/notify"
	"github.com/fossil-events/fossil/store"
)

// consumerBundle is a store on a fresh database with an appender to create
// events.
type consumerBundle struct {
	ctx      context.Context
	store    *store.Store
	appender *store.Appender
}

func setupConsumers(t *testing.T) *consumerBundle {
	t.Helper()
	st := openStore(t)
	app := store.NewAppender(st, store.AppenderConfig{})
	t.Cleanup(app.Close) // runs before st.Close
	return &consumerBundle{ctx: t.Context(), store: st, appender: app}
}

// appendEvent stores one event and returns its number.
func (b *consumerBundle) appendEvent(t *testing.T, stream, source, id string) int64 {
	t.Helper()
	doc := fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":%q,"type":"test.event"}`, id, source)
	res, err := b.appender.Append(b.ctx, &store.AppendRequest{
		Stream: stream,
		Events: []*fossil.Event{{ID: id, Source: source, Type: "test.event", Doc: []byte(doc)}},
	})
	if err != nil {
		t.Fatalf("append %s %s: %v", source, id, err)
	}
	return res.Events[0].Number
}

func TestCommitOffset(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	ctx, st := bundle.ctx, bundle.store
	for i := 1; i <= 5; i++ {
		bundle.appendEvent(t, "s", "/src", fmt.Sprintf("e%d", i))
	}

	// Steps run in order against the same consumer.
	steps := []struct {
		name    string
		offset  int64
		rewind  bool
		wantErr error // nil, fossil.ErrInvalid or fossil.ErrConflict
		want    int64 // the stored offset afterwards
	}{
		{"FirstCommitZero", 0, false, nil, 0},
		{"Forward", 3, false, nil, 3},
		{"Same", 3, false, nil, 3},
		{"BeyondNewest", 6, false, fossil.ErrInvalid, 3},
		{"BeyondNewestEvenWithRewind", 99, true, fossil.ErrInvalid, 3},
		{"Backwards", 2, false, fossil.ErrConflict, 3},
		{"BackwardsRewind", 1, true, nil, 1},
		{"ToNewest", 5, false, nil, 5},
		{"RewindToZero", 0, true, nil, 0},
	}
	for _, s := range steps {
		err := st.CommitOffset(ctx, "c", s.offset, s.rewind)
		switch {
		case s.wantErr == nil && err != nil:
			t.Fatalf("%s: CommitOffset(%d, rewind=%v): %v", s.name, s.offset, s.rewind, err)
		case s.wantErr != nil && !errors.Is(err, s.wantErr):
			t.Fatalf("%s: CommitOffset(%d, rewind=%v) = %v, want %v", s.name, s.offset, s.rewind, err, s.wantErr)
		}
		got, ok, err := st.ConsumerOffset(ctx, "c")
		if err != nil || !ok || got != s.want {
			t.Fatalf("%s: ConsumerOffset = %d, %v, %v; want %d", s.name, got, ok, err, s.want)
		}
	}

	if _, ok, err := st.ConsumerOffset(ctx, "never"); ok || err != nil {
		t.Fatalf("ConsumerOffset(never) = %v, %v; want none", ok, err)
	}
	if _, err := st.GetConsumer(ctx, "never"); !errors.Is(err, fossil.ErrNotFound) {
		t.Fatalf("GetConsumer(never) = %v, want ErrNotFound", err)
	}
}

// TestCommitOffsetConcurrentFirstCommits races first commits of one name:
// none fails, and the stored offset is one of them.
func TestCommitOffsetConcurrentFirstCommits(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	for i := 1; i <= 10; i++ {
		bundle.appendEvent(t, "s", "/src", fmt.Sprintf("e%d", i))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 10)
	for i := 1; i <= 10; i++ {
		wg.Go(func() {
			// Rewind so that the order of the racers does not matter.
			errs <- bundle.store.CommitOffset(bundle.ctx, "racy", int64(i), true)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent first commit: %v", err)
		}
	}
	got, ok, err := bundle.store.ConsumerOffset(bundle.ctx, "racy")
	if err != nil || !ok || got < 1 || got > 10 {
		t.Fatalf("ConsumerOffset = %d, %v, %v", got, ok, err)
	}
}

func TestConsumerStatus(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	ctx, st := bundle.ctx, bundle.store
	for i := 1; i <= 4; i++ {
		bundle.appendEvent(t, "s", "/src", fmt.Sprintf("e%d", i))
	}
	before := time.Now().Add(-time.Minute) // the database clock may differ a little
	if err := st.CommitOffset(ctx, "committed", 1, false); err != nil {
		t.Fatal(err)
	}
	if err := st.AcquireLease(ctx, "leased", "00000000-0000-4000-8000-000000000001", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := st.CommitOffset(ctx, "both", 4, false); err != nil {
		t.Fatal(err)
	}
	if err := st.AcquireLease(ctx, "both", "00000000-0000-4000-8000-000000000002", time.Minute); err != nil {
		t.Fatal(err)
	}

	all, err := st.ListConsumers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name      string
		offset    int64
		lag       int64
		connected bool
		committed bool
	}{
		{"both", 4, 0, true, true},
		{"committed", 1, 3, false, true},
		{"leased", 0, 4, true, false},
	}
	if len(all) != len(want) {
		t.Fatalf("ListConsumers = %d consumers, want %d", len(all), len(want))
	}
	for i, w := range want {
		c := all[i]
		if c.Name != w.name || c.Offset != w.offset || c.Lag != w.lag || c.Connected != w.connected || (c.CommittedAt != nil) != w.committed {
			t.Errorf("consumer %d = %+v, want %+v", i, *c, w)
		}
		if c.CommittedAt != nil && (c.CommittedAt.Before(before) || c.CommittedAt.Location() != time.UTC) {
			t.Errorf("consumer %s committed_at = %v", c.Name, c.CommittedAt)
		}
		one, err := st.GetConsumer(ctx, w.name)
		if err != nil || !sameConsumer(one, c) {
			t.Errorf("GetConsumer(%s) = %+v, %v; want %+v", w.name, one, err, *c)
		}
	}
}

func TestLeases(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	ctx, st := bundle.ctx, bundle.store
	const (
		holderA = "00000000-0000-4000-8000-00000000000a"
		holderB = "00000000-0000-4000-8000-00000000000b"
	)

	t.Run("ExclusiveUntilReleased", func(t *testing.T) {
		t.Parallel()
		if err := st.AcquireLease(ctx, "x", holderA, time.Minute); err != nil {
			t.Fatalf("first acquire: %v", err)
		}
		if err := st.AcquireLease(ctx, "x", holderB, time.Minute); !errors.Is(err, fossil.ErrConflict) {
			t.Fatalf("second acquire = %v, want ErrConflict", err)
		}
		// The same holder cannot take it twice either: one connection each.
		if err := st.AcquireLease(ctx, "x", holderA, time.Minute); !errors.Is(err, fossil.ErrConflict) {
			t.Fatalf("re-acquire by the holder = %v, want ErrConflict", err)
		}
		if err := st.RenewLease(ctx, "x", holderB, time.Minute); !errors.Is(err, fossil.ErrConflict) {
			t.Fatalf("renew by a non-holder = %v, want ErrConflict", err)
		}
		if err := st.RenewLease(ctx, "x", holderA, time.Minute); err != nil {
			t.Fatalf("renew by the holder: %v", err)
		}
		// A release by someone else does nothing.
		if err := st.ReleaseLease(ctx, "x", holderB); err != nil {
			t.Fatal(err)
		}
		if err := st.AcquireLease(ctx, "x", holderB, time.Minute); !errors.Is(err, fossil.ErrConflict) {
			t.Fatalf("acquire after a foreign release = %v, want ErrConflict", err)
		}
		if err := st.ReleaseLease(ctx, "x", holderA); err != nil {
			t.Fatal(err)
		}
		if err := st.AcquireLease(ctx, "x", holderB, time.Minute); err != nil {
			t.Fatalf("acquire after release: %v", err)
		}
		if err := st.RenewLease(ctx, "x", holderA, time.Minute); !errors.Is(err, fossil.ErrConflict) {
			t.Fatalf("renew of a released lease = %v, want ErrConflict", err)
		}
		if err := st.ReleaseLease(ctx, "x", holderB); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ExpiresWithoutRenewal", func(t *testing.T) {
		t.Parallel()
		const ttl = 300 * time.Millisecond
		if err := st.AcquireLease(ctx, "y", holderA, ttl); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		deadline := start.Add(5 * time.Second)
		for {
			err := st.AcquireLease(ctx, "y", holderB, ttl)
			if err == nil {
				break
			}
			if !errors.Is(err, fossil.ErrConflict) || time.Now().After(deadline) {
				t.Fatalf("acquire of an expiring lease: %v after %v", err, time.Since(start))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if d := time.Since(start); d < ttl/2 {
			t.Errorf("lease taken over after %v, before its ttl %v", d, ttl)
		}
		// The old holder learns it lost the lease.
		if err := st.RenewLease(ctx, "y", holderA, ttl); !errors.Is(err, fossil.ErrConflict) {
			t.Fatalf("renew of a lost lease = %v, want ErrConflict", err)
		}
		if err := st.ReleaseLease(ctx, "y", holderB); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("ConcurrentAcquireHasOneWinner", func(t *testing.T) {
		t.Parallel()
		const n = 16
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				errs[i] = st.AcquireLease(ctx, "z", fmt.Sprintf("00000000-0000-4000-8000-%012d", i+100), time.Minute)
			})
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			switch {
			case err == nil:
				won++
			case !errors.Is(err, fossil.ErrConflict):
				t.Errorf("acquire: %v", err)
			}
		}
		if won != 1 {
			t.Fatalf("%d holders won the lease, want 1", won)
		}
	})
}

func TestAck(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	ctx, st := bundle.ctx, bundle.store
	one := bundle.appendEvent(t, "s", "/a", "one")
	sharedA := bundle.appendEvent(t, "s", "/a", "shared")
	sharedB := bundle.appendEvent(t, "s", "/b", "shared")
	secret := bundle.appendEvent(t, "secret/1", "/a", "hidden")
	bundle.appendEvent(t, "secret/2", "/c", "shared")
	onlyS := func(stream string) bool { return stream == "s" }

	tests := []struct {
		name, id, source, consumer string
		canRead                    func(string) bool
		wantErr                    error
		wantNumber                 int64
	}{
		// Outside the read grant an event does not exist; an id shared
		// with an unreadable event is not ambiguous.
		{"Unreadable", "hidden", "", "c1", onlyS, fossil.ErrNotFound, 0},
		{"UnreadableWithSource", "hidden", "/a", "c1", onlyS, fossil.ErrNotFound, 0},
		{"Readable", "hidden", "", "c9", func(s string) bool { return s == "secret/1" }, nil, secret},
		{"AmbiguityAmongReadable", "shared", "/a", "c4", onlyS, nil, sharedA},
		{"Unique", "one", "", "c1", nil, nil, one},
		{"Idempotent", "one", "", "c1", nil, nil, one},
		{"UniqueWithSource", "one", "/a", "c2", nil, nil, one},
		{"UnknownID", "nope", "", "c1", nil, fossil.ErrNotFound, 0},
		{"WrongSource", "one", "/b", "c1", nil, fossil.ErrNotFound, 0},
		{"Ambiguous", "shared", "", "c1", nil, fossil.ErrConflict, 0},
		{"DisambiguatedA", "shared", "/a", "c1", nil, nil, sharedA},
		{"DisambiguatedB", "shared", "/b", "c1", nil, nil, sharedB},
	}
	for _, tt := range tests {
		got, err := st.Ack(ctx, tt.id, tt.source, tt.consumer, tt.canRead)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("%s: Ack = %d, %v; want %v", tt.name, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.wantNumber {
			t.Errorf("%s: Ack = %d, %v; want %d", tt.name, got, err, tt.wantNumber)
		}
	}

	acked, err := st.AckedBy(ctx, []int64{one}, []string{"c1", "c2", "c3"})
	if err != nil {
		t.Fatal(err)
	}
	if !acked["c1"] || !acked["c2"] || acked["c3"] || len(acked) != 2 {
		t.Errorf("AckedBy(one) = %v, want c1 and c2", acked)
	}
	// A consumer counts only when it acked every number.
	acked, err = st.AckedBy(ctx, []int64{one, sharedA, sharedB}, []string{"c1", "c2"})
	if err != nil {
		t.Fatal(err)
	}
	if !acked["c1"] || acked["c2"] {
		t.Errorf("AckedBy(all three) = %v, want only c1", acked)
	}
}

// TestAckNotifies checks that an ack publishes "<number>:<consumer>" on
// ChannelAcks, which is what wakes writers waiting in any process.
func TestAckNotifies(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	n := bundle.appendEvent(t, "s", "/a", "x")

	b := notify.New(bundle.store.NewListener(), notify.Config{Channels: []string{store.ChannelAcks}})
	if err := b.Start(bundle.ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Stop)
	// Start signals the first connect; drain it so it is not mistaken for
	// the ack.
	select {
	case <-b.Connected():
	case <-time.After(10 * time.Second):
		t.Fatal("listener did not connect")
	}
	other := b.Subscribe(store.ChannelAcks, store.AckPayload(n, "someone-else"))
	defer other.Close()
	sub := b.Subscribe(store.ChannelAcks, store.AckPayload(n, "c:with:colons"))
	defer sub.Close()

	if got := store.AckPayload(n, "c:with:colons"); got != fmt.Sprintf("%d:c:with:colons", n) {
		t.Fatalf("AckPayload = %q", got)
	}
	if _, err := bundle.store.Ack(bundle.ctx, "x", "", "c:with:colons", nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-sub.C():
	case <-time.After(10 * time.Second):
		t.Fatal("the ack did not wake its subscriber")
	}
	select {
	case <-other.C():
		t.Fatal("the ack woke a subscriber of another consumer")
	case <-time.After(100 * time.Millisecond):
	}
}

func sameConsumer(a, b *store.Consumer) bool {
	if a.Name != b.Name || a.Offset != b.Offset || a.Lag != b.Lag || a.Connected != b.Connected {
		return false
	}
	if a.CommittedAt == nil || b.CommittedAt == nil {
		return a.CommittedAt == b.CommittedAt
	}
	return a.CommittedAt.Equal(*b.CommittedAt)
}

// TestCommitOffsetMonotonicUnderRace races commits of one new name without
// rewind: whatever the interleaving, the offset never moves back, so the
// highest commit wins and every lower one that lost is a conflict.
func TestCommitOffsetMonotonicUnderRace(t *testing.T) {
	t.Parallel()
	bundle := setupConsumers(t)
	for i := 1; i <= 10; i++ {
		bundle.appendEvent(t, "s", "/src", fmt.Sprintf("e%d", i))
	}
	for round := range 20 {
		name := fmt.Sprintf("mono-%d", round)
		var wg sync.WaitGroup
		errs := make([]error, 10)
		start := make(chan struct{})
		for i := range 10 {
			wg.Go(func() {
				<-start
				errs[i] = bundle.store.CommitOffset(bundle.ctx, name, int64(10-i), false)
			})
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil && !errors.Is(err, fossil.ErrConflict) {
				t.Fatalf("round %d: commit %d: %v", round, 10-i, err)
			}
		}
		if errs[0] != nil {
			t.Fatalf("round %d: the highest commit failed: %v", round, errs[0])
		}
		got, _, err := bundle.store.ConsumerOffset(bundle.ctx, name)
		if err != nil || got != 10 {
			t.Fatalf("round %d: offset %d (err %v) after racing commits of 1..10, want 10: it moved back", round, got, err)
		}
	}
}
