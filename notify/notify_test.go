// The listener loop (reconnect, re-LISTEN, wake-all after a reconnect) is
// tested against the real database in package streamer (fault_test.go:
// pg_terminate_backend on the LISTEN connection and a PostgreSQL restart).
// These tests cover the in-process broadcaster.
package notify_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/fossil-events/fossil/notify"
)

func woken(s *notify.Subscription) bool {
	select {
	case <-s.C():
		return true
	case <-time.After(50 * time.Millisecond):
		return false
	}
}

func TestNotifyFilters(t *testing.T) {
	t.Parallel()
	b := notify.New(nil, notify.Config{})
	all := b.Subscribe("events")
	one := b.Subscribe("acks", "7:billing")
	two := b.Subscribe("acks", "7:billing", "8:billing")
	other := b.Subscribe("schemas")
	defer all.Close()
	defer one.Close()
	defer two.Close()
	defer other.Close()

	b.Notify("acks", "8:billing")
	if woken(one) || !woken(two) || woken(all) || woken(other) {
		t.Fatal("payload filter delivered to the wrong subscriptions")
	}
	b.Notify("acks", "7:billing")
	if !woken(one) || !woken(two) {
		t.Fatal("matching filters not woken")
	}
	b.Notify("events", "42")
	if !woken(all) || woken(one) {
		t.Fatal("channel-wide subscription not woken, or another channel woken")
	}
}

// TestNotifyCoalesces: wake-ups never block the publisher and coalesce into
// one pending wake-up per subscription.
func TestNotifyCoalesces(t *testing.T) {
	t.Parallel()
	b := notify.New(nil, notify.Config{})
	s := b.Subscribe("events")
	defer s.Close()
	for i := 0; i < 1000; i++ {
		b.Notify("events", "")
	}
	if !woken(s) || woken(s) {
		t.Fatal("want exactly one pending wake-up")
	}
}

func TestNotifyCloseAndWakeAll(t *testing.T) {
	t.Parallel()
	b := notify.New(nil, notify.Config{})
	a := b.Subscribe("events")
	c := b.Subscribe("acks", "1:x")
	a.Close()
	a.Close() // twice is fine
	b.Notify("events", "")
	if woken(a) {
		t.Fatal("a closed subscription was woken")
	}
	b.WakeAll()
	if !woken(c) {
		t.Fatal("WakeAll missed a subscription")
	}
	c.Close()
}

// TestNotifyNewest: a subscription reports the largest number its
// coalesced wake-ups carried, once; a wake-up without a number (WakeAll,
// a payload that is not one) reports "unknown", the largest of all.
func TestNotifyNewest(t *testing.T) {
	t.Parallel()
	b := notify.New(nil, notify.Config{})
	s := b.Subscribe("events")
	defer s.Close()
	if n := s.Newest(); n != 0 {
		t.Fatalf("Newest before any wake-up = %d, want 0", n)
	}
	b.Notify("events", "41")
	b.Notify("events", "43")
	b.Notify("events", "42")
	if !woken(s) {
		t.Fatal("not woken")
	}
	if n := s.Newest(); n != 43 {
		t.Fatalf("Newest = %d, want 43", n)
	}
	if n := s.Newest(); n != 0 {
		t.Fatalf("Newest a second time = %d, want 0", n)
	}
	b.Notify("events", "44")
	b.WakeAll()
	if n := s.Newest(); n != math.MaxInt64 {
		t.Fatalf("Newest after WakeAll = %d, want MaxInt64", n)
	}
	b.Notify("events", "")
	if n := s.Newest(); n != math.MaxInt64 {
		t.Fatalf("Newest after a wake-up without a number = %d, want MaxInt64", n)
	}
}

// chanListener is a Listener whose notifications come from a channel.
type chanListener struct{ c chan [2]string }

func (l *chanListener) Connect(context.Context) error        { return nil }
func (l *chanListener) Listen(context.Context, string) error { return nil }
func (l *chanListener) Ping(context.Context) error           { return nil }
func (l *chanListener) Close(context.Context) error          { return nil }
func (l *chanListener) WaitForNotification(ctx context.Context) (string, string, error) {
	select {
	case n := <-l.c:
		return n[0], n[1], nil
	case <-ctx.Done():
		return "", "", ctx.Err()
	}
}

// TestNotifyLocalDropsEchoes: once the process has woken its own
// subscribers up to a position (Local), database notifications at or below
// it wake nobody; newer ones, ones without a number and other channels
// still do.
func TestNotifyLocalDropsEchoes(t *testing.T) {
	t.Parallel()
	l := &chanListener{c: make(chan [2]string)}
	b := notify.New(l, notify.Config{})
	s := b.Subscribe("events")
	defer s.Close()
	other := b.Subscribe("replaced")
	defer other.Close()
	if err := b.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer b.Stop()
	<-b.Connected()
	for woken(s) || woken(other) { // the connect's WakeAll
	}
	s.Newest()
	b.Local("events", 10)
	for _, n := range []string{"9", "10"} {
		l.c <- [2]string{"events", n}
		if woken(s) {
			t.Fatalf("the echo %s woke a subscriber", n)
		}
	}
	for _, n := range []string{"11", "x"} {
		l.c <- [2]string{"events", n}
		if !woken(s) {
			t.Fatalf("notification %s woke nobody", n)
		}
	}
	l.c <- [2]string{"replaced", "5"}
	if !woken(other) {
		t.Fatal("a notification of another channel woke nobody")
	}
}
