//go:build chaos

package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCatchUpDoesNotStarveAppends: 1,000 SSE clients catch up on a log of
// 200,000 events while a writer appends one event at a time for 20 s:
// no append fails, and their p99 stays under 500 ms.
func TestCatchUpDoesNotStarveAppends(t *testing.T) {
	srv := startServer(t, pg.createDB(t), "")
	const total = 200_000
	var wg sync.WaitGroup
	var fillErr atomic.Value
	next := atomic.Int64{}
	for range 4 {
		wg.Go(func() {
			batch := make([]string, 0, 500)
			for {
				b := next.Add(1) - 1
				if b*500 >= total {
					return
				}
				batch = batch[:0]
				for i := b * 500; i < (b+1)*500; i++ {
					batch = append(batch, fmt.Sprintf(`{"specversion":"1.0","id":"f%d","source":"/chaos","type":"t","data":{"i":%d,"note":"catch-up load"}}`, i, i))
				}
				req, _ := http.NewRequest(http.MethodPost, srv.url+"/collect", strings.NewReader("["+strings.Join(batch, ",")+"]"))
				req.Header.Set("Content-Type", "application/cloudevents-batch+json")
				req.Header.Set("Fossil-Stream", "load/"+strconv.FormatInt(b%50, 10))
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != 200 {
					fillErr.Store(fmt.Sprint(resp, err))
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	if e := fillErr.Load(); e != nil {
		t.Fatalf("fill: %v", e)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const readers = 1000
	var received atomic.Int64
	var rwg sync.WaitGroup
	for i := range readers {
		rwg.Go(func() {
			// Half follow everything, half one stream in ten: both read the
			// log from the start.
			q := "%7B%2Ball%7D"
			if i%2 == 1 {
				q = "load%2F" + strconv.Itoa(i%50)
			}
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.url+"/sse?stream="+q, nil)
			resp, err := (&http.Client{}).Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := resp.Body.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
		if i%100 == 99 {
			time.Sleep(100 * time.Millisecond)
		}
	}
	time.Sleep(2 * time.Second)

	var lat []time.Duration
	failed := map[string]int{}
	end := time.Now().Add(20 * time.Second)
	for k := 0; time.Now().Before(end); k++ {
		start := time.Now()
		resp, err := post(context.Background(), srv.url, "live/1", fmt.Sprintf("live%d", k), []byte(`{"live":true}`))
		d := time.Since(start)
		switch {
		case err != nil:
			failed[err.Error()]++
		case resp.StatusCode != 200:
			failed[resp.Status]++
		default:
			lat = append(lat, d)
		}
		time.Sleep(time.Duration(10+rand.IntN(20)) * time.Millisecond)
	}
	mb := float64(received.Load()) / (1 << 20)
	cancel()
	rwg.Wait()
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	figure(t, "1,000 SSE clients catching up on 200,000 events while one writer appends for 20 s: %d appends, %d failed, p50 %v, p99 %v, max %v; readers received %.0f MB meanwhile",
		len(lat), len(failed), p(0.5).Round(time.Millisecond), p(0.99).Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond), mb)
	if len(failed) > 0 {
		t.Errorf("failed appends: %v", failed)
	}
	if p(0.99) >= 500*time.Millisecond {
		t.Errorf("append p99 %v, want < 500ms", p(0.99))
	}
}
