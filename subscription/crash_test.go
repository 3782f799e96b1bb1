package subscription_test

// The crash test runs real `fossil server` processes and SIGKILLs the one
// delivering. It takes tens of seconds (a build, two processes, a lease
// expiry) and runs in the default suite; `make chaos-subscriptions` runs it
// alone, with TestTakeoverAfterLostLease and
// TestDeliveryRidesOutKilledConnections (pg_terminate_backend).

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/proctest"
	"github.com/fossil-events/fossil/internal/testserver"
)

func postTo(t *testing.T, url, stream, id string) int64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url+"/collect", strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Fossil-Stream", stream)
	req.Header.Set("ce-specversion", "1.0")
	req.Header.Set("ce-id", id)
	req.Header.Set("ce-source", "/chaos")
	req.Header.Set("ce-type", "chaos.event")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	n, err := strconv.ParseInt(resp.Header.Get("Fossil-Event-Number"), 10, 64)
	if resp.StatusCode != http.StatusOK || err != nil {
		t.Fatalf("post: %d", resp.StatusCode)
	}
	return n
}

// TestChaosSIGKILLDeliveringProcess kills the process that delivers a
// subscription in the middle of the log; the second process takes over.
func TestChaosSIGKILLDeliveringProcess(t *testing.T) {
	bin := proctest.Build(t)
	dbURL := dbtest.NewDB(t)
	a := proctest.Start(t, bin, "DATABASE_URL="+dbURL, "FOSSIL_SUBSCRIPTION_LEASE=2s")
	wh := slowWebhook(t)
	var want []int64
	for i := range 600 {
		want = append(want, postTo(t, a.URL, fmt.Sprintf("s%d", i%20), fmt.Sprintf("a%d", i)))
	}
	code, _, out := call(t, http.MethodPost, a.URL+"/subscriptions", httpSub(wh.URL, map[string]any{"config": map[string]string{"startafter": "0", "maxinflight": "4"}}))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, out)
	}
	// a holds the lease (b does not exist yet) and is delivering.
	wh.waitAccepted(t, 100, 30*time.Second)
	b := proctest.Start(t, bin, "DATABASE_URL="+dbURL, "FOSSIL_SUBSCRIPTION_LEASE=2s")
	a.Kill(t)
	killedAt := len(wh.accepted())
	for i := range 200 {
		want = append(want, postTo(t, b.URL, fmt.Sprintf("s%d", i%20), fmt.Sprintf("b%d", i)))
	}
	testserver.Eventually(t, 60*time.Second, "every event delivered", func() bool {
		seen := map[int64]bool{}
		for _, n := range wh.accepted() {
			seen[n] = true
		}
		return len(seen) >= len(want)
	})
	checkAtLeastOnce(t, wh, want)
	t.Logf("killed after %d deliveries; %d requests for %d events in all", killedAt, len(wh.deliveries()), len(want))
}
