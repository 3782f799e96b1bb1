package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fossil-events/fossil/fossil"
	"github.com/fossil-events/fossil/internal/dbtest"
)

// TestDeleteSubscriptionWhileFlushing: a delivering process flushes its
// progress in one transaction that renews its lease and then updates the
// subscription (FlushDispatch); a DELETE /subscriptions/{id} meanwhile must
// wait for it and succeed, not deadlock with it (which PostgreSQL breaks
// after deadlock_timeout by failing one side: a 500 for the DELETE or a
// lost flush). It fails when DeleteSubscription locks the subscription
// before its lease.
func TestDeleteSubscriptionWhileFlushing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s, err := Open(ctx, Config{DatabaseURL: dbtest.NewDB(t), MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.CreateSubscription(ctx, CreateSubscriptionParams{ID: "sub", Definition: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AcquireSubscriptionLease(ctx, "sub", "holder", time.Minute); err != nil || !ok {
		t.Fatalf("lease: %v %v", ok, err)
	}
	// The flush's first statement: the lease row is locked.
	flush, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = flush.Rollback(ctx) }()
	if _, err := flush.Exec(ctx, `UPDATE fossil_subscription_leases SET expires_at = now() + interval '1 minute' WHERE id = 'sub'`); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := s.DeleteSubscription(ctx, "sub")
		deleted <- err
	}()
	// Once the DELETE waits for a lock, the flush updates the subscription
	// (its second statement) and commits.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var waiting int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the DELETE never waited for the flush")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := flush.Exec(ctx, `UPDATE fossil_subscriptions SET delivered = delivered + 1 WHERE id = 'sub'`); err != nil {
		t.Fatalf("the flush failed: %v", err)
	}
	if err := flush.Commit(ctx); err != nil {
		t.Fatalf("the flush's commit failed: %v", err)
	}
	select {
	case err := <-deleted:
		if err != nil {
			t.Fatalf("DeleteSubscription: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DeleteSubscription did not return")
	}
	var left int
	if err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM fossil_subscriptions) + (SELECT count(*) FROM fossil_subscription_leases)`).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 0 {
		t.Fatalf("%d rows left", left)
	}
	if _, err := s.DeleteSubscription(ctx, "sub"); !errors.Is(err, fossil.ErrNotFound) {
		t.Fatalf("second delete: %v, want not found", err)
	}
}
