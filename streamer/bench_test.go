package streamer_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/fossil-events/fossil/internal/dbtest"
	"github.com/fossil-events/fossil/internal/testserver"
)

// BenchmarkLatency measures end-to-end delivery latency: one event at a
// time is POSTed (carrying the time it was sent) and the benchmark waits
// until every subscriber has parsed its frame. The commit happens between
// the start of the POST and its 200, so the latency from commit to
// delivery lies between the two reported bounds:
//
//   - post-ms: from the start of the POST to delivery (includes the
//     commit itself),
//   - ack-ms: from the POST's 200 to delivery (negative when the frame
//     arrives before the HTTP response).
//
// Run it without -race:
//
//	go test -run=NONE -bench=Latency -benchtime=500x ./streamer
func BenchmarkLatency(b *testing.B) {
	for _, subs := range []int{1, 100} {
		b.Run(fmt.Sprintf("Subscribers=%d", subs), func(b *testing.B) { benchLatency(b, subs) })
	}
}

func benchLatency(b *testing.B, subs int) {
	srv := testserver.Start(b)
	client := newClient(b)

	type delivery struct {
		seq  int
		recv time.Time
	}
	deliveries := make(chan delivery, 1024)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	b.Cleanup(func() { cancel(); wg.Wait() })
	for range subs {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+ssePath("lat/{id}"), nil)
		if err != nil {
			b.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatalf("subscribe: %v", err)
		}
		wg.Go(func() {
			defer resp.Body.Close()
			_ = readFrames(resp.Body, func(f testserver.Frame) bool {
				now := time.Now()
				data, _ := f.Event["data"].(map[string]any)
				seq, _ := data["seq"].(float64)
				deliveries <- delivery{seq: int(seq), recv: now}
				return true
			})
		})
	}
	testserver.Eventually(b, 10*time.Second, "subscribers", func() bool { return srv.Hub().Clients() == int64(subs) })

	var fromPost, fromAck []time.Duration
	i := 0
	for b.Loop() {
		i++
		sent := time.Now()
		r := post(client, srv.URL, "lat/1", "e"+strconv.Itoa(i), fmt.Sprintf(`{"seq":%d}`, i))
		acked := time.Now()
		if r.err != nil || r.status != http.StatusOK {
			b.Fatalf("post: %d %v %s", r.status, r.err, r.body)
		}
		for range subs {
			d := <-deliveries
			if d.seq != i {
				b.Fatalf("got event %d while waiting for %d", d.seq, i)
			}
			fromPost = append(fromPost, d.recv.Sub(sent))
			fromAck = append(fromAck, d.recv.Sub(acked))
		}
	}
	b.StopTimer()
	slices.Sort(fromPost)
	slices.Sort(fromAck)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(fromPost, 50)), "post-p50-ms")
	b.ReportMetric(ms(percentile(fromPost, 99)), "post-p99-ms")
	b.ReportMetric(ms(percentile(fromAck, 50)), "ack-p50-ms")
	b.ReportMetric(ms(percentile(fromAck, 99)), "ack-p99-ms")
}

func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, len(sorted)*p/100)]
}

// BenchmarkCatchUp measures how fast one subscriber replays a history of
// 50,000 events from SQL (the server starts after the history exists, so
// its tail cache is empty): with a template that matches everything, with
// the literal name of the stream that holds nine tenths of it, and with a
// literal-prefix template that selects the other tenth.
//
//	go test -run=NONE -bench=CatchUp -benchtime=5x ./streamer
func BenchmarkCatchUp(b *testing.B) {
	const (
		history = 50000
		hot     = 5000
	)
	dbURL := dbtest.NewDB(b)
	bulkInsert(b, dbURL, "cold/1", 0, history-hot, 200)
	bulkInsert(b, dbURL, "hot/1", history-hot, hot, 200) // after the cold ones
	srv := testserver.StartOn(b, dbURL)

	for _, bb := range []struct {
		name     string
		template string
		events   int
	}{
		{"All", "{+all}", history},
		{"LiteralStream", "cold/1", history - hot},
		{"LiteralPrefix", "hot/{id}", hot},
	} {
		b.Run(bb.name, func(b *testing.B) {
			client := newClient(b)
			var total time.Duration
			for b.Loop() {
				begin := time.Now()
				ctx, cancel := context.WithCancel(context.Background())
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+ssePath(bb.template), nil)
				resp, err := client.Do(req)
				if err != nil {
					cancel()
					b.Fatal(err)
				}
				// Count frames without decoding their JSON: the server's
				// replay rate is measured, not the client's parser.
				n := 0
				sc := bufio.NewScanner(resp.Body)
				sc.Buffer(make([]byte, 64<<10), 1<<20)
				for n < bb.events && sc.Scan() {
					if bytes.HasPrefix(sc.Bytes(), []byte("id: ")) {
						n++
					}
				}
				err = sc.Err()
				total += time.Since(begin)
				cancel()
				resp.Body.Close()
				if n != bb.events {
					b.Fatalf("replayed %d of %d events: %v", n, bb.events, err)
				}
			}
			b.ReportMetric(float64(bb.events)*float64(b.N)/total.Seconds(), "events/s")
		})
	}
}
