package subscription_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// slowWebhook accepts every event after a short pause, so delivery spans
// the fault.
func slowWebhook(t *testing.T) *webhook {
	return newWebhook(t, func(int64, int) (int, http.Header) {
		time.Sleep(2 * time.Millisecond)
		return http.StatusNoContent, nil
	})
}

// postStreams posts n events round-robin over k streams.
func postStreams(t *testing.T, srv *testserver.Server, prefix string, n, k int) []int64 {
	var out []int64
	for i := range n {
		out = append(out, srv.MustPost(t, fmt.Sprintf("s%d", i%k), testserver.Event{ID: fmt.Sprintf("%s-%d", prefix, i)}))
	}
	return out
}

// checkAtLeastOnce fails unless every one of want arrived (accepted) at
// least once and, per stream, the first deliveries came in number order.
func checkAtLeastOnce(t *testing.T, wh *webhook, want []int64) {
	t.Helper()
	first := map[int64]bool{}
	var firsts []delivery
	for _, d := range wh.deliveries() {
		if d.Status != http.StatusNoContent || first[d.Number] {
			continue
		}
		first[d.Number] = true
		firsts = append(firsts, d)
	}
	for _, n := range want {
		if !first[n] {
			t.Fatalf("event %d never delivered", n)
		}
	}
	if len(first) != len(want) {
		t.Fatalf("%d distinct events delivered, want %d", len(first), len(want))
	}
	checkOrder(t, firsts)
}

// TestTakeoverAfterLostLease stops a delivering process from renewing its
// lease (as a frozen or dead one would) and shows that a second process
// takes over from the durable position: nothing is lost, per-stream order
// holds among first deliveries, and the first process can no longer write.
func TestTakeoverAfterLostLease(t *testing.T) {
	t.Parallel()
	a := testserver.Start(t, fast)
	wh := slowWebhook(t)
	want := postStreams(t, a, "before", 300, 10)
	id := create(t, a, httpSub(wh.URL, map[string]any{"config": map[string]string{"startafter": "0", "maxinflight": "4"}}))["id"].(string)
	wh.waitAccepted(t, 40, 10*time.Second)

	b := testserver.StartOn(t, a.DBURL, fast)
	if _, err := a.Pool.Exec(t.Context(), `UPDATE fossil_subscription_leases SET expires_at = now() - interval '1 second' WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	want = append(want, postStreams(t, b, "after", 100, 10)...)
	testserver.Eventually(t, 20*time.Second, "every event delivered", func() bool {
		seen := map[int64]bool{}
		for _, n := range wh.accepted() {
			seen[n] = true
		}
		return len(seen) >= len(want)
	})
	checkAtLeastOnce(t, wh, want)
	testserver.Eventually(t, 10*time.Second, "position at the head", func() bool {
		st := status(t, b, id)
		return st["lag"] == 0.0
	})
}

// TestDeliveryRidesOutKilledConnections kills every database connection
// of the server (pg_terminate_backend) twice during delivery.
func TestDeliveryRidesOutKilledConnections(t *testing.T) {
	t.Parallel()
	srv := testserver.Start(t, fast)
	wh := slowWebhook(t)
	want := postStreams(t, srv, "e", 300, 10)
	id := create(t, srv, httpSub(wh.URL, map[string]any{"config": map[string]string{"startafter": "0", "maxinflight": "4"}}))["id"].(string)
	for _, at := range []int{40, 150} {
		wh.waitAccepted(t, at, 10*time.Second)
		if _, err := srv.Pool.Exec(t.Context(), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()`); err != nil {
			t.Fatal(err)
		}
	}
	testserver.Eventually(t, 20*time.Second, "every event delivered", func() bool {
		seen := map[int64]bool{}
		for _, n := range wh.accepted() {
			seen[n] = true
		}
		return len(seen) >= len(want)
	})
	checkAtLeastOnce(t, wh, want)
	testserver.Eventually(t, 10*time.Second, "position at the head", func() bool { return status(t, srv, id)["lag"] == 0.0 })
}
