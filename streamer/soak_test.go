package streamer_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/testserver"
)

// TestSoakResumingSubscribers runs 8 concurrent writers on two server
// processes and 4 subscribers (two per process, each with a different
// template that matches every stream) that hang up at random points — often
// in the middle of a frame — and resume with Last-Event-Id. Each subscriber
// must end with exactly the committed events 1..N, in order.
func TestSoakResumingSubscribers(t *testing.T) {
	t.Parallel()
	const (
		writers   = 8
		perWriter = 200
	)
	srv := testserver.Start(t)
	srv2 := testserver.StartOn(t, srv.DBURL)

	literals := make([]string, writers)
	for w := range writers {
		literals[w] = fmt.Sprintf("soak/w%d", w)
	}
	subs := []struct {
		srv  *testserver.Server
		path string
	}{
		{srv, ssePath("soak/{w}")},
		{srv, ssePath("{+all}")},
		{srv2, ssePath(literals...)},
		{srv2, ssePath("soak/{+rest}", "other/{x}")},
	}
	followers := make([]*follower, len(subs))
	for i, s := range subs {
		rng := rand.New(rand.NewPCG(uint64(i), 42))
		var mu sync.Mutex
		followers[i] = startFollower(t, s.srv.URL, s.path, followerOpts{
			dense: true,
			budget: func() int64 {
				mu.Lock()
				defer mu.Unlock()
				return 100 + rng.Int64N(40<<10) // a frame is ~250 bytes
			},
		})
	}

	client := newClient(t)
	errs := make(chan error, writers)
	var wg sync.WaitGroup
	for w := range writers {
		target := srv.URL
		if w%2 == 1 {
			target = srv2.URL
		}
		wg.Go(func() {
			for i := range perWriter {
				r := post(client, target, fmt.Sprintf("soak/w%d", w), fmt.Sprintf("w%d-%d", w, i), fmt.Sprintf(`{"w":%d,"i":%d}`, w, i))
				if r.err != nil || r.status != http.StatusOK {
					errs <- fmt.Errorf("writer %d event %d: status %d err %w: %s", w, i, r.status, r.err, r.body)
					return
				}
			}
		})
	}
	begin := time.Now()
	wg.Wait()
	t.Logf("%d writers stored %d events in %s", writers, writers*perWriter, time.Since(begin).Round(time.Millisecond))
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	head, err := srv.Store().Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if head != writers*perWriter {
		t.Fatalf("head = %d, want %d", head, writers*perWriter)
	}
	for i, f := range followers {
		f.waitFor(t, head, 60*time.Second)
		f.stop()
		if err := f.failed(); err != nil {
			t.Fatalf("subscriber %d (%s): %v", i, subs[i].path, err)
		}
		wantRange(t, fmt.Sprintf("subscriber %d (%s)", i, subs[i].path), f.numbers(), 1, head)
		t.Logf("subscriber %d (%s) received 1..%d over %d connections", i, subs[i].path, head, f.connections())
		if f.connections() < 5 {
			t.Errorf("subscriber %d connected only %d times; the test means to resume often", i, f.connections())
		}
	}
}
