// The listener loop (reconnect, re-LISTEN, wake-all after a reconnect) is
// tested against the real database in package streamer (fault_test.go:
// pg_terminate_backend on the LISTEN connection and a PostgreSQL restart).
// These tests cover the in-process broadcaster.
package notify_test

import (
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
